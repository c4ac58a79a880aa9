"""Hierarchical roofline: how fast an operation can run on a device's memory tiers.

For an operation with ``F`` FLOPs that moves ``b_t`` bytes through memory tier ``t``, the
time it needs on a device with peak ``P`` and tier bandwidths ``W_t`` is

    T = max(F / (e_c * P), max_t b_t / (e_m * W_t))

where ``e_c`` and ``e_m`` are achieved fractions (1.0 = the vendor's peak). The attainable
rate at arithmetic intensity ``I = F / b`` on one tier is ``min(e_c P, I e_m W)``, and the
ridge point, where the two roofs meet, is ``I* = e_c P / (e_m W)``.

Every function broadcasts over numpy arrays: a sweep is one call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .catalog import Device


@dataclass(frozen=True)
class Efficiency:
    """Achieved fractions of the vendor peaks. Keep them equal on both sides of a comparison
    unless there is a measured reason not to (and say so)."""

    compute: float = 1.0
    memory: float = 1.0
    link: float = 1.0

    def __post_init__(self):
        for name in ("compute", "memory", "link"):
            v = getattr(self, name)
            if not np.all((np.asarray(v) > 0) & (np.asarray(v) <= 1.0)):
                raise ValueError(f"Efficiency.{name} must be in (0, 1], got {v!r}")


@dataclass(frozen=True)
class Roofs:
    """The roofs of one device at one precision, after achieved fractions."""

    device: str
    precision: str
    peak: float                                   # FLOP/s
    bandwidth: Mapping[str, float] = field(default_factory=dict)  # tier -> bytes/s

    def ridge(self, tier: str) -> float:
        """Ridge point on ``tier``, FLOP per byte."""
        return ridge_point(self.peak, self.bandwidth[tier])


def roofs(device: Device, precision: str = "bf16", tiers=None, efficiency: Efficiency | None = None) -> Roofs:
    """The compute roof at ``precision`` and the bandwidth roof of each tier of ``device``."""
    e = efficiency or Efficiency()
    names = list(tiers) if tiers is not None else [t for t, m in device.memory.items() if m.bandwidth]
    bw = {t: device.bandwidth(t) * e.memory for t in names}
    return Roofs(device.id, precision, device.peak(precision) * e.compute, bw)


def attainable(intensity, peak, bandwidth):
    """Attainable FLOP/s at arithmetic ``intensity`` (FLOP/byte): ``min(peak, I * bandwidth)``."""
    intensity, peak, bandwidth = np.asarray(intensity, float), np.asarray(peak, float), np.asarray(bandwidth, float)
    if np.any(intensity < 0):
        raise ValueError("arithmetic intensity must be non-negative")
    return np.minimum(peak, intensity * bandwidth)


def ridge_point(peak, bandwidth):
    """Intensity (FLOP/byte) where the compute roof meets the bandwidth roof."""
    return np.asarray(peak, float) / np.asarray(bandwidth, float)


def op_time(flops, bytes_by_tier: Mapping[str, object], r: Roofs):
    """Time (s) of an operation: the slowest of its compute time and each tier's transfer time.

    ``bytes_by_tier`` maps a tier name to the bytes the operation moves through it.
    """
    t = np.asarray(flops, float) / r.peak
    for tier, b in bytes_by_tier.items():
        if tier not in r.bandwidth:
            raise KeyError(f"{r.device} has no bandwidth roof for tier {tier!r} (tiers: {', '.join(r.bandwidth)})")
        t = np.maximum(t, np.asarray(b, float) / r.bandwidth[tier])
    return t


def bound(flops, bytes_by_tier: Mapping[str, object], r: Roofs):
    """Which roof limits the operation: ``"compute"`` or the name of a memory tier."""
    names = ["compute"] + list(bytes_by_tier)
    times = [np.asarray(flops, float) / r.peak] + [
        np.asarray(b, float) / r.bandwidth[t] for t, b in bytes_by_tier.items()
    ]
    idx = np.argmax(np.broadcast_arrays(*times), axis=0)
    return np.asarray(names, dtype=object)[idx]


def matvec(rows, cols, batch=1, weight_bytes=1.0, act_bytes=2.0):
    """FLOPs and bytes of ``batch`` vectors times a ``rows x cols`` weight matrix.

    Returns ``(flops, bytes)``: ``2*batch*rows*cols`` FLOPs; the weights once plus the input
    and output activations. At batch 1 the intensity is about ``2 / weight_bytes``.
    """
    rows, cols, batch = (np.asarray(x, float) for x in (rows, cols, batch))
    flops = 2.0 * batch * rows * cols
    nbytes = rows * cols * weight_bytes + batch * (rows + cols) * act_bytes
    return flops, nbytes
