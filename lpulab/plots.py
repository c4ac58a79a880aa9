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
# --------------------------------------------------------------------------- cost (C3, C4)


def tornado(table, title="", xlabel="ratio", claimed=None, log=False, labels=None, max_rows=12):
    """One-at-a-time sensitivity (the table of :func:`lpulab.cost.tornado`): for each input a
    bar from the metric at the input's low end to its high end, around the point value."""
    df = table[table["swing"] > 0].head(max_rows).iloc[::-1]
    fig, ax = plt.subplots(figsize=(8.5, 0.42 * len(df) + 1.6))
    y = np.arange(len(df))
    p = float(df["point"].iloc[0])
    lo_c, hi_c = sns.color_palette("deep")[0], sns.color_palette("deep")[3]
    for yi, r in zip(y, df.itertuples()):
        ax.barh(yi, r.at_low - p, left=p, color=lo_c, alpha=0.85)
        ax.barh(yi, r.at_high - p, left=p, color=hi_c, alpha=0.85)
    ax.axvline(p, color="black", lw=1)
    if claimed is not None:
        ax.axvline(claimed, color="crimson", ls="--", lw=1.5, label=f"claimed {claimed:g}x")
    names = [labels.get(n, n) if labels else n for n in df["input"]]
    lows = df["low_shown"] if "low_shown" in df else df["low"]
    highs = df["high_shown"] if "high_shown" in df else df["high"]
    unit = df["unit"] if "unit" in df else [""] * len(df)
    ax.set_yticks(y, [f"{n}  [{_short(lo)} .. {_short(hi)}{' ' + u if u and u != 'count' else ''}]"
                      for n, lo, hi, u in zip(names, lows, highs, unit)], fontsize=8)
    if log:
        ax.set_xscale("log")
        _plain_log(ax.xaxis)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    from matplotlib.patches import Patch
    handles = [Patch(color=lo_c, label="input at its low end"), Patch(color=hi_c, label="input at its high end")]
    if claimed is not None:
        handles.append(ax.get_lines()[-1])
    ax.legend(handles=handles, loc="lower right", fontsize=8)
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
def _plain_log(axis):
    """Label a log axis 1, 2, 5, 10, 20 ... instead of 2x10^1."""
    from matplotlib import ticker

    lo, hi = sorted(axis.get_view_interval())
    decades = np.log10(hi / lo) if lo > 0 else 10.0
    subs = (1.0,) if decades > 3 else (1.0, 2.0, 5.0) if decades > 1.2 else (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)
    axis.set_major_locator(ticker.LogLocator(base=10, subs=subs))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: _short(v)))
    axis.set_minor_formatter(ticker.NullFormatter())


def _short(v: float) -> str:
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e3:
        return f"{v / 1e3:.3g}k"
    if 0 < a < 1e-3:
        return f"{v:.2e}"
    return f"{v:.3g}"


def distributions(samples, bands, claimed=None, titles=None, log=True, bins=60):
    """Monte Carlo distribution of each ratio: histogram, P5-P95 band shaded, P50 and the
    point estimate as lines, the claimed value dashed. ``samples`` maps metric -> draws;
    ``bands`` is :func:`lpulab.cost.bands` (p5, p50, p95, point) indexed by metric."""
    metrics = list(bands.index)
    fig, axes = plt.subplots(len(metrics), 1, figsize=(8.5, 2.3 * len(metrics) + 0.6), squeeze=False)
    for ax, m in zip(axes[:, 0], metrics):
        x = np.asarray(samples[m], float)
        x = x[np.isfinite(x) & (x > 0)] if log else x[np.isfinite(x)]
        edges = np.geomspace(x.min(), x.max(), bins) if log else bins
        ax.hist(x, bins=edges, color=sns.color_palette("deep")[0], alpha=0.75)
        b = bands.loc[m]
        ax.axvspan(b["p5"], b["p95"], color="grey", alpha=0.18, label=f"P5-P95 [{b['p5']:.3g}, {b['p95']:.3g}]")
        ax.axvline(b["p50"], color="black", lw=1.2, label=f"P50 {b['p50']:.3g}")
        if "point" in b and np.isfinite(b["point"]):
            ax.axvline(b["point"], color="darkorange", lw=1.5, ls="-.", label=f"point estimate {b['point']:.3g}")
        if claimed and m in claimed:
            ax.axvline(claimed[m], color="crimson", ls="--", lw=1.5, label=f"claimed {claimed[m]:g}")
        if log:
            ax.set_xscale("log")
            _plain_log(ax.xaxis)
        ax.set_title((titles or {}).get(m, m), fontsize=10)
        ax.set_yticks([])
        ax.legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("ratio, LPU / GPU" + (" (log scale)" if log else ""))
    fig.tight_layout()
    return fig


