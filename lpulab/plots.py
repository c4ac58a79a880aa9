"""Figures. Every function returns a matplotlib Figure and draws nothing else; notebooks show
them. Units are formatted for people here (SI floats come in), with the rules of
:mod:`lpulab.report.fmt`.

One place sets how every figure looks (:data:`DPI`, fonts, :func:`configure`), one function
gives a device its colour in every figure of every notebook (:func:`device_color`), labels
next to points are placed by adjustText so they do not overlap, and legends sit outside the
data.
"""

from __future__ import annotations

import colorsys
import hashlib
from functools import lru_cache
from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib import ticker
from matplotlib.patches import Patch

from .report import fmt
from .roofline import Roofs, attainable

#: dots per inch of every figure as shown; figures are also sent at twice this resolution
#: for sharp text on high-density laptop screens (:func:`configure`)
DPI = 100
#: smallest font in a figure (tick labels, labels next to points), points
SMALL = 9
#: hatches that tell the levels of a second grouping apart (with shades of the device colour)
HATCHES = ("", "//", "..", "xx", "\\\\", "++")


def configure() -> None:
    """Apply the figure style: the seaborn theme, :data:`DPI`, font sizes, and, inside
    IPython, PNG figures at twice the resolution (shown at their nominal size)."""
    sns.set_theme(style="whitegrid", context="notebook")
    mpl.rcParams.update({
        "figure.dpi": DPI, "savefig.dpi": 2 * DPI, "savefig.bbox": "tight",
        "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": SMALL,
        "ytick.labelsize": SMALL, "legend.fontsize": SMALL, "legend.title_fontsize": SMALL,
    })
    try:
        from IPython import get_ipython

        if get_ipython() is not None:
            from matplotlib_inline.backend_inline import set_matplotlib_formats

            set_matplotlib_formats("retina")
    except ImportError:  # no IPython: nothing to configure for notebooks
        pass


configure()


# --------------------------------------------------------------------------- colours


#: colours of the shipped devices, in the order of their sorted ids: tab10, then its lighter
#: half, without the greys (grey draws what belongs to no device: references, legends of levels)
_BASE = [c for i, c in enumerate(sns.color_palette("tab10")) if i != 7] + \
    [c for i, c in enumerate(sns.color_palette("tab20")[1::2]) if i != 7]


@lru_cache(maxsize=1)
def _shipped_ids() -> tuple[str, ...]:
    from . import catalog, paths

    try:
        return tuple(sorted(catalog.device_ids(paths.HARDWARE)))
    except Exception:  # no catalog folder: every device gets a hashed colour
        return ()


def device_color(device_id: str) -> tuple[float, float, float]:
    """The colour of a device in every figure. Shipped devices (``data/hardware``) take the
    palette in the order of their sorted ids; any other id (a user's device) gets a colour
    from a hash of its id, the same in every run. A label that starts with a device id
    (``"groq-lpu-v1 x576 (int8)"``) gets that device's colour."""
    ids = _shipped_ids()
    key = str(device_id)
    if key not in ids:
        match = max((i for i in ids if key.startswith(i)), key=len, default=None)
        if match is not None:
            key = match
    if key in ids:
        return tuple(_BASE[ids.index(key) % len(_BASE)])
    h = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
    return colorsys.hls_to_rgb((h % 360) / 360.0, 0.45, 0.65)


def device_palette(device_ids) -> dict:
    """``{device id: colour}`` for a seaborn ``palette=`` argument."""
    return {d: device_color(d) for d in device_ids}


def _shade(color, level: int, levels: int):
    """``color`` lightened for the ``level``-th of ``levels`` groups (0 is the colour itself)."""
    if levels <= 1 or level == 0:
        return tuple(color)
    t = 0.55 * level / (levels - 1)
    return tuple(c + (1 - c) * t for c in color)


# --------------------------------------------------------------------------- helpers


def _subplots(*args, **kw):
    kw.setdefault("layout", "constrained")
    kw.setdefault("dpi", DPI)
    return plt.subplots(*args, **kw)


def _legend_outside(ax, handles=None, title=None, **kw):
    """A legend to the right of the axes, outside the data."""
    if handles is not None:
        kw["handles"] = handles
    return ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False,
                     title=title, **kw)


def _wrap(text, fig, scale: float = 11.0) -> str:
    """A title wrapped to the figure's width (about ``scale`` characters per inch), so a long
    device or model name cannot make the figure wider than its axes."""
    import textwrap

    width = max(30, int(fig.get_figwidth() * scale))
    return "\n".join(textwrap.fill(line, width) for line in _tex_safe(str(text)).splitlines() or [""])


def _tex_safe(text: str) -> str:
    """Text for matplotlib: a ``$`` is a dollar sign, not mathtext."""
    return str(text).replace("$", r"\$")


def _short(v: float) -> str:
    """A tick label: three significant figures, k/M for thousands and millions."""
    a = abs(v)
    if a >= 1e6:
        return fmt.number(v / 1e6) + "M"
    if a >= 1e4:
        return fmt.number(v / 1e3) + "k"
    return fmt.number(v)


