"""A chip that is not in the shipped catalog, from a user data folder (a hardware file and its
price sheet, no other edits), through notebooks 01-04 with `--data DIR -p lpu <id>`: its own
deployment unit, price and power are used, the reports speak of it and not of Groq's chip,
and the claims' as-stated values stay the claims' own."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lpulab import paths

pytestmark = [pytest.mark.notebook, pytest.mark.slow]

WAFER = '''id = "test-wafer"
name = "A test SRAM wafer (44 GB on-wafer SRAM)"
vendor = "A test vendor"
category = "wafer"
released = "2026"

[sources.spec]
title = "A made-up specification for lpulab's tests"
url = "https://example.org/test-wafer"
date = "2026-01"
confidence = "unverified"

[memory.sram]
placement = "on-chip"
capacity = { value = 44, unit = "GB", source = "spec", kind = "estimate" }
bandwidth = { value = 21, unit = "PB/s", source = "spec", kind = "estimate" }

[compute.int8]
peak = { value = 250, unit = "POP/s", source = "spec", kind = "estimate", sparsity = "dense" }

[interconnect.fabric]
bandwidth = { value = 1, unit = "TB/s", source = "spec", kind = "estimate" }
latency = { value = 2, unit = "us", source = "spec", kind = "estimate" }
collective_latency = { value = 5, unit = "us", source = "spec", kind = "estimate" }

[deployment]
prices = "test-wafer-system"
unit = "system"
tensor_split = "any"
scale_up_link = "fabric"

[deployment.scale_up]
chips = { value = 16, unit = "count", source = "spec", kind = "estimate" }

[deployment.units.system]
chips = { value = 1, unit = "count", source = "spec", kind = "estimate" }
'''

SHEET = '''id = "test-wafer-system"
name = "One test wafer system: price and power"
as_of = "2026-01"
category = "system"

[sources.spec]
title = "A made-up price list for lpulab's tests"
url = "https://example.org/test-wafer/price"
date = "2026-01"
confidence = "unverified"

[count]
chips_per_unit = { value = 1, unit = "count", source = "spec", kind = "estimate" }

[price]
unit = { value = 2500000, unit = "USD", source = "spec", kind = "estimate", low = 2000000, high = 3000000 }

[power]
unit = { value = 23, unit = "kW", source = "spec", kind = "estimate", low = 20, high = 25 }
'''

AS_STATED = {"01_bandwidth": 80 / 3.35, "03_speed": 185 / 33}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    data = tmp_path_factory.mktemp("userdata")
    (data / "hardware").mkdir()
    (data / "prices").mkdir()
    (data / "hardware" / "test-wafer.toml").write_text(WAFER)
    (data / "prices" / "test-wafer-system.toml").write_text(SHEET)
    reports = tmp_path_factory.mktemp("reports")
    out = {}
    for nb, extra in (("01_bandwidth", ["-f", str(paths.PARAMS / "01_bandwidth" / "smoke.yaml")]),
                      ("02_placement", ["-f", str(paths.PARAMS / "02_placement" / "smoke.yaml"), "-p", "devices",
                                        '["test-wafer", "nvidia-h100-sxm"]']),
                      ("03_speed", ["-f", str(paths.PARAMS / "03_speed" / "smoke.yaml")]),
                      ("04_cost", ["-f", str(paths.PARAMS / "04_cost" / "smoke.yaml")])):
        cmd = [sys.executable, "-m", "lpulab.cli", "run", f"notebooks/{nb}.ipynb", "--data", str(data), "-p", "lpu",
               "test-wafer", "-q", *extra]
        p = subprocess.run(cmd, cwd=paths.ROOT, capture_output=True, text=True,
                           env={**__import__("os").environ, "LPULAB_REPORTS": str(reports)})
        assert p.returncode == 0, (nb, p.stdout[-2000:], p.stderr[-2000:])
        (folder,) = [d for d in reports.iterdir() if d.name.startswith(nb)]
        out[nb] = (json.loads((folder / "results.json").read_text()), (folder / "report.html").read_text())
    return out


def _without_as_stated(results: dict) -> str:
    """What a report says about the chips it compares: its results without the claim's own
    arithmetic and without the serving model's validation table (measured rows of every
    device, the claim's chip among them)."""
    skip = ("as_stated", "like_for_like", "as_stated_ratio", "calibration", "validation", "knobs",
            "skipped_rows_by_reason", "verdict")   # a verdict's note states the claim's own arithmetic
    r = {k: v for k, v in results["results"].items() if k not in skip}
    return json.dumps(r)


def test_the_user_chip_is_deployed_priced_and_powered_from_its_own_files(runs):
    bw, _ = runs["01_bandwidth"]
    assert bw["results"]["lpu"] == "test-wafer"
    assert bw["results"]["ratio_vs_reference"] == pytest.approx(21e15 / 3.35e12)
    pl, _ = runs["02_placement"]
    assert pl["results"]["deploy_unit"]["test-wafer"] == 1          # its own unit: one system
    assert pl["results"]["chips_needed"]["test-wafer"] == pytest.approx(2)   # 70 GB of weights over 44 GB wafers
    cost, _ = runs["04_cost"]
    lpu = cost["results"]["lpu"]
    assert lpu["device"] == "test-wafer" and lpu["price_sheet"] == "test-wafer-system"
    pt = cost["results"]["point"]
    assert pt["lpu_capex"] == pytest.approx(lpu["units"] * 2.5e6)
    assert pt["lpu_power"] == pytest.approx(lpu["units"] * 23e3)


def test_no_groq_numbers_or_words_about_the_user_chip(runs):
    for nb, (res, html) in runs.items():
        text = _without_as_stated(res)
        for word in ("groq-lpu-v1", "groq-card", "GroqCard"):
            assert word not in text, (nb, word)
        assert "test-wafer" in html, nb


def test_the_claims_as_stated_values_are_unchanged(runs):
    for nb, want in AS_STATED.items():
        (v,) = runs[nb][0]["verdicts"]
        assert v["as_stated"] == pytest.approx(want), nb
    cost = {v["claim"]: v for v in runs["04_cost"][0]["verdicts"]}
    assert round(cost["C3"]["as_stated"], 1) == 38.1 and round(cost["C4"]["as_stated"], 1) == 10.6
