"""Shared helpers for the benchmark scripts: results JSON under benchmarks/results/, tables."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing


def machine() -> dict:
    import numpy as np

    try:
        load = os.getloadavg()
    except OSError:  # pragma: no cover
        load = None
    return {"python": platform.python_version(), "numpy": np.__version__, "cpus": len(os.sched_getaffinity(0)),
            "loadavg_at_start": load, "utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}


def write_result(name: str, payload: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    payload = {"benchmark": name, "machine": machine(), **payload}
    tmp.write_text(json.dumps(payload, indent=1, default=float))
    tmp.replace(path)
    return path


def table(rows: list[dict], cols: list[str]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in cols] for r in rows]
    w = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    line = "  ".join(c.ljust(w[i]) for i, c in enumerate(cols))
    out = [line, "  ".join("-" * x for x in w)]
    out += ["  ".join(x[i].ljust(w[i]) for i in range(len(cols))) for x in cells]
    return "\n".join(out)