def _plain_log(axis):
    """Label a log axis 1, 2, 5, 10, 20 ... instead of 2x10^1, without crowding."""
    lo, hi = sorted(axis.get_view_interval())
    decades = np.log10(hi / lo) if lo > 0 else 10.0
    subs = (1.0,) if decades > 3 else (1.0, 2.0, 5.0) if decades > 1.2 else (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)
    axis.set_major_locator(ticker.LogLocator(base=10, subs=subs, numticks=12))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: _short(v)))
    axis.set_minor_formatter(ticker.NullFormatter())


def _plain_linear(axis, unit=None):
    axis.set_major_formatter(ticker.FuncFormatter(
        lambda v, _: fmt.si(v, unit) if unit else _short(v)))


def _label_points(ax, texts, xs, ys):
    """Move ``texts`` (labels next to points) so that they overlap neither each other nor the
    points (adjustText), with a thin line back to a point that a label left."""
    if not texts:
        return
    from adjustText import adjust_text

    ax.figure.canvas.draw()  # the layout (constrained) fixes the axes' size first
    adjust_text(texts, x=list(xs), y=list(ys), ax=ax, expand=(1.25, 1.5), ensure_inside_axes=True,
                force_text=(0.4, 0.7), iter_lim=3000, arrowprops=dict(arrowstyle="-", color="0.45", lw=0.6))


def _grouped_barh(ax, df, category, group, value, color_of, label_of, log=True):
    """Horizontal bars: one row per ``category`` (coloured by ``color_of(category)``), one
    bar per ``group`` level inside it (a lighter shade and a hatch per level), each labelled
    with ``label_of(value)``. Returns the legend handles of the groups."""
    cats = list(dict.fromkeys(df[category]))
    levels = list(dict.fromkeys(df[group])) if group else [None]
    n = len(levels)
    height = 0.8 / n
    handles = []
    for i, lev in enumerate(levels):
        sub = df if lev is None else df[df[group] == lev]
        ys = [cats.index(c) + (i - (n - 1) / 2) * height for c in sub[category]]
        colors = [_shade(color_of(c), i, n) for c in sub[category]]
        vals = sub[value].to_numpy(float)
        bars = ax.barh(ys, vals, height=0.95 * height, color=colors, hatch=HATCHES[i % len(HATCHES)],
                       edgecolor="white", linewidth=0.5)
        ax.bar_label(bars, labels=[label_of(v) for v in vals], padding=3, fontsize=SMALL - 1)
        if lev is not None:
            handles.append(Patch(facecolor=_shade((0.45, 0.45, 0.45), i, n), hatch=HATCHES[i % len(HATCHES)],
                                 edgecolor="white", label=str(lev)))
    ax.set_yticks(range(len(cats)), cats)
    ax.set_ylim(len(cats) - 0.5, -0.5)
    if log:
        ax.set_xscale("log")
        vals = df[value].to_numpy(float)
        vals = vals[np.isfinite(vals) & (vals > 0)]
        if len(vals):  # bars start left of the smallest; room on the right for the value labels
            ax.set_xlim(vals.min() / 2.5, vals.max() * 3)
        _plain_log(ax.xaxis)
    else:
        ax.set_xlim(0, ax.get_xlim()[1] * 1.18)
    return handles


# --------------------------------------------------------------------------- bandwidth (notebook 01)


def ratio_bars(df, value="bandwidth_ratio", label="gpu", hue="tier", threshold=None, title="", xlabel="ratio (x)"):
    """Horizontal bars of a ratio per row (one colour per device in ``label``, a shade and a
    hatch per ``hue`` level), with the claimed threshold as a line."""
    cats = df[label].nunique()
    levels = df[hue].nunique() if hue else 1
    fig, ax = _subplots(figsize=(9, 0.32 * cats * max(levels, 1) + 1.8))
    handles = _grouped_barh(ax, df, label, hue, value, device_color, fmt.ratio)
    if threshold is not None:
        handles.append(ax.axvline(threshold, color="crimson", ls="--", lw=1.5, label=f"claimed {fmt.ratio(threshold)}"))
    _legend_outside(ax, handles=handles, title=hue)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(label)
    ax.set_title(_wrap(title, fig))
    return fig


