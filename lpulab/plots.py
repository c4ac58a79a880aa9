"""Figures. Every function returns a matplotlib Figure and draws nothing else; notebooks show
them. Units are formatted for people here (SI floats come in)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from .roofline import Roofs, attainable

sns.set_theme(style="whitegrid", context="notebook")


def ratio_bars(df, value="bandwidth_ratio", label="gpu", hue="tier", threshold=None, title="", xlabel="ratio"):
    """Horizontal bars of a ratio per row, with the claimed threshold as a line."""
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(df) + 1.6))
    sns.barplot(data=df, y=label, x=value, hue=hue, ax=ax, orient="h")
    for c in ax.containers:
        ax.bar_label(c, fmt="%.1fx", padding=3, fontsize=9)
    if threshold is not None:
        ax.axvline(threshold, color="crimson", ls="--", lw=1.5, label=f"claimed {threshold:g}x")
        ax.legend(loc="lower right")
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def capacity_bandwidth(devices, tier_of=None, title="Capacity against bandwidth, per chip"):
    """Scatter of every device's weight-holding tier: capacity (x) against bandwidth (y)."""
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for d in devices:
        t = d.tier(tier_of(d) if tier_of else None)
        if not (t.capacity and t.bandwidth):
            continue
        ax.scatter(t.capacity.si / 1e9, t.bandwidth.si / 1e12, s=60,
                   marker="*" if d.category == "lpu" else "o", zorder=3)
        ax.annotate(f"{d.id}\n({t.name})", (t.capacity.si / 1e9, t.bandwidth.si / 1e12), fontsize=8,
                    textcoords="offset points", xytext=(5, 4))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("capacity of the tier that holds the weights (GB)")
    ax.set_ylabel("bandwidth of that tier (TB/s)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def roofline(roofs: list[Roofs], tiers: dict, points=(), title="Roofline", imin=0.1, imax=1e4):
    """Log-log roofline of several devices. ``tiers`` maps device id -> tiers to draw;
    ``points`` are dicts with label, intensity (FLOP/B), and per-device attainable FLOP/s
    computed by the caller (keys = device ids)."""
    fig, ax = plt.subplots(figsize=(8.5, 5.5))
    x = np.logspace(np.log10(imin), np.log10(imax), 400)
    palette = sns.color_palette("deep", len(roofs))
    for color, r in zip(palette, roofs):
        for i, t in enumerate(tiers.get(r.device, list(r.bandwidth))):
            ax.plot(x, attainable(x, r.peak, r.bandwidth[t]) / 1e12, color=color,
                    ls=["-", "--", ":"][i % 3], lw=2, label=f"{r.device} {t} ({r.precision})")
            ridge = r.ridge(t)
            if imin <= ridge <= imax:
                ax.plot([ridge], [r.peak / 1e12], "o", color=color, ms=4)
    for p in points:
        for color, r in zip(palette, roofs):
            if r.device in p["attainable"]:
                ax.plot(p["intensity"], p["attainable"][r.device] / 1e12, marker="D", color=color, ms=7,
                        mec="black")
        ax.axvline(p["intensity"], color="grey", lw=0.8, ls=":")
        ax.annotate(p["label"], (p["intensity"], 0), fontsize=8,
                    xycoords=("data", "axes fraction"), xytext=(3, 5), textcoords="offset points", rotation=90)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP per byte)")
    ax.set_ylabel("attainable (TFLOP/s or TOP/s)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig
