"""What the kernels executed against what the analytic model assumes.

- :func:`counts_vs_workload`: a step's op-by-op FLOP and byte counts against
  :func:`lpulab.workload.op_table` for the same shape (docs/counting.md); they must be equal.
- :func:`transfers_vs_perf`: the bytes a sharded step moved between chips, part by part,
  against what :func:`lpulab.perf.transfer_bytes` assumes for the same deployment.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .. import perf, workload
from .ops import OpCount

__all__ = ["counts_table", "counts_vs_workload", "transfers_vs_perf", "TRANSFER_PARTS"]


def counts_table(counts: Sequence[OpCount]) -> pd.DataFrame:
    """One row per executed op: ``op`` and the columns of :data:`lpulab.workload.COLUMNS`."""
    return pd.DataFrame([{"op": c.name, **{k: getattr(c, k) for k in workload.COLUMNS}} for c in counts])


def counts_vs_workload(counts: Sequence[OpCount], model, phase: str, batch: int, context: int, tokens: int | None,
                       precision) -> pd.DataFrame:
    """Executed counts against the analytic ones, op by op.

    One row per op (in execution order, the workload's ops matched by name) and count
    column: ``op``, ``column``, ``kernels``, ``workload``, ``diff`` (kernels - workload).
    An op present on one side only appears with NaN on the other. ``equal`` in
    ``df.attrs`` says whether every row agrees exactly.
    """
    k = counts_table(counts).set_index("op")
    w = workload.op_table(model, phase, batch, context, tokens, precision).set_index("op")[list(workload.COLUMNS)]
    order = list(k.index) + [o for o in w.index if o not in k.index]
    k, w = k.reindex(order), w.reindex(order)
    rows = []
    for op in order:
        for col in workload.COLUMNS:
            a, b = k.at[op, col], w.at[op, col]
            rows.append((op, col, float(a), float(b), float(a) - float(b)))  # type: ignore[arg-type]  # numeric cells
    df = pd.DataFrame(rows, columns=["op", "column", "kernels", "workload", "diff"])
    df.attrs["equal"] = bool((df["diff"] == 0).all())
    return df


#: The parts of a sharded step's traffic, in table order: (part, kind, what perf assumes).
TRANSFER_PARTS = (
    ("layer all-reduces", "all_reduce", "all_reduce"),
    ("int8 row scales", "all_reduce", None),
    ("embedding all-reduce", "all_reduce", None),
    ("pipeline hand-overs", "pipeline", "pipeline"),
    ("logits gather", "gather", None),
)


def _part(t) -> str:
    if t.kind == "pipeline":
        return "pipeline hand-overs"
    if t.kind == "gather":
        return "logits gather"
    if t.name.endswith(".absmax"):
        return "int8 row scales"
    if t.name == "embedding":
        return "embedding all-reduce"
    return "layer all-reduces"


def transfers_vs_perf(step, plan, work, model) -> pd.DataFrame:
    """Bytes per token a :class:`~lpulab.kernels.sharded.ShardedStep` moved between chips,
    by part, against :func:`lpulab.perf.transfer_bytes` for ``work`` (the
    :class:`lpulab.perf.Work` of the same step, e.g. :func:`lpulab.perf.decode_work`; its
    ``message`` is tokens x hidden x activation bytes) on the plan's ``pipeline`` stages of
    ``tensor`` chips. ``model`` is the catalog model (for its hidden size).

    Rows: the parts of :data:`TRANSFER_PARTS`, then ``total``. Columns: ``part``, ``kind``,
    ``transfers`` (how many), ``measured`` and ``assumed`` (bytes per token), ``ratio``
    (measured / assumed; NaN where perf assumes nothing), ``width_measured`` /
    ``width_assumed``: bytes per reduced value in the layer all-reduces (the int8 path
    and the other quantised paths reduce integer accumulators, perf an activation), and ``note``: why the part differs
    from perf's figure, in words.
    """
    widths = {len(g) for g in plan.stage_chips}
    if len(widths) != 1:
        raise ValueError(f"transfers_vs_perf: perf assumes equal stages; this plan's stages have widths {sorted(widths)}")
    tp, pp = widths.pop(), len(plan.stage_chips)
    assumed = perf.transfer_bytes(work, pp, tp)
    n = step.tokens
    act = float(np.asarray(work.message, float)) / (n * model.hidden_size)
    rows = []
    for part, kind, key in TRANSFER_PARTS:
        ts = [t for t in step.transfers if _part(t) == part]
        meas = sum(t.bytes for t in ts) / n
        ass = float(np.asarray(assumed[key], float)) / n if key else 0.0
        row = {"part": part, "kind": kind, "transfers": len(ts), "measured": meas, "assumed": ass,
               "ratio": meas / ass if ass else np.nan, "width_measured": np.nan, "width_assumed": np.nan}
        if part == "layer all-reduces" and ts and tp > 1:
            # one all-reduce over t chips moves 2(t-1) x (tokens x hidden values) x width
            row["width_measured"] = meas * n / (len(ts) * 2 * (tp - 1) * n * model.hidden_size)
            row["width_assumed"] = act
        rows.append(row)
    meas = sum(r["measured"] for r in rows)
    ass = float(np.asarray(assumed["total"], float)) / n
    for row in rows:
        row["note"] = _note(row, tp, pp, act)
    rows.append({"part": "total", "kind": "", "transfers": sum(r["transfers"] for r in rows), "measured": meas,
                 "assumed": ass, "ratio": meas / ass if ass else np.nan, "width_measured": np.nan,
                 "width_assumed": np.nan, "note": ""})
    df = pd.DataFrame(rows)
    df.attrs.update({"tensor": tp, "pipeline": pp, "tokens": n, "activation_bytes": act})
    return df


def _note(row: dict, tp: int, pp: int, act: float) -> str:
    part, meas, n = row["part"], row["measured"], row["transfers"]
    if part == "layer all-reduces":
        if tp == 1:
            return "no tensor parallelism: no all-reduce"
        if row["width_measured"] == row["width_assumed"]:
            return f"{row['width_measured']:g}-byte values, as perf assumes"
        return (f"{row['width_measured']:g} bytes per reduced value against perf's {act:g}-byte activations: the "
                f"quantised path sums its exact integer accumulators (int32 for int8 weights with 8-bit activations, "
                f"int64 otherwise) across chips and scales back to float32 after the sum")
    if part == "int8 row scales":
        return (f"{n} all-reduces of one float32 maximum per row, so every chip quantises the activations with the "
                f"same scale (what makes the quantised result exact); perf does not model them") if meas else ""
    if part == "embedding all-reduce":
        return ("the embedding table is split by vocabulary rows: each chip looks up the tokens in its rows and the "
                "stage sums the rows; perf does not model it") if meas else ""
    if part == "pipeline hand-overs":
        if pp == 1:
            return "one stage: no hand-over"
        if n > pp - 1:
            return (f"{n} hand-overs against perf's {pp - 1}: tied embeddings are stored once, with the head on the "
                    f"last stage, so the embedded tokens travel from the last stage back to the first")
        return f"{n} hand-overs of the activations to every chip of the next stage, as perf assumes"
    if part == "logits gather":
        return ("the LM head is split by vocabulary rows: the other chips send their logits to the stage's first chip; "
                "perf does not model it") if meas else ""
    return ""
