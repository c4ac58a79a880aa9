"""lpulab frontier: the JSON rows carry the expert width and the speculative decoding chosen."""

import json

from lpulab import cli


def test_the_frontier_command_prints_the_expert_width_and_speculation_in_json(capsys):
    rc = cli.main(["frontier", "--model", "deepseek-v3", "--devices", "nvidia-b200", "--targets", "20:200:3",
                   "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    rows = [row for p in out["platforms"] for row in p["cheapest"] if row["feasible"]]
    assert rows and all("expert" in row and "speculative" in row for row in rows)
    assert all(row["speculative"] in ("off", "mtp k=1") for row in rows)