def cost_per_mtok(table, title="Cost per million output tokens", xlabel="USD per million output tokens (log scale)"):
    """Horizontal bars of $/Mtok per row (``label``, ``point``; optional ``p5``/``p95``
    whiskers; ``platform`` colours the bars)."""
    fig, ax = plt.subplots(figsize=(8.5, 0.5 * len(table) + 1.6))
    y = np.arange(len(table))[::-1]
    palette = dict(zip(sorted(table["platform"].unique()), sns.color_palette("deep")))
    for yi, r in zip(y, table.itertuples()):
        ax.barh(yi, r.point, color=palette[r.platform], alpha=0.85)
        if hasattr(r, "p5") and np.isfinite(r.p5):
            ax.plot([r.p5, r.p95], [yi, yi], color="black", lw=1.2)
            ax.plot([r.p5, r.p95], [yi, yi], "|", color="black", ms=10)
        ax.annotate(f"${r.point:.3g}", (r.point, yi), xytext=(4, 3), textcoords="offset points", fontsize=8)
    ax.set_yticks(y, table["label"], fontsize=8)
    ax.set_xscale("log")
    _plain_log(ax.xaxis)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def break_even(panels, title=""):
    """Side-by-side break-even panels. Each panel is a dict: ``x``, ``xlabel``, ``curves``
    (list of dicts: ``label``, ``y``, optional ``low``/``high`` band), ``refs`` (list of
    ``(x, label)`` vertical reference lines), ``root`` (the break-even x, marked), optional
    ``logx``/``logy`` (default True), ``ylabel``."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.4), squeeze=False)
    for ax, p in zip(axes[0], panels):
        for c, color in zip(p["curves"], sns.color_palette("deep")):
            ax.plot(p["x"], c["y"], color=color, lw=2, label=c["label"])
            if "low" in c:
                ax.fill_between(p["x"], c["low"], c["high"], color=color, alpha=0.15)
        for k, (x, label) in enumerate(p.get("refs", [])):
            ax.axvline(x, color="grey", ls=":", lw=1)
            ax.annotate(label, (x, 0.98 if k % 2 == 0 else 0.55), xycoords=("data", "axes fraction"), rotation=90,
                        va="top", ha="right", fontsize=7, color="dimgrey")
        root = p.get("root")
        if root is not None and np.isfinite(root) and min(p["x"]) <= root <= max(p["x"]):
            ax.axvline(root, color="crimson", ls="--", lw=1.3, label=f"break-even {_short(root)}")
        if p.get("logx", True):
            ax.set_xscale("log")
            _plain_log(ax.xaxis)
        if p.get("logy", True):
            ax.set_yscale("log")
            _plain_log(ax.yaxis)
        ax.set_xlabel(p["xlabel"])
        ax.set_ylabel(p.get("ylabel", "USD per million output tokens"))
        ax.legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- kernels (notebook 05)


def measured_roofline(r: Roofs, points, title="Executed kernels on this host's roofline", label="op", hue="phase",
                      imin=None, imax=None):
    """This host's roofs (the compute peak and one bandwidth roof per measured tier) with
    measured points: ``points`` rows have ``intensity`` (FLOP/byte), ``flops_per_s``
    (achieved), a ``label`` column written next to each point and a ``hue`` column
    (e.g. decode / prefill). Points without FLOPs (a gather) cannot sit on a log axis and
    are left out."""
    pts = points[(points["flops_per_s"] > 0) & (points["intensity"] > 0)]
    lo = imin or max(min(float(pts["intensity"].min()) / 3, 0.5) if len(pts) else 0.05, 1e-3)
    hi = imax or max(float(pts["intensity"].max()) * 3 if len(pts) else 100.0, 4 * max(r.ridge(t) for t in r.bandwidth))
    fig, ax = plt.subplots(figsize=(9, 6))
    x = np.logspace(np.log10(lo), np.log10(hi), 400)
    tiers = sorted(r.bandwidth, key=r.bandwidth.get, reverse=True)
    for t, color in zip(tiers, sns.color_palette("Greys_r", len(tiers) + 2)):
        ax.plot(x, attainable(x, r.peak, r.bandwidth[t]) / 1e9, color=color, lw=2,
                label=f"{t}: {r.bandwidth[t] / 1e9:.0f} GB/s")
    ax.axhline(r.peak / 1e9, color="black", lw=0.8, ls=":")
    groups = list(dict.fromkeys(pts[hue])) if hue in pts else [None]
    for g, color in zip(groups, sns.color_palette("deep", max(len(groups), 1))):
        sub = pts if g is None else pts[pts[hue] == g]
        ax.scatter(sub["intensity"], sub["flops_per_s"] / 1e9, s=36, color=color, edgecolor="black", zorder=3,
                   label=f"measured: {g}" if g is not None else "measured")
        for row in sub.itertuples():
            ax.annotate(str(getattr(row, label)), (row.intensity, row.flops_per_s / 1e9), fontsize=7,
                        xytext=(3, 3), textcoords="offset points", color=color)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP per byte, docs/counting.md)")
    ax.set_ylabel(f"GFLOP/s ({r.precision} peak {r.peak / 1e9:.0f} GFLOP/s)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def measured_vs_assumed(table, value="measured", ref="assumed", label="part",
                        title="Bytes between chips per token: measured against assumed"):
    """Horizontal bars: for each part (row) the measured and the assumed figure side by side
    (e.g. :func:`lpulab.kernels.compare.transfers_vs_perf`)."""
    long = table[[label, value, ref]].melt(id_vars=[label], var_name="figure", value_name="bytes")
    fig, ax = plt.subplots(figsize=(8.5, 0.6 * len(table) + 1.6))
    sns.barplot(data=long, y=label, x="bytes", hue="figure", ax=ax, orient="h")
    for c in ax.containers:
        ax.bar_label(c, fmt="{:,.0f}", padding=2, fontsize=8)
    ax.set_xlabel("bytes per token")
    ax.set_ylabel("")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig
