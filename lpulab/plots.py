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


# --------------------------------------------------------------------------- capacity (notebook 02)


def _gb(x):
    return np.asarray(x, float) / 1e9


def chips_by_device(df, title="Chips needed to hold the model"):
    """Bars per device (log scale): weights only, weights + KV cache (no granularity), the
    best layout, and the deployed count in whole units. ``df`` from
    :func:`lpulab.placement.compare_devices`."""
    cols = {"weights_only": "weights only", "fluid": "+ KV cache", "chips": "layout", "deployed": "deployed (whole units)"}
    long = df[["device", *cols]].melt(id_vars=["device"], var_name="count", value_name="n")
    long["count"] = long["count"].map(cols)
    fig, ax = plt.subplots(figsize=(8.5, 0.9 * len(df) + 1.8))
    sns.barplot(data=long, y="device", x="n", hue="count", ax=ax, orient="h")
    for c in ax.containers:
        ax.bar_label(c, fmt="%.0f", padding=2, fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("chips (log scale)")
    ax.set_ylabel("")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def residency_heatmap(chip_bytes, title="Per-chip residency", max_chips=None):
    """Heatmap: kinds (weight, KV cache, activations, reserve, free) x chips, coloured by the
    fraction of the chip's capacity. ``chip_bytes`` from :meth:`Placement.chip_bytes`."""
    df = chip_bytes if max_chips is None else chip_bytes.head(max_chips)
    frac = df[["weight", "kv", "activation", "reserve"]].div(df["capacity"], axis=0)
    frac["free"] = df["headroom"] / df["capacity"]
    mat = frac.T
    mat.columns = df["chip"].astype(int)
    n = mat.shape[1]
    fig, ax = plt.subplots(figsize=(min(14, 6 + 0.25 * n), 3.6))
    sns.heatmap(mat, ax=ax, cmap="mako_r", vmin=0, vmax=1, annot=n <= 16, fmt=".2f",
                cbar_kws={"label": "fraction of the chip's capacity"},
                xticklabels=max(1, n // 24) if n > 24 else True)
    ax.set_xlabel("chip (stage-major: stage s holds chips s*tp .. s*tp+tp-1)")
    ax.set_ylabel("")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def chips_sweep(df, value="deployed", x="context", hue="batch", col="device", title="", marks=None, mark_cols=None):
    """Chips needed against context (log2 x, log y), one line per batch, one panel per
    device: a step function. ``df`` from :func:`lpulab.placement.sweep`; ``marks`` maps a
    label to a chip count drawn as a horizontal line on the panels in ``mark_cols`` (all
    panels by default)."""
    data = df.replace([np.inf], np.nan)
    levels = [str(v) for v in sorted(data[hue].unique())]
    data = data.assign(**{hue: data[hue].astype(str)})
    g = sns.relplot(data=data, x=x, y=value, hue=hue, hue_order=levels, col=col, kind="line", drawstyle="steps-post",
                    marker="o", palette=sns.color_palette("viridis", len(levels)), height=3.4, aspect=1.1,
                    col_wrap=min(3, data[col].nunique()), facet_kws={"sharey": False})
    g.set_titles("{col_name}")
    for name, ax in g.axes_dict.items():
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        for label, v in (marks or {}).items() if mark_cols is None or name in mark_cols else ():
            ax.axhline(v, color="crimson", ls="--", lw=1)
            ax.annotate(label, (0.02, v), xycoords=("axes fraction", "data"), fontsize=7, color="crimson",
                        xytext=(0, 2), textcoords="offset points")
    g.set_axis_labels(f"{x} (tokens per sequence)" if x == "context" else x, "chips (log scale)")
    if title:
        g.figure.suptitle(title, y=1.02)
    return g.figure


def capacity_chain(df, title="From the back-of-envelope count to a deployment"):
    """The chain of :func:`lpulab.placement.capacity_chain` as bars, one per step."""
    fig, ax = plt.subplots(figsize=(8.5, 0.5 * len(df) + 1.4))
    sns.barplot(data=df, y="step", x="chips", ax=ax, orient="h", color=sns.color_palette("deep")[0])
    ax.bar_label(ax.containers[0], fmt="%.0f", padding=3, fontsize=9)
    ax.set_xlabel("chips")
    ax.set_ylabel("")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def capacity_and_bandwidth(df, title="Capacity against bandwidth: per chip and per deployment"):
    """Three panels per device: memory per chip (GB), chips needed to hold the model, and
    memory bandwidth per chip and of the whole deployment (TB/s). ``df`` from
    :func:`lpulab.placement.compare_devices`."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 0.6 * len(df) + 2.2), sharey=True)
    pal = sns.color_palette("deep")
    d = df.assign(capacity_GB=_gb(df["capacity"]))
    sns.barplot(data=d, y="device", x="capacity_GB", ax=axes[0], orient="h", color=pal[0])
    axes[0].set_xscale("log")
    axes[0].set_xlabel("memory per chip (GB, log)")
    sns.barplot(data=d, y="device", x="chips", ax=axes[1], orient="h", color=pal[1])
    axes[1].set_xscale("log")
    axes[1].set_xlabel("chips to hold the model (log)")
    bw = d.melt(id_vars=["device"], value_vars=["bandwidth", "deployment_bandwidth"], var_name="scope", value_name="bw")
    bw["bw"] = bw["bw"] / 1e12
    bw["scope"] = bw["scope"].map({"bandwidth": "per chip", "deployment_bandwidth": "whole deployment"})
    sns.barplot(data=bw, y="device", x="bw", hue="scope", ax=axes[2], orient="h", palette=[pal[2], pal[3]])
    axes[2].set_xscale("log")
    axes[2].set_xlabel("memory bandwidth (TB/s, log)")
    axes[2].legend(fontsize=8, loc="lower right")
    for ax in axes:
        ax.set_ylabel("")
        for c in ax.containers:
            ax.bar_label(c, fmt="%.3g", padding=2, fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- speed (notebook 03)


def frontier(curves: dict, measured=None, title="Latency against throughput"):
    """Per-user tokens/s (x) against aggregate tokens/s (y) for each deployment in ``curves``
    (label -> DataFrame from :func:`lpulab.perf.operating_points`); points that do not fit in
    memory are dropped; ``measured`` rows (columns label, per_user, aggregate) are overlaid."""
    fig, ax = plt.subplots(figsize=(8.5, 5.5))
    for label, df in curves.items():
        ok = df[df["fits"]]
        line, = ax.plot(ok["per_user_tok_s"], ok["aggregate_tok_s"], marker="o", ms=3, lw=2, label=label)
        for r in ok.iloc[[0, len(ok) // 2, -1]].itertuples() if len(ok) > 2 else ok.itertuples():
            ax.annotate(f"{r.concurrency:g}", (r.per_user_tok_s, r.aggregate_tok_s), fontsize=7,
                        color=line.get_color(), xytext=(4, 2), textcoords="offset points")
    if measured is not None and len(measured):
        for r in measured.itertuples():
            ax.plot(r.per_user, r.aggregate, marker="*", ms=13, color="black", ls="none")
            ax.annotate(r.label, (r.per_user, r.aggregate), fontsize=8, xytext=(5, -10), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("per-user decode speed (tokens/s per stream)")
    ax.set_ylabel("aggregate output (tokens/s, whole deployment)")
    ax.set_title(title + "  (numbers: streams in flight)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def ratio_curve(x, ratios: dict, threshold=None, xlabel="", ylabel="ratio", title=""):
    """One or more ratio curves against ``x`` (log-log), with the claimed value as a line
    and the parity line at 1x."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, y in ratios.items():
        ax.plot(x, y, lw=2, marker="o", ms=3, label=label)
    if threshold is not None:
        ax.axhline(threshold, color="crimson", ls="--", lw=1.5, label=f"claimed {threshold:g}x")
    ax.axhline(1.0, color="grey", lw=1, ls=":", label="parity")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def predicted_vs_measured(table, title="Predicted against measured"):
    """Scatter of a calibration table (columns predicted, measured, fitted, metric), log-log,
    with the 1:1 line and a +-25 % band."""
    fig, ax = plt.subplots(figsize=(6.5, 6))
    sns.scatterplot(data=table.assign(role=np.where(table["fitted"], "fitted", "checked")), x="measured",
                    y="predicted", hue="metric", style="role", s=80, ax=ax)
    lo = min(table["measured"].min(), table["predicted"].min()) / 2
    hi = max(table["measured"].max(), table["predicted"].max()) * 2
    xs = np.array([lo, hi])
    ax.plot(xs, xs, color="black", lw=1)
    ax.fill_between(xs, xs * 0.75, xs * 1.25, color="grey", alpha=0.15, label="+-25 %")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
