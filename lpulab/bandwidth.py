"""Claim C1: per-chip memory bandwidth (and the capacity paid for it), LPU against GPUs.

The ratio the claim rests on is ``e_L * W_LPU,sram / (e_G * W_GPU,tier)`` with achieved
fractions ``e`` (1.0 = vendor peak on both sides unless the caller says otherwise). The
capacity ratio ``C_LPU / C_GPU`` is its price: the same chips hold a few hundred MB
instead of tens of GB.
"""

from __future__ import annotations

import pandas as pd

from . import claims
from .catalog import Device, load_device


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
    rows = []
    for g in gpus:
        for tier in tiers:
            t = g.memory.get(tier)
            if t is None or t.bandwidth is None:
                continue
            rows.append({
                "gpu": g.id, "gpu_name": g.name, "tier": tier, "gpu_placement": t.placement,
                "lpu_bandwidth": lt.bandwidth.si * lpu_achieved, "gpu_bandwidth": t.bandwidth.si * gpu_achieved,
                "lpu_capacity": lt.capacity.si, "gpu_capacity": t.capacity.si if t.capacity else float("nan"),
                "bandwidth_ratio": (lt.bandwidth.si * lpu_achieved) / (t.bandwidth.si * gpu_achieved),
                "capacity_ratio": lt.capacity.si / t.capacity.si if t.capacity else float("nan"),
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


def as_stated_ratio(lpu: str = "groq-lpu-v1", gpu: str = "nvidia-h100-sxm") -> float:
    """The claim's own arithmetic: vendor peak SRAM bandwidth over vendor peak HBM bandwidth."""
    return load_device(lpu).bandwidth("sram") / load_device(gpu).bandwidth("hbm")


def system_ratio(lpu: Device, n_lpu: int, gpu: Device, n_gpu: int, tier: str = "hbm") -> float:
    """Aggregate bandwidth of a whole deployment against another (n chips each)."""
    return n_lpu * lpu.bandwidth() / (n_gpu * gpu.bandwidth(tier))


def judge_c1(table: pd.DataFrame, reference_gpu: str, tier: str, lpu: str = "groq-lpu-v1",
             assumptions: dict | None = None) -> claims.Verdict:
    """C1's verdict: as stated (LPU v1 vs H100 SXM HBM, peaks), best estimate against
    ``reference_gpu`` on ``tier``, band over every GPU compared on that tier."""
    rows = table[table["tier"] == tier]
    if rows.empty:
        raise ValueError(f"no GPU compared on tier {tier!r}")
    ref = reference_row(table, reference_gpu, tier)
    return claims.judge(
        "C1", as_stated=as_stated_ratio(lpu), estimate=float(ref["bandwidth_ratio"]),
        low=float(rows["bandwidth_ratio"].min()), high=float(rows["bandwidth_ratio"].max()),
        assumptions={"reference GPU": reference_gpu, "GPU tier": tier,
                     "band": f"over {', '.join(rows['gpu'])}", **(assumptions or {})},
    )