def capacity_bandwidth(devices, tier_of=None, title="Capacity against bandwidth, per chip"):
    """Scatter of every device's weight-holding tier: capacity (x) against bandwidth (y); a
    star where that tier is on the chip, a dot where it is off-chip memory."""
    fig, ax = _subplots(figsize=(9.5, 6.5))
    texts, xs, ys = [], [], []
    for d in devices:
        t = d.tier(tier_of(d) if tier_of else None)
        if not (t.capacity and t.bandwidth):
            continue
        x, y = t.capacity.si / 1e9, t.bandwidth.si / 1e12
        on_chip = t.placement == "on-chip"
        ax.scatter(x, y, s=120 if on_chip else 60, marker="*" if on_chip else "o", color=device_color(d.id),
                   edgecolor="black", linewidth=0.5, zorder=3)
        texts.append(ax.text(x, y, f"{d.id} ({t.name})", fontsize=SMALL - 1, zorder=4))
        xs.append(x)
        ys.append(y)
    ax.set_xscale("log")
    ax.set_yscale("log")
    if xs:
        ax.set_xlim(min(xs) / 3, max(xs) * 4)
        ax.set_ylim(min(ys) / 2, max(ys) * 2)
    _plain_log(ax.xaxis)
    _plain_log(ax.yaxis)
    ax.set_xlabel("capacity of the tier that holds the weights (GB, log scale)")
    ax.set_ylabel("bandwidth of that tier (TB/s, log scale)")
    ax.set_title(_wrap(title, fig))
    _legend_outside(ax, handles=[
        plt.Line2D([], [], marker="*", ls="none", color="0.4", ms=11, label="on-chip SRAM"),
        plt.Line2D([], [], marker="o", ls="none", color="0.4", ms=7, label="off-chip memory")])
    _label_points(ax, texts, xs, ys)
    return fig


