"""Run the host bench and write this machine's device entry.

    python benchmarks/bench_host.py [--quick]

Writes benchmarks/results/host-measured.toml (the catalog entry) and host.json (every
measurement), and prints the per-tier bandwidths and compute peaks.
"""

from __future__ import annotations

import argparse
import json

from _common import RESULTS, table, write_result

from lpulab.kernels import hostbench as hb


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    res = hb.run_hostbench(quick=args.quick)
    RESULTS.mkdir(exist_ok=True)
    toml_path = hb.write_device_toml(RESULTS / "host-measured.toml", res)
    rows = [{"tier": k, "kernel": "triad", "working_set_MiB": v.working_set_bytes / 2**20,
             "median_GBps": v.median_gbs, "best_GBps": v.best_gbs} for k, v in res.tiers.items()]
    print(table(rows, list(rows[0])))
    print()
    print(table([{"kernel": c.kernel, "dtype": c.dtype, "shape": "x".join(map(str, c.shape)),
                  "best_GFLOPps": c.best_gflops, "median_GBps": c.median_gbs} for c in res.compute],
                ["kernel", "dtype", "shape", "best_GFLOPps", "median_GBps"]))
    p = write_result("host", {"result": json.loads(res.to_json()), "device_entry": hb.device_entry(res)})
    print(f"\nbench took {res.elapsed_s:.1f} s; wrote {toml_path} and {p}")


if __name__ == "__main__":
    main()
