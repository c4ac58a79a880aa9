"""`lpulab reproduce` of notebooks 01-04 against the floor of running as many trivial notebooks.

The floor: the same number of notebooks that only import numpy, scipy and seaborn, executed
one after the other through papermill in one Python process, the way `lpulab reproduce`
runs them. Each repetition times, in a fresh reports folder:

- ``floor``: the trivial notebooks (a subprocess, so Python's start is counted as for lpulab);
- ``first``: ``lpulab reproduce 01_bandwidth 02_placement 03_speed 04_cost`` (``-j`` as given);
- ``second``: the same command again, nothing changed: every report is skipped.

It prints the medians, first/floor, and the second run's time. Aims (issue 15): first within
1.5x the floor, second under 5 s.

    .venv/bin/python benchmarks/bench_reproduce.py --runs 3 [-j 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import table, write_result

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ["01_bandwidth", "02_placement", "03_speed", "04_cost"]

FLOOR = """
import sys, papermill
for path in sys.argv[2:]:
    papermill.execute_notebook(path, path + ".out.ipynb", parameters={"x": 2}, kernel_name="python3",
                               cwd=sys.argv[1], progress_bar=False, log_output=False)
"""


def trivial_notebooks(folder: Path, n: int) -> list[Path]:
    import nbformat

    out = []
    for i in range(n):
        nb = nbformat.v4.new_notebook()
        nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}}
        nb.cells = [nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
                    nbformat.v4.new_code_cell("import numpy\nimport scipy\nimport seaborn\nprint(x)")]
        p = folder / f"trivial_{i}.ipynb"
        nbformat.write(nb, p)
        out.append(p)
    return out


def timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("-j", "--jobs", type=int, default=1, help="lpulab reproduce -j (default 1)")
    ap.add_argument("--notebooks", nargs="+", default=NOTEBOOKS)
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="lpulab-bench-") as tmp:
        tmp = Path(tmp)
        trivial = trivial_notebooks(tmp, len(a.notebooks))
        for i in range(a.runs):
            reports = tmp / f"reports-{i}"
            env = {**os.environ, "LPULAB_REPORTS": str(reports), "PYTHONWARNINGS": "ignore"}
            floor = timed([sys.executable, "-c", FLOOR, str(ROOT), *map(str, trivial)], env)
            cmd = [sys.executable, "-m", "lpulab.cli", "reproduce", *a.notebooks, "-q", "-j", str(a.jobs)]
            first = timed(cmd, env)
            second = timed(cmd, env)
            rows.append({"run": i + 1, "floor_s": floor, "first_s": first, "second_s": second,
                         "first_over_floor": first / floor})
            print(table(rows[-1:], list(rows[-1])), flush=True)
    med = {k: statistics.median(r[k] for r in rows) for k in ("floor_s", "first_s", "second_s", "first_over_floor")}
    summary = {"notebooks": a.notebooks, "jobs": a.jobs, "runs": rows, "median": med,
               "median_first_over_median_floor": med["first_s"] / med["floor_s"],
               "aims": {"first_over_floor": 1.5, "second_s": 5.0}}
    print("\nmedians over", a.runs, "runs:")
    print(table([{**med, "first/floor (of medians)": summary["median_first_over_median_floor"]}],
                ["floor_s", "first_s", "second_s", "first_over_floor", "first/floor (of medians)"]))
    print(f"written: {write_result('reproduce' + (f'-j{a.jobs}' if a.jobs != 1 else ''), summary)}")


if __name__ == "__main__":
    main()