def roofline(roofs: list[Roofs], tiers: dict, points=(), title="Roofline", imin=0.1, imax=1e4):
    """Log-log roofline of several devices. ``tiers`` maps device id -> tiers to draw;
    ``points`` are dicts with label, intensity (FLOP/B), and per-device attainable FLOP/s
    computed by the caller (keys = device ids)."""
    fig, ax = _subplots(figsize=(9, 5.5))
    x = np.logspace(np.log10(imin), np.log10(imax), 400)
    for r in roofs:
        color = device_color(r.device)
        for i, t in enumerate(tiers.get(r.device, list(r.bandwidth))):
            ax.plot(x, attainable(x, r.peak, r.bandwidth[t]) / 1e12, color=color,
                    ls=["-", "--", ":"][i % 3], lw=2, label=f"{r.device} {t} ({r.precision})")
            ridge = r.ridge(t)
            if imin <= ridge <= imax:
                ax.plot([ridge], [r.peak / 1e12], "o", color=color, ms=4)
    for p in points:
        for r in roofs:
            if r.device in p["attainable"]:
                ax.plot(p["intensity"], p["attainable"][r.device] / 1e12, marker="D", color=device_color(r.device),
                        ms=7, mec="black", ls="none")
        ax.axvline(p["intensity"], color="grey", lw=0.8, ls=":")
        ax.annotate(p["label"], (p["intensity"], 0), fontsize=SMALL - 1, xycoords=("data", "axes fraction"),
                    xytext=(3, 5), textcoords="offset points", rotation=90)
    ax.plot([], [], marker="D", color="0.5", mec="black", ls="none", label="a decode step (batch B)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log(ax.xaxis)
    _plain_log(ax.yaxis)
    ax.set_xlabel("arithmetic intensity (FLOP per byte, log scale)")
    ax.set_ylabel("attainable (TFLOP/s or TOP/s, log scale)")
    ax.set_title(_wrap(title, fig))
    _legend_outside(ax)
    return fig


# --------------------------------------------------------------------------- capacity (notebook 02)


def _gb(x):
    return np.asarray(x, float) / 1e9


def chips_by_device(df, title="Chips needed to hold the model"):
    """Bars per device (log scale, the device's colour): weights only, weights + KV cache
    (no granularity), the best layout, and the deployed count in whole units (lighter shades
    and hatches). ``df`` from :func:`lpulab.placement.compare_devices`."""
    cols = {"weights_only": "weights only", "fluid": "+ KV cache", "chips": "layout", "deployed": "deployed (whole units)"}
    long = df[["device", *cols]].melt(id_vars=["device"], var_name="count", value_name="n")
    long["count"] = long["count"].map(cols)
    long["n"] = long["n"].astype(float).replace([np.inf], np.nan)
    fig, ax = _subplots(figsize=(9, 1.0 * len(df) + 1.6))
    handles = _grouped_barh(ax, long.dropna(subset=["n"]), "device", "count", "n", device_color, fmt.count)
    ax.set_xlabel("chips (log scale)")
    ax.set_ylabel("device")
    ax.set_title(_wrap(title, fig))
    _legend_outside(ax, handles=handles, title="count")
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
    fig, ax = _subplots(figsize=(min(12, 6 + 0.25 * n), 3.6))
    sns.heatmap(mat, ax=ax, cmap="mako_r", vmin=0, vmax=1, annot=n <= 16, fmt=".2f",
                cbar_kws={"label": "fraction of the chip's capacity"},
                xticklabels=max(1, n // 24) if n > 24 else True)
    ax.set_xlabel("chip (stage-major: stage s holds chips s*tp .. s*tp+tp-1)")
    ax.set_ylabel("resident bytes")
    ax.set_title(_wrap(title, fig))
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
    g.figure.set_dpi(DPI)
    g.set_titles("{col_name}")
    for name, ax in g.axes_dict.items():
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: fmt.count(v)))
        ax.set_yscale("log")
        _plain_log(ax.yaxis)
        for label, v in (marks or {}).items() if mark_cols is None or name in mark_cols else ():
            ax.axhline(v, color="crimson", ls="--", lw=1)
            ax.annotate(label, (0.02, v), xycoords=("axes fraction", "data"), fontsize=SMALL - 1, color="crimson",
                        xytext=(0, 2), textcoords="offset points")
        ax.tick_params(axis="x", labelrotation=45)
    g.set_axis_labels(f"{x} (tokens per sequence, log scale)" if x == "context" else x, "chips (log scale)")
    for ax in g.axes.flat:  # every panel says what its axes are
        ax.set_xlabel(ax.get_xlabel() or (f"{x} (tokens per sequence, log scale)" if x == "context" else x))
        ax.set_ylabel(ax.get_ylabel() or "chips (log scale)")
    if title:
        g.figure.suptitle(_wrap(title, g.figure), y=1.02)
    return g.figure


def capacity_chain(df, title="From the back-of-envelope count to a deployment", device=None):
    """The chain of :func:`lpulab.placement.capacity_chain` as bars, one per step (in the
    colour of ``device`` when given)."""
    fig, ax = _subplots(figsize=(9, 0.5 * len(df) + 1.4))
    color = device_color(device) if device else sns.color_palette("deep")[0]
    y = np.arange(len(df))
    bars = ax.barh(y, df["chips"].to_numpy(float), color=color)
    ax.bar_label(bars, labels=[fmt.count(v) for v in df["chips"]], padding=3, fontsize=SMALL)
    ax.set_yticks(y, df["step"])
    ax.set_ylim(len(df) - 0.5, -0.5)
    ax.set_xlim(0, float(np.nanmax(df["chips"].to_numpy(float))) * 1.15 if len(df) else 1)
    ax.set_xlabel("chips")
    ax.set_ylabel("step")
    ax.set_title(_wrap(title, fig))
    return fig


def capacity_and_bandwidth(df, title="Capacity against bandwidth: per chip and per deployment"):
    """Three panels per device (the device's colour): memory per chip (GB), chips needed to
    hold the model, and memory bandwidth per chip and of the whole deployment (TB/s). ``df``
    from :func:`lpulab.placement.compare_devices`."""
    fig, axes = _subplots(1, 3, figsize=(13, 0.6 * len(df) + 2.4), sharey=True)
    d = df.assign(capacity_GB=_gb(df["capacity"]))
    _grouped_barh(axes[0], d, "device", None, "capacity_GB", device_color, lambda v: fmt.number(v))
    axes[0].set_xlabel("memory per chip (GB, log scale)")
    _grouped_barh(axes[1], d.replace([np.inf], np.nan).dropna(subset=["chips"]), "device", None, "chips",
                  device_color, fmt.count)
    axes[1].set_xlabel("chips to hold the model (log scale)")
    bw = d.melt(id_vars=["device"], value_vars=["bandwidth", "deployment_bandwidth"], var_name="scope", value_name="bw")
    bw["bw"] = bw["bw"] / 1e12
    bw["scope"] = bw["scope"].map({"bandwidth": "per chip", "deployment_bandwidth": "whole deployment"})
    handles = _grouped_barh(axes[2], bw, "device", "scope", "bw", device_color, lambda v: fmt.number(v))
    axes[2].set_xlabel("memory bandwidth (TB/s, log scale)")
    _legend_outside(axes[2], handles=handles, title="bandwidth")
    axes[0].set_ylabel("device")
    fig.suptitle(_wrap(title, fig))
    return fig


# --------------------------------------------------------------------------- speed (notebook 03)


def frontier(curves: dict, measured=None, title="Latency against throughput"):
    """Per-user tokens/s (x) against aggregate tokens/s (y) for each deployment in ``curves``
    (label -> DataFrame from :func:`lpulab.perf.operating_points`; a label that starts with a
    device id takes that device's colour); points that do not fit in memory are dropped;
    ``measured`` rows (columns label, per_user, aggregate) are overlaid."""
    fig, ax = _subplots(figsize=(9, 5.5))
    texts, xs, ys = [], [], []
    for label, df in curves.items():
        ok = df[df["fits"]]
        color = device_color(label)
        ax.plot(ok["per_user_tok_s"], ok["aggregate_tok_s"], marker="o", ms=3, lw=2, label=label, color=color)
        for r in ok.iloc[[0, len(ok) // 2, -1]].itertuples() if len(ok) > 2 else ok.itertuples():
            texts.append(ax.text(r.per_user_tok_s, r.aggregate_tok_s, fmt.count(r.concurrency), fontsize=SMALL - 1,
                                 color=color))
            xs.append(r.per_user_tok_s)
            ys.append(r.aggregate_tok_s)
    if measured is not None and len(measured):
        for i, r in enumerate(measured.itertuples()):
            ax.plot(r.per_user, r.aggregate, marker="*", ms=13, color="black", ls="none",
                    label="measured" if i == 0 else None)
            texts.append(ax.text(r.per_user, r.aggregate, _tex_safe(r.label), fontsize=SMALL - 1))
            xs.append(r.per_user)
            ys.append(r.aggregate)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log(ax.xaxis)
    _plain_log(ax.yaxis)
    ax.set_xlabel("per-user decode speed (tokens/s per stream, log scale)")
    ax.set_ylabel("aggregate output (tokens/s, whole deployment, log scale)")
    ax.set_title(_wrap(title + "  (numbers: streams in flight)", fig))
    _legend_outside(ax)
    _label_points(ax, texts, xs, ys)
    return fig


def ratio_curve(x, ratios: dict, threshold=None, xlabel="", ylabel="ratio (x)", title=""):
    """One or more ratio curves against ``x`` (log-log), with the claimed value as a line
    and the parity line at 1x."""
    fig, ax = _subplots(figsize=(9, 4.5))
    for (label, y), color in zip(ratios.items(), sns.color_palette("deep")):
        ax.plot(x, y, lw=2, marker="o", ms=3, label=label, color=color)
    if threshold is not None:
        ax.axhline(threshold, color="crimson", ls="--", lw=1.5, label=f"claimed {fmt.ratio(threshold)}")
    ax.axhline(1.0, color="grey", lw=1, ls=":", label="parity (1x)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log(ax.xaxis)
    _plain_log(ax.yaxis)
    ax.set_xlabel(xlabel or "x")
    ax.set_ylabel(ylabel + ("" if "log" in ylabel else " (log scale)"))
    ax.set_title(_wrap(title, fig))
    _legend_outside(ax)
    return fig


# --------------------------------------------------------------------------- cost (C3, C4)


def tornado(table, title="", xlabel="ratio (x)", claimed=None, log=False, labels=None, max_rows=12):
    """One-at-a-time sensitivity (the table of :func:`lpulab.cost.tornado`): for each input a
    bar from the metric at the input's low end to its high end, around the point value."""
    df = table[table["swing"] > 0].head(max_rows).iloc[::-1]
    fig, ax = _subplots(figsize=(9.5, 0.42 * len(df) + 1.8))
    y = np.arange(len(df))
    p = float(df["point"].iloc[0]) if len(df) else float(table["point"].iloc[0])
    lo_c, hi_c = sns.color_palette("deep")[0], sns.color_palette("deep")[3]
    for yi, r in zip(y, df.itertuples()):
        ax.barh(yi, r.at_low - p, left=p, color=lo_c, alpha=0.85)
        ax.barh(yi, r.at_high - p, left=p, color=hi_c, alpha=0.85)
    ax.axvline(p, color="black", lw=1)
    handles = [Patch(color=lo_c, label="input at its low end"), Patch(color=hi_c, label="input at its high end"),
               plt.Line2D([], [], color="black", lw=1, label=f"point estimate {fmt.ratio(p)}")]
    if claimed is not None:
        handles.append(ax.axvline(claimed, color="crimson", ls="--", lw=1.5, label=f"claimed {fmt.ratio(claimed)}"))
    names = [labels.get(n, n) if labels else n for n in df["input"]]
    lows = df["low_shown"] if "low_shown" in df else df["low"]
    highs = df["high_shown"] if "high_shown" in df else df["high"]
    unit = df["unit"] if "unit" in df else [""] * len(df)
    ax.set_yticks(y, [_tex_safe(f"{n}  [{_range(lo, u)} .. {_range(hi, u)}]")
                      for n, lo, hi, u in zip(names, lows, highs, unit)], fontsize=SMALL - 1)
    if log:
        ax.set_xscale("log")
        _plain_log(ax.xaxis)
    else:
        _plain_linear(ax.xaxis)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("input [its low .. high end]")
    ax.set_title(_wrap(title, fig))
    _legend_outside(ax, handles=handles)
    return fig


def _range(v, unit) -> str:
    """An end of an input's range, in its unit (``$6,000``, ``185 W``)."""
    if unit in (None, "", "count", "-"):
        return _short(v)
    try:
        return fmt.quantity(v, unit)
    except Exception:  # a unit pint does not read: the number and the unit as written
        return f"{_short(v)} {unit}"


def predicted_vs_measured(table, title="Predicted against measured"):
    """Scatter of a calibration table (columns predicted, measured, fitted, metric), log-log,
    with the 1:1 line and a +-25 % band."""
    fig, ax = _subplots(figsize=(8, 6))
    sns.scatterplot(data=table.assign(role=np.where(table["fitted"], "fitted", "checked")), x="measured",
                    y="predicted", hue="metric", style="role", s=80, ax=ax)
    lo = min(table["measured"].min(), table["predicted"].min()) / 2
    hi = max(table["measured"].max(), table["predicted"].max()) * 2
    xs = np.array([lo, hi])
    ax.plot(xs, xs, color="black", lw=1, label="predicted = measured")
    ax.fill_between(xs, xs * 0.75, xs * 1.25, color="grey", alpha=0.15, label="within 25 %")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log(ax.xaxis)
    _plain_log(ax.yaxis)
    ax.set_xlabel("measured (in the row's metric: tokens/s or s, log scale)")
    ax.set_ylabel("predicted (same unit, log scale)")
    ax.set_title(_wrap(title, fig))
    _legend_outside(ax)
    return fig


def distributions(samples, bands, claimed=None, titles=None, log=True, bins=60):
    """Monte Carlo distribution of each ratio: histogram, P5-P95 band shaded, P50 and the
    point estimate as lines, the claimed value dashed. ``samples`` maps metric -> draws;
    ``bands`` is :func:`lpulab.cost.bands` (p5, p50, p95, point) indexed by metric."""
    metrics = list(bands.index)
    fig, axes = _subplots(len(metrics), 1, figsize=(9.5, 2.5 * len(metrics) + 0.6), squeeze=False)
    for ax, m in zip(axes[:, 0], metrics):
        x = np.asarray(samples[m], float)
        x = x[np.isfinite(x) & (x > 0)] if log else x[np.isfinite(x)]
        edges = np.geomspace(x.min(), x.max(), bins) if log and len(x) and x.min() < x.max() else bins
        ax.hist(x, bins=edges, color=sns.color_palette("deep")[0], alpha=0.75)
        b = bands.loc[m]
        ax.axvspan(b["p5"], b["p95"], color="grey", alpha=0.18,
                   label=f"P5-P95 [{fmt.ratio(b['p5'])}, {fmt.ratio(b['p95'])}]")
        ax.axvline(b["p50"], color="black", lw=1.2, label=f"P50 {fmt.ratio(b['p50'])}")
        if "point" in b and np.isfinite(b["point"]):
            ax.axvline(b["point"], color="darkorange", lw=1.5, ls="-.", label=f"point estimate {fmt.ratio(b['point'])}")
        if claimed and m in claimed:
            ax.axvline(claimed[m], color="crimson", ls="--", lw=1.5, label=f"claimed {fmt.ratio(claimed[m])}")
        if log:
            ax.set_xscale("log")
            _plain_log(ax.xaxis)
        ax.set_title(_wrap((titles or {}).get(m, m), fig), fontsize=10)
        ax.set_yticks([])
        ax.set_ylabel("draws")
        ax.set_xlabel("ratio, LPU / GPU (x" + (", log scale)" if log else ")"))
        _legend_outside(ax)
    return fig


def cost_per_mtok(table, title="Cost per million output tokens", xlabel="USD per million output tokens (log scale)"):
    """Horizontal bars of $/Mtok per row (``label``, ``point``; optional ``p5``/``p95``
    whiskers; ``device`` colours a bar by its device, else ``platform`` by its kind)."""
    fig, ax = _subplots(figsize=(9.5, 0.55 * len(table) + 1.6))
    y = np.arange(len(table))[::-1]
    kinds = sorted(table["platform"].unique())
    palette = dict(zip(kinds, sns.color_palette("deep")))
    for yi, r in zip(y, table.itertuples()):
        color = device_color(r.device) if hasattr(r, "device") else palette[r.platform]
        ax.barh(yi, r.point, color=color, alpha=0.85)
        if hasattr(r, "p5") and np.isfinite(r.p5):
            ax.plot([r.p5, r.p95], [yi, yi], color="black", lw=1.2)
            ax.plot([r.p5, r.p95], [yi, yi], "|", color="black", ms=10)
        ax.annotate(_tex_safe(fmt.money(r.point)), (r.point, yi), xytext=(4, 3), textcoords="offset points",
                    fontsize=SMALL)
    ax.set_yticks(y, [_tex_safe(s) for s in table["label"]], fontsize=SMALL - 1)
    ax.set_xscale("log")
    _plain_log(ax.xaxis)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("deployment")
    ax.set_title(_wrap(title, fig))
    if "device" not in table.columns:
        _legend_outside(ax, handles=[Patch(color=palette[k], label=k) for k in kinds] +
                        [plt.Line2D([], [], color="black", marker="|", ms=10, label="P5-P95")])
    return fig


def break_even(panels, title=""):
    """Side-by-side break-even panels. Each panel is a dict: ``x``, ``xlabel``, ``curves``
    (list of dicts: ``label``, ``y``, optional ``low``/``high`` band, optional ``device``
    for its colour), ``refs`` (list of ``(x, label)`` vertical reference lines), ``root``
    (the break-even x, marked), optional ``logx``/``logy`` (default True), ``ylabel``."""
    fig, axes = _subplots(1, len(panels), figsize=(5.4 * len(panels), 5.2), squeeze=False)
    for ax, p in zip(axes[0], panels):
        for c, color in zip(p["curves"], sns.color_palette("deep")):
            color = device_color(c["device"]) if c.get("device") else color
            ax.plot(p["x"], c["y"], color=color, lw=2, label=_tex_safe(c["label"]))
            if "low" in c:
                ax.fill_between(p["x"], c["low"], c["high"], color=color, alpha=0.15)
        for k, (x, label) in enumerate(p.get("refs", [])):
            ax.axvline(x, color="grey", ls=":", lw=1)
            ax.annotate(_tex_safe(label), (x, 0.98 if k % 2 == 0 else 0.55), xycoords=("data", "axes fraction"),
                        rotation=90, va="top", ha="right", fontsize=SMALL - 1, color="dimgrey")
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
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False, fontsize=SMALL - 1)
    if title:
        fig.suptitle(_wrap(title, fig))
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
    fig, ax = _subplots(figsize=(9.5, 6))
    x = np.logspace(np.log10(lo), np.log10(hi), 400)
    tiers = sorted(r.bandwidth, key=lambda t: r.bandwidth[t], reverse=True)
    for t, color in zip(tiers, sns.color_palette("Greys_r", len(tiers) + 2)):
        ax.plot(x, attainable(x, r.peak, r.bandwidth[t]) / 1e9, color=color, lw=2,
                label=f"{t}: {fmt.si(r.bandwidth[t], 'B/s')}")
    ax.axhline(r.peak / 1e9, color="black", lw=0.8, ls=":")
    groups = list(dict.fromkeys(pts[hue])) if hue in pts else [None]
    texts, xs, ys = [], [], []
    for g, color in zip(groups, sns.color_palette("deep", max(len(groups), 1))):
        sub = pts if g is None else pts[pts[hue] == g]
        ax.scatter(sub["intensity"], sub["flops_per_s"] / 1e9, s=36, color=color, edgecolor="black", zorder=3,
                   label=f"measured: {g}" if g is not None else "measured")
        for row in sub.itertuples():
            texts.append(ax.text(row.intensity, row.flops_per_s / 1e9, _tex_safe(getattr(row, label)),
                                 fontsize=SMALL - 2, color=color))
            xs.append(row.intensity)
            ys.append(row.flops_per_s / 1e9)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log(ax.xaxis)
    _plain_log(ax.yaxis)
    ax.set_xlabel("arithmetic intensity (FLOP per byte, docs/counting.md, log scale)")
    ax.set_ylabel(f"GFLOP/s, log scale ({r.precision} peak {fmt.si(r.peak, 'FLOP/s')})")
    ax.set_title(_wrap(title, fig))
    _legend_outside(ax)
    _label_points(ax, texts, xs, ys)
    return fig


def measured_vs_assumed(table, value="measured", ref="assumed", label="part",
                        title="Bytes between chips per token: measured against assumed"):
    """Horizontal bars: for each part (row) the measured and the assumed figure side by side
    (e.g. :func:`lpulab.kernels.compare.transfers_vs_perf`)."""
    long = table[[label, value, ref]].melt(id_vars=[label], var_name="figure", value_name="bytes")
    long["bytes"] = long["bytes"].astype(float)
    fig, ax = _subplots(figsize=(9.5, 0.7 * len(table) + 1.6))
    pal = sns.color_palette("deep")
    handles = _grouped_barh(ax, long.dropna(subset=["bytes"]), label, "figure", "bytes", lambda _: pal[0],
                            lambda v: fmt.si(v, "B"), log=False)
    _plain_linear(ax.xaxis, "B")
    ax.set_xlabel("bytes per token (B)")
    ax.set_ylabel(label)
    ax.set_title(_wrap(title, fig))
    _legend_outside(ax, handles=handles)
    return fig


# --------------------------------------------------------------------------- the frontier (notebook 06)


def _get(c, k, default=None):
    return (c.get(k, default) if isinstance(c, dict) else getattr(c, k, default)) if c is not None else default


def frontier_costs(rows, measured=None, crossover=None, energy_crossover=None, title="", objectives=None):
    """Cost per million output tokens and energy per token (y, log) of each platform's
    cheapest configuration against the per-user speed target (x, log), one line per
    platform (its device's colour; dashed for the SRAM side), ``measured`` runs on top
    (stars; columns device, per_user, usd_per_mtok, joules_per_token), and each crossover
    as a vertical line with its interval shaded. ``rows``: :attr:`lpulab.frontier.Result.frontier`
    or the same records from a report's results.json; crossovers as objects or dicts."""
    import pandas as pd

    df = pd.DataFrame(list(rows) if not isinstance(rows, pd.DataFrame) else rows)
    objectives = list(objectives or ("usd_per_mtok", "joules_per_token"))
    labels = {"usd_per_mtok": "USD per million output tokens (log scale)",
              "joules_per_token": "joules per output token (log scale)"}
    fig, axes = _subplots(1, len(objectives), figsize=(6.2 * len(objectives) + 1.6, 5.0), squeeze=False)
    meas = None if measured is None else pd.DataFrame(list(measured) if not isinstance(measured, pd.DataFrame)
                                                      else measured)
    for ax, obj in zip(axes[0], objectives):
        d = df[(df["objective"] == obj) & df["feasible"].astype(bool)]
        for plat, g in d.groupby("platform", sort=False):
            side = g["side"].iloc[0]
            ax.plot(g["target_tok_s"], g[obj], drawstyle="steps-post", lw=2.2, color=device_color(g["device"].iloc[0]),
                    ls="--" if side == "sram" else "-", label=_tex_safe(f"{plat} ({'SRAM' if side == 'sram' else 'HBM'})"))
        if meas is not None and len(meas) and obj in meas:
            for i, (dev, g) in enumerate(meas.groupby("device")):
                ax.plot(g["per_user"], g[obj], ls="none", marker="*", ms=9, color=device_color(str(dev)), mec="black",
                        mew=0.5, alpha=0.85, label="measured runs" if i == 0 else None)
        x = crossover if obj == "usd_per_mtok" else energy_crossover
        v = _get(x, "value")
        if v is not None:
            lo, hi = _get(x, "low"), _get(x, "high")
            rng = _get(x, "speed_range") or ax.get_xlim()
            if _get(x, "draws"):
                ax.axvspan(lo if lo is not None else rng[0], hi if hi is not None else rng[1], color="crimson",
                           alpha=0.06, lw=0, label="crossover interval (Monte Carlo)")
            what = "cost" if obj == "usd_per_mtok" else "energy"
            ax.axvline(v, color="crimson", ls=":", lw=1.6, label=f"{what} crossover {_short(v)} tok/s")
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log(ax.xaxis)
        _plain_log(ax.yaxis)
        ax.set_xlabel("per-user speed target (tokens/s per user, log scale)")
        ax.set_ylabel(labels.get(obj, obj))
    handles: dict[str, Any] = {}
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    _legend_outside(axes[0][-1], handles=list(handles.values()), labels=list(handles))
    if title:
        fig.suptitle(_tex_safe(title))
    return fig


def odds_map(table, axis_label="", title="", crossover=None):
    """The probability that the cheapest SRAM deployment is cheaper than the cheapest GPU
    deployment: speed target (x, log) against a second axis (y), colour from 0 (the GPU side
    always cheaper) to 1 (the SRAM side always), the 50 % line drawn; blank where no platform
    of either side reaches the target. ``table``: rows target_tok_s, axis_value, p_sram_cheaper."""
    import pandas as pd

    df = pd.DataFrame(list(table) if not isinstance(table, pd.DataFrame) else table)
    xs = np.sort(df["target_tok_s"].unique())
    ys = list(dict.fromkeys(df["axis_value"]))
    numeric = all(isinstance(y, (int, float)) for y in ys)
    grid = df.pivot_table(index="axis_value", columns="target_tok_s", values="p_sram_cheaper", dropna=False)
    grid = grid.reindex(index=ys, columns=xs)
    z = grid.to_numpy(float)
    fig, ax = _subplots(figsize=(9.5, 4.8))

    def edges(v, log):
        v = np.asarray(v, float)
        if v.size == 1:
            return np.array([v[0] / 1.2, v[0] * 1.2]) if log else np.array([v[0] - 0.5, v[0] + 0.5])
        w = np.log(v) if log else v
        mid = (w[1:] + w[:-1]) / 2
        e = np.concatenate([[w[0] - (mid[0] - w[0])], mid, [w[-1] + (w[-1] - mid[-1])]])
        return np.exp(e) if log else e

    ylog = numeric and min(ys) > 0 and max(ys) / min(ys) > 4
    yv = np.asarray(ys, float) if numeric else np.arange(len(ys), dtype=float)
    mesh = ax.pcolormesh(edges(xs, True), edges(yv, ylog) if numeric else edges(yv, False),
                         np.ma.masked_invalid(z), cmap="RdBu_r", vmin=0, vmax=1, shading="flat")
    if np.isfinite(z).sum() > 3 and len(ys) > 1:
        X, Y = np.meshgrid(xs, yv)
        try:
            cs = ax.contour(X, Y, np.ma.masked_invalid(z), levels=[0.5], colors="black", linewidths=1.2)
            ax.clabel(cs, fmt={0.5: "50 %"}, fontsize=SMALL - 1)
        except (ValueError, TypeError):  # too few finite cells for a contour
            pass
    v = _get(crossover, "value")
    if v is not None:
        ax.axvline(v, color="black", ls=":", lw=1.2)
    ax.set_xscale("log")
    _plain_log(ax.xaxis)
    if numeric:
        if ylog:
            ax.set_yscale("log")
            _plain_log(ax.yaxis)
    else:
        ax.set_yticks(yv, [_tex_safe(str(y)) for y in ys])
    ax.set_xlabel("per-user speed target (tokens/s per user, log scale)")
    ax.set_ylabel(_tex_safe(axis_label))
    ax.set_title(_tex_safe(title or "Probability that the SRAM side is cheaper per token"))
    fig.colorbar(mesh, ax=ax, label="P(SRAM side cheaper)")
    return fig
