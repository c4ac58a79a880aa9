"""Claim C1: per-chip memory bandwidth (and the capacity paid for it), LPU against GPUs.

The ratio the claim rests on is ``e_L * W_LPU,sram / (e_G * W_GPU,tier)`` with achieved
fractions ``e`` (1.0 = vendor peak on both sides unless the caller says otherwise). The
capacity ratio ``C_LPU / C_GPU`` is its price: the same chips hold a few hundred MB
instead of tens of GB.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from . import claims
from .catalog import Device, load_claims, load_device


def compare(lpu: Device, gpus: list[Device], tiers=("hbm",), lpu_achieved: float = 1.0,
            gpu_achieved: float = 1.0) -> pd.DataFrame:
    """One row per (GPU, tier): both bandwidths and capacities (SI), and the two ratios.

    A GPU without a given tier (or without its bandwidth in the catalog) is skipped for
    that tier; the rows say which tiers were compared.
    """
    for name, e in (("lpu_achieved", lpu_achieved), ("gpu_achieved", gpu_achieved)):
        if not 0 < e <= 1:
            raise ValueError(f"{name} must be in (0, 1], got {e!r}")
    lt = lpu.tier()
    lt_bw, lt_cap = lt.bandwidth, lt.capacity
    if lt_bw is None or lt_cap is None:
        raise ValueError(f"{lpu.id}: memory tier {lt.name!r} needs a bandwidth and a capacity in the catalog")
    rows = []
    for g in gpus:
        for tier in tiers:
            t = g.memory.get(tier)
            if t is None or t.bandwidth is None:
                continue
            rows.append({
                "gpu": g.id, "gpu_name": g.name, "tier": tier, "gpu_placement": t.placement,
                "lpu_bandwidth": lt_bw.si * lpu_achieved, "gpu_bandwidth": t.bandwidth.si * gpu_achieved,
                "lpu_capacity": lt_cap.si, "gpu_capacity": t.capacity.si if t.capacity else float("nan"),
                "bandwidth_ratio": (lt_bw.si * lpu_achieved) / (t.bandwidth.si * gpu_achieved),
                "capacity_ratio": lt_cap.si / t.capacity.si if t.capacity else float("nan"),
                "gpu_source": t.bandwidth.cite(), "gpu_kind": t.bandwidth.kind,
            })
    if not rows:
        raise ValueError(f"none of the GPUs has a bandwidth for tiers {tiers}")
    return pd.DataFrame(rows)


def reference_row(table: pd.DataFrame, gpu: str, tier: str) -> pd.Series:
    """The row of ``table`` for ``gpu`` on ``tier``, or a clear error naming the GPUs that
    do have a bandwidth on that tier."""
    rows = table[(table["gpu"] == gpu) & (table["tier"] == tier)]
    if rows.empty:
        have = sorted(table[table["tier"] == tier]["gpu"])
        raise ValueError(f"{gpu} has no {tier} bandwidth in the catalog; GPUs compared with one: "
                         f"{', '.join(have) or 'none'} (or choose another tier)")
    return rows.iloc[0]


def as_stated_ratio() -> float:
    """The claim's own arithmetic (``data/claims.toml`` ``[C1.as_stated]``): the claim's LPU's
    vendor-peak SRAM bandwidth over the claim's GPU's vendor-peak HBM bandwidth, whatever
    chip a notebook puts under test."""
    a = load_claims()["C1"].as_stated
    return load_device(a["lpu"]).bandwidth(a["lpu_tier"]) / load_device(a["gpu"]).bandwidth(a["gpu_tier"])


def system_ratio(lpu: Device, n_lpu: int, gpu: Device, n_gpu: int, tier: str = "hbm") -> float:
    """Aggregate bandwidth of a whole deployment against another (n chips each)."""
    return n_lpu * lpu.bandwidth() / (n_gpu * gpu.bandwidth(tier))


def judge_c1(table: pd.DataFrame, reference_gpu: str, tier: str, assumptions: dict | None = None) -> claims.Verdict:
    """C1's verdict: as stated (the claim's own devices' vendor peaks), best estimate for the
    chip under test against ``reference_gpu`` on ``tier``, band over every GPU compared on
    that tier."""
    rows = table[table["tier"] == tier]
    if rows.empty:
        raise ValueError(f"no GPU compared on tier {tier!r}")
    ref = reference_row(table, reference_gpu, tier)
    return claims.judge(
        "C1", as_stated=as_stated_ratio(), estimate=float(ref["bandwidth_ratio"]),
        low=float(rows["bandwidth_ratio"].min()), high=float(rows["bandwidth_ratio"].max()),
        assumptions={"reference GPU": reference_gpu, "GPU tier": tier,
                     "band": f"over {', '.join(rows['gpu'])}", **(assumptions or {})},
    )


# --------------------------------------------------------------------------- the whole analysis


def deployment_bandwidth(model, lpu: Device, gpu: Device, *, batch: int = 1, context: int | None = None,
                         precision=None, reserve: float = 0.0, tier: str | None = None) -> dict:
    """Both devices' deployments that hold ``model`` (:func:`lpulab.placement.need`: the
    fewest chips, rounded to each device's deployment unit) and their aggregate bandwidth:
    the one number notebooks 01 and 02 both quote."""
    from . import placement

    out: dict[str, Any] = {}
    for side, d, t in (("lpu", lpu, None), ("gpu", gpu, tier)):
        n = placement.need(model, d, batch, context, precision=precision, reserve=reserve)
        chips = float(n.deployed)
        bw = d.bandwidth(t)
        out[side] = {"device": d.id, "chips": chips, "chip_bandwidth": bw, "bandwidth": chips * bw,
                     "tier": t or d.main_tier}
    out["ratio"] = out["lpu"]["bandwidth"] / out["gpu"]["bandwidth"]
    out["chips_ratio"] = out["lpu"]["chips"] / out["gpu"]["chips"]
    return out


@dataclass(frozen=True)
class Result:
    """What notebook 01 records: the per-chip comparison on every tier, the reference
    ratio and its spread, the capacity it costs, a decode matrix on both roofs, the
    deployments' aggregate bandwidth, and C1's verdict."""

    lpu: str
    reference_gpu: str
    tier: str
    table: pd.DataFrame = field(repr=False)
    ratio: float = float("nan")
    ratio_min: float = float("nan")
    ratio_max: float = float("nan")
    sram_ratios: Mapping[str, float] = field(default_factory=dict)
    capacity_ratio: float = float("nan")
    roofline: Mapping = field(default_factory=dict)
    deployment: Mapping = field(default_factory=dict)
    verdict: claims.Verdict | None = None

    def to_dict(self) -> dict:
        on = self.table[self.table.tier == self.tier]
        return {"lpu": self.lpu, "reference_gpu": self.reference_gpu, "tier": self.tier,
                "ratio_vs_reference": self.ratio, "ratio_min_on_tier": self.ratio_min,
                "ratio_max_on_tier": self.ratio_max, "ratio_by_gpu": dict(zip(on.gpu, on.bandwidth_ratio.astype(float))),
                "sram_to_sram_ratio_by_gpu": dict(self.sram_ratios), "capacity_ratio_vs_reference_hbm": self.capacity_ratio,
                "gpus_per_lpu_capacity": 1.0 / self.capacity_ratio if self.capacity_ratio else float("nan"),
                "roofline": {k: v for k, v in self.roofline.items() if k not in ("roofs", "roof_tiers", "plot_points")},
                "deployment": dict(self.deployment),
                "as_stated_ratio": self.verdict.as_stated if self.verdict else None,
                "verdict": self.verdict.holds if self.verdict else None,
                "reproduces": self.verdict.reproduces if self.verdict else None,
                "claim_sentences": {"C1": self.sentence()}}

    def sentence(self) -> str:
        """C1 in one sentence: against which GPUs (on the tier compared) the claimed ratio
        holds, against which it does not, and what it is chip-SRAM to chip-SRAM."""
        from . import catalog
        from .report import fmt

        c = catalog.load_claims()["C1"]
        on = self.table[self.table.tier == self.tier]
        ratios = dict(zip(on.gpu, on.bandwidth_ratio.astype(float)))
        meets = (lambda r: r >= c.claimed * (1 - c.tolerance)) if c.comparison == "at-least" else (
            lambda r: abs(r / c.claimed - 1) <= c.tolerance)
        part = lambda xs: ", ".join(f"{g} ({fmt.ratio(r)})" for g, r in xs) or "none"  # noqa: E731
        yes = sorted(((g, r) for g, r in ratios.items() if meets(r)), key=lambda x: -x[1])
        no = sorted(((g, r) for g, r in ratios.items() if not meets(r)), key=lambda x: -x[1])
        word = "over" if c.comparison == "at-least" else "about"
        s = (f"{self.lpu}'s per-chip memory bandwidth is {word} {fmt.ratio(c.claimed)} that of {part(yes)} (their "
             f"{self.tier}), but not of {part(no)}")
        if self.sram_ratios:
            v = [float(x) for x in self.sram_ratios.values()]
            s += f"; against a GPU's own on-chip SRAM it is {fmt.ratio(min(v))} to {fmt.ratio(max(v))}"
        r = self.deployment.get("ratio") if isinstance(self.deployment, Mapping) else None
        if r is not None and r == r:
            s += (f"; per deployment that holds the model ({fmt.count(self.deployment['lpu']['chips'])} against "
                  f"{fmt.count(self.deployment['gpu']['chips'])} chips) it is {fmt.ratio(r)}")
        return s + "."


def decode_matrix(model) -> tuple[str, int, int]:
    """The largest weight matrix of one layer (from the tensor table): what a decode step
    streams most of. Returns (name, rows, cols)."""
    from . import architecture

    mats = [t for t in architecture.layer_tensors(model, 0) if t.role == "matmul"]
    t = max(mats, key=lambda x: x.elements)
    return t.name, int(t.shape[0]), int(t.shape[1])


def roofline_points(lpu: Device, gpu: Device, tier: str, precision: str, rows: int, cols: int, batches,
                    lpu_achieved: float = 1.0, gpu_achieved: float = 1.0) -> dict:
    """One ``rows x cols`` weight matrix times ``batches`` vectors on both devices' roofs at
    ``precision``: intensity, which roof binds, time on each and the speed-up."""
    from . import roofline as rl
    from .catalog import PRECISION_BYTES

    for d in (lpu, gpu):
        if precision not in d.compute:
            raise ValueError(f"{d.id} has no {precision} peak in the catalog (has {', '.join(d.compute)}); "
                             "choose another precision")
    R = [rl.roofs(lpu, precision, [lpu.main_tier], rl.Efficiency(memory=lpu_achieved)),
         rl.roofs(gpu, precision, [tier], rl.Efficiency(memory=gpu_achieved))]
    w = PRECISION_BYTES[precision]
    b = np.asarray(batches, float)
    flops, nbytes = rl.matvec(rows, cols, b, weight_bytes=w, act_bytes=w)
    t_l = rl.op_time(flops, {lpu.main_tier: nbytes}, R[0])
    t_g = rl.op_time(flops, {tier: nbytes}, R[1])
    att = {r.device: rl.attainable(flops / nbytes, r.peak, r.bandwidth[t]) for r, t in zip(R, [lpu.main_tier, tier])}
    plot_points = [{"label": f"B={int(bi)}", "intensity": float(i),
                    "attainable": {d: float(np.asarray(a)[k]) for d, a in att.items()}}
                   for k, (bi, i) in enumerate(zip(b, flops / nbytes))]
    return {"precision": precision, "rows": rows, "cols": cols, "batches": b.astype(int).tolist(),
            "roofs": R, "roof_tiers": {lpu.id: [lpu.main_tier], gpu.id: [tier]}, "plot_points": plot_points,
            "intensity": (flops / nbytes).tolist(), "lpu_bound": list(rl.bound(flops, {lpu.main_tier: nbytes}, R[0])),
            "gpu_bound": list(rl.bound(flops, {tier: nbytes}, R[1])), "lpu_time_s": np.asarray(t_l).tolist(),
            "gpu_time_s": np.asarray(t_g).tolist(), "speedup": (np.asarray(t_g) / np.asarray(t_l)).tolist(),
            "ridge_lpu": float(R[0].ridge(lpu.main_tier)), "ridge_gpu": float(R[1].ridge(tier)),
            "lpu_chips_to_hold_matrix": int(np.ceil(rows * cols * w / lpu.capacity()))}


def analyse(lpu: str, gpus: Sequence[str], reference_gpu: str, tier: str = "hbm", *, model: str = "llama-2-70b",
            precision: str = "int8", batches=(1, 8, 64, 512), lpu_achieved: float = 1.0, gpu_achieved: float = 1.0,
            context: int | None = None, batch: int = 1) -> Result:
    """C1 for the chip under test ``lpu`` against ``gpus``; the verdict's as-stated value is
    always the claim's own devices (``data/claims.toml`` ``[C1.as_stated]``)."""
    from . import catalog

    if reference_gpu not in gpus:
        raise ValueError(f"reference_gpu {reference_gpu!r} must be one of gpus: {list(gpus)}")
    L = catalog.load_device(lpu)
    G = [catalog.load_device(g) for g in gpus]
    table = compare(L, G, tiers=("hbm", "l2", "l1"), lpu_achieved=lpu_achieved, gpu_achieved=gpu_achieved)
    ref = reference_row(table, reference_gpu, tier)
    on = table[table.tier == tier]
    sram = table[table.gpu_placement == "on-chip"]
    hbm_ref = table[(table.gpu == reference_gpu) & (table.tier == "hbm")]
    M = catalog.load_model(model)
    name, rows, cols = decode_matrix(M)
    Gref = catalog.load_device(reference_gpu)
    roof = {"matrix": name, **roofline_points(L, Gref, tier, precision, rows, cols, batches, lpu_achieved, gpu_achieved)}
    dep = deployment_bandwidth(M, L, Gref, batch=batch, context=context, precision=precision)
    verdict = judge_c1(table, reference_gpu, tier, assumptions={
        "achieved fractions": f"chip under test {lpu_achieved}, GPU {gpu_achieved}", "chip under test": lpu})
    return Result(lpu, reference_gpu, tier, table, float(ref.bandwidth_ratio), float(on.bandwidth_ratio.min()),
                  float(on.bandwidth_ratio.max()), {f"{g}:{t}": float(x) for g, t, x in zip(sram.gpu, sram.tier, sram.bandwidth_ratio)},
                  float(hbm_ref.capacity_ratio.iloc[0]) if len(hbm_ref) else float("nan"), roof, dep, verdict)
