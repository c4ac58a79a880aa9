"""The frontier, live: ipywidgets controls over :mod:`lpulab.frontier` for
``notebooks/explore.ipynb``.

The expensive part (every configuration of every priced platform for a model, timed by the
calibrated serving model, sorted into one :class:`~lpulab.frontier.Ladder` per platform) is
built once per model and kept; a change of prices, power, electricity, utilisation, speed
target or platforms only rescales those curves (:func:`lpulab.frontier.price_factors`) and
redraws. The numbers are the same as notebook 06's at its point values (calibrated knobs,
price sheets at their values); notebook 06 adds the intervals and the odds.
"""

from __future__ import annotations

import io
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from . import catalog, frontier, speed, units

if TYPE_CHECKING:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.lines import Line2D

#: The models the explorer offers (those the serving model times today).
MODELS = ("llama-3.1-8b", "mixtral-8x7b", "llama-2-70b", "llama-3.1-70b", "llama-3.3-70b", "llama-3.1-405b", "deepseek-v3")


@dataclass(frozen=True)
class Curves:
    """One model's configurations reduced to each platform's cheapest units per token/s at
    every speed of a fine grid (point knobs): what a redraw rescales."""

    model: str
    platforms: tuple[frontier.Platform, ...]
    grid: np.ndarray                 # (G,) per-user speeds, tokens/s per user
    units_per_tps: np.ndarray        # (platforms, G), inf where out of reach
    skipped: tuple = ()


def curves(model: str, plats: Sequence[frontier.Platform], cal, prompt: int = 550, output: int = 150,
           grid=None, layout_kw: Mapping | None = None) -> Curves:
    """Build ``model``'s :class:`Curves` on ``plats`` (the slow step, seconds)."""
    cands = frontier.candidates(model, plats, prompt, output, **dict(layout_kw or {}))
    pts = cands.points(frontier.point_knobs(cal))
    g = np.geomspace(1.0, 3000.0, 240) if grid is None else np.asarray(grid, float)
    a = np.stack([frontier.ladder(pts, i).query(0, g)[0] for i in range(len(cands.platforms))])
    return Curves(cands.model, tuple(cands.platforms), g, a, tuple(cands.skipped))


def _scaled(inputs: Mapping, plats, sram_price: float, gpu_price: float, sram_power: float, gpu_power: float,
            electricity: float | None, utilisation: float) -> dict:
    v = frontier.cost.point(inputs)
    for p in plats:
        f = sram_price if p.side == "sram" else gpu_price
        w = sram_power if p.side == "sram" else gpu_power
        for k in ("unit_price", "host_price_per_unit", "network_price_per_unit"):
            v[f"{p.sheet}.{k}"] = float(frontier.cost.point(inputs)[f"{p.sheet}.{k}"]) * f
        for k in ("unit_power", "host_power_per_unit"):
            v[f"{p.sheet}.{k}"] = float(frontier.cost.point(inputs)[f"{p.sheet}.{k}"]) * w
    if electricity is not None:
        v["site.energy_price"] = units.to_si(float(electricity), "USD/kWh")
    v["site.utilisation"] = float(utilisation)
    return v


def evaluate(c: Curves, selected: Sequence[str], inputs: Mapping, *, sram_price: float = 1.0, gpu_price: float = 1.0,
             sram_power: float = 1.0, gpu_power: float = 1.0, electricity: float | None = None,
             utilisation: float = 1.0, target: float = 100.0) -> dict:
    """The numbers of one redraw: each selected platform's cost and energy per token on the
    grid (``curves``), the crossovers (point), and each platform's cost at ``target``. Prices and power
    are factors on every price-sheet value of a side; ``electricity`` in USD/kWh (None: the
    site's)."""
    idx = [i for i, p in enumerate(c.platforms) if p.label in set(selected)]
    plats = [c.platforms[i] for i in idx]
    vals = _scaled(inputs, plats, sram_price, gpu_price, sram_power, gpu_power, electricity, utilisation)
    B, E = frontier.price_factors(plats, vals) if plats else (np.zeros(0), np.zeros(0))
    a = c.units_per_tps[idx]
    usd, j = a * np.reshape(B, (-1, 1)) * 1e6, a * np.reshape(E, (-1, 1))
    sides = np.array([p.side for p in plats])
    cross: dict[str, dict | None] = {}
    for name, y in (("usd_per_mtok", usd), ("joules_per_token", j)):
        if {"sram", "hbm"} <= set(sides):
            s_, g_ = frontier.side_minimum(y, sides, "sram"), frontier.side_minimum(y, sides, "hbm")
            i = int(frontier.crossover_index(s_, g_))
            cross[name] = {"value": float(c.grid[i]) if 0 < i < c.grid.size else None,
                           "status": frontier._status(i, c.grid.size),
                           "windows": frontier.windows(s_, g_, c.grid),
                           "speed_range": [float(c.grid[0]), float(c.grid[-1])]}
        else:
            cross[name] = None
    at = int(np.searchsorted(c.grid, target))
    at = min(at, c.grid.size - 1)
    at_target = {p.label: {"usd_per_mtok": float(usd[k, at]), "joules_per_token": float(j[k, at])}
                 for k, p in enumerate(plats)}
    per = {p.label: {"usd_per_mtok": usd[k], "joules_per_token": j[k]} for k, p in enumerate(plats)}
    return {"curves": per, "crossover": cross, "target": float(c.grid[at]), "at_target": at_target}


class Figure:
    """The explorer's figure, built once and updated in place (lines moved, not redrawn
    from scratch): cost and energy per token against the per-user speed target, one line
    per platform (dashed: SRAM side), the crossovers and the target marked."""

    OBJECTIVES = ("usd_per_mtok", "joules_per_token")
    YLABELS = ("USD per million output tokens", "joules per output token")

    def __init__(self, grid: np.ndarray, dpi: int = 72):
        from matplotlib import ticker
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure as MplFigure

        from .plots import _plain_log

        self.fig = MplFigure(figsize=(11.5, 4.4), dpi=dpi)
        FigureCanvasAgg(self.fig)
        self.axes = self.fig.subplots(1, 2)
        self.fig.subplots_adjust(left=0.07, right=0.77, bottom=0.13, top=0.9, wspace=0.3)
        self.lines: dict[tuple[str, int], Line2D] = {}
        self.marks = []
        for ax, label in zip(self.axes, self.YLABELS):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlim(float(grid[0]), float(grid[-1]))
            _plain_log(ax.xaxis)
            _plain_log(ax.yaxis)
            ax.xaxis.set_minor_locator(ticker.NullLocator())
            ax.yaxis.set_minor_locator(ticker.NullLocator())
            ax.set_xlabel("per-user speed target (tokens/s per user)")
            ax.set_ylabel(label + " (log)")
            ax.grid(True, alpha=0.4)
            self.marks.append({"cross": ax.axvline(1.0, color="crimson", ls=":", lw=1.6, visible=False, animated=True),
                               "target": ax.axvline(1.0, color="black", lw=1, alpha=0.6, animated=True)})
        self.title = self.fig.suptitle("")
        self._legend_key: tuple[tuple[str, ...], str] | None = None
        self._bg: Any = None

    def update(self, model: str, c: Curves, out: dict) -> bytes:
        """Move the lines to ``out`` (from :func:`evaluate`) and return the PNG. The axes,
        ticks, labels and legend are drawn only when they change (the y range leaves the
        view or shrinks a lot, the platforms shown change); otherwise the lines are drawn
        over a kept background (blitting)."""
        from PIL import Image

        from .plots import device_color

        shown, full = set(), self._bg is None
        for j, (ax, obj) in enumerate(zip(self.axes, self.OBJECTIVES)):
            for p in c.platforms:
                key = (p.label, j)
                y = out["curves"].get(p.label, {}).get(obj)
                line = self.lines.get(key)
                if line is None:
                    line, = ax.plot(c.grid, np.full(c.grid.size, np.nan), drawstyle="steps-post", lw=2,
                                    color=device_color(p.device.id), ls="--" if p.side == "sram" else "-",
                                    label=f"{p.label} ({'SRAM' if p.side == 'sram' else 'HBM'})", animated=True)
                    self.lines[key] = line
                    full = True
                if y is None or not np.isfinite(y).any():
                    line.set_visible(False)
                    continue
                line.set_ydata(np.where(np.isfinite(y), y, np.nan))
                line.set_visible(True)
                shown.add(p.label)
            x = (out["crossover"] or {}).get(obj) if out["crossover"] else None
            m = self.marks[j]
            m["cross"].set_visible(bool(x and x["value"]))
            if x and x["value"]:
                m["cross"].set_xdata([x["value"], x["value"]])
            m["target"].set_xdata([out["target"], out["target"]])
            ys = [ln.get_ydata() for (lab, jj), ln in self.lines.items() if jj == j and ln.get_visible()]
            vals = np.concatenate([np.asarray(v, float) for v in ys]) if ys else np.array([])
            vals = vals[np.isfinite(vals) & (vals > 0)]
            if vals.size:
                lo, hi = ax.get_ylim()
                need = (vals.min() / 1.2, vals.max() * 1.2)
                if need[0] < lo or need[1] > hi or (hi / lo) > 30 * (need[1] / need[0]) or self._bg is None:
                    ax.set_ylim(vals.min() / 2.5, vals.max() * 2.5)   # room to move before the axes change
                    full = True
        legend_key = (tuple(sorted(shown)), model)
        if legend_key != self._legend_key:
            handles = [ln for (lab, jj), ln in self.lines.items() if jj == 1 and lab in shown]
            self.axes[1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False,
                                fontsize=8)
            self.title.set_text(f"{model}: each platform's cheapest configuration (dotted: crossover; grey: target)")
            self._legend_key = legend_key
            full = True
        canvas = cast("FigureCanvasAgg", self.fig.canvas)
        if full:
            canvas.draw()                      # everything but the animated lines and marks
            self._bg = canvas.copy_from_bbox(self.fig.bbox)
        else:
            canvas.restore_region(self._bg)
        for j, ax in enumerate(self.axes):
            for (_lab, jj), ln in self.lines.items():
                if jj == j and ln.get_visible():
                    ax.draw_artist(ln)
            for a in self.marks[j].values():
                if a.get_visible():
                    ax.draw_artist(a)
        buf = io.BytesIO()
        Image.fromarray(np.asarray(canvas.buffer_rgba())).save(buf, format="png", compress_level=1)
        return buf.getvalue()


def summary_html(model: str, out: dict) -> str:
    """The crossover and each platform's cost at the target, as HTML."""
    import html

    from .report import fmt

    x = out["crossover"].get("usd_per_mtok") if out["crossover"] else None
    e = out["crossover"].get("joules_per_token") if out["crossover"] else None

    def said(c, what):
        if c is None:
            return f"no {what} crossover: pick platforms of both sides"
        spans = " and ".join(f"{fmt.number(a)} to {fmt.number(b)}" for a, b in c["windows"])
        if c["value"] is not None:
            return (f"the SRAM side becomes {what} at <b>{fmt.number(c['value'])} tok/s per user</b> (it is from "
                    f"{spans} tok/s per user)")
        if c["status"] == "sram cheaper throughout":
            return f"the SRAM side is {what} from the slowest speed ({spans} tok/s per user)"
        return f"the SRAM side is never {what}"

    rows = "".join(f"<tr><td>{html.escape(p)}</td><td>{fmt.number(v['usd_per_mtok'])}</td>"
                   f"<td>{fmt.number(v['joules_per_token'])}</td></tr>" for p, v in out["at_target"].items())
    return (f"<div class='lpulab-explore'><p>{html.escape(model)}: {said(x, 'cheaper per token')}; "
            f"{said(e, 'lower in energy per token')}.</p><p>At {fmt.number(out['target'])} tok/s per user "
            "(n/a: out of reach):</p><table><thead><tr><th>platform</th><th>USD per Mtok</th><th>J per token</th>"
            f"</tr></thead><tbody>{rows}</tbody></table></div>")


class Explorer:
    """The widgets: model, platforms, price and power factors per side, electricity,
    utilisation, speed target; the figure and a summary redraw on every change."""

    def __init__(self, model: str = "llama-2-70b", devices: Sequence[str] | None = None,
                 selected: Sequence[str] | None = None, models: Sequence[str] = MODELS, site: str = "us-2023",
                 prompt: int = 550, output: int = 150, layout_kw: Mapping | None = None):
        import ipywidgets as w

        if model not in models:
            raise frontier.FrontierError(f"model {model!r} is not among the models offered ({', '.join(models)})")
        self.cal, _, _ = speed.calibrate()
        self.plats, self.skipped = frontier.platforms(devices)
        self.inputs = frontier.price_inputs(self.plats, site=site)
        self.site_price = float(units.from_si(frontier.cost.point(self.inputs)["site.energy_price"], "USD/kWh"))
        self.prompt, self.output, self.layout_kw = int(prompt), int(output), dict(layout_kw or {})
        self._curves: dict[str, Curves] = {}
        labels = [p.label for p in self.plats]
        chosen = list(selected) if selected else labels
        bad = [s for s in chosen if s not in labels]
        if bad:
            raise frontier.FrontierError(f"unknown platform(s) {', '.join(bad)}; platforms: {', '.join(labels)}")
        style = {"description_width": "150px"}
        lay = w.Layout(width="460px")
        self.controls = {
            "model": w.Dropdown(options=list(models), value=model, description="model", style=style, layout=lay),
            "platforms": w.SelectMultiple(options=labels, value=tuple(chosen), rows=min(len(labels), 9),
                                          description="platforms", style=style, layout=lay),
            "sram_price": w.FloatLogSlider(value=1.0, base=10, min=-1, max=1, step=0.02,
                                           description="SRAM price x", style=style, layout=lay),
            "gpu_price": w.FloatLogSlider(value=1.0, base=10, min=-1, max=1, step=0.02, description="GPU price x",
                                          style=style, layout=lay),
            "sram_power": w.FloatSlider(value=1.0, min=0.25, max=3.0, step=0.05, description="SRAM power x",
                                        style=style, layout=lay),
            "gpu_power": w.FloatSlider(value=1.0, min=0.25, max=3.0, step=0.05, description="GPU power x",
                                       style=style, layout=lay),
            "electricity": w.FloatSlider(value=round(self.site_price, 4), min=0.01, max=0.5, step=0.005,
                                         description="USD per kWh", style=style, layout=lay, readout_format=".3f"),
            "utilisation": w.FloatSlider(value=1.0, min=0.05, max=1.0, step=0.05, description="utilisation",
                                         style=style, layout=lay),
            "target": w.FloatLogSlider(value=100.0, base=10, min=0, max=3.4, step=0.01,
                                       description="tok/s per user", style=style, layout=lay),
        }
        self.figure = w.Output()
        self._figure: Figure | None = None
        self.summary = w.HTML()
        self.status = w.HTML()
        self.redraws = 0
        self.last_redraw_s = float("nan")
        for c in self.controls.values():
            c.observe(self._changed, names="value")
        self.widget = w.HBox([w.VBox(list(self.controls.values()) + [self.status]),
                              w.VBox([self.figure, self.summary])])
        self.redraw()

    def curves(self, model: str) -> Curves:
        """``model``'s curves, built on first use and kept."""
        if model not in self._curves:
            self._curves[model] = curves(model, self.plats, self.cal, self.prompt, self.output,
                                         layout_kw=self.layout_kw)
        return self._curves[model]

    def values(self) -> dict:
        return {k: c.value for k, c in self.controls.items()}

    def compute(self) -> dict:
        v = self.values()
        c = self.curves(v["model"])
        return evaluate(c, v["platforms"], self.inputs, sram_price=v["sram_price"], gpu_price=v["gpu_price"],
                        sram_power=v["sram_power"], gpu_power=v["gpu_power"], electricity=v["electricity"],
                        utilisation=v["utilisation"], target=v["target"])

    def redraw(self) -> dict:
        """Recompute and redraw (what every control change calls)."""
        from IPython.display import Image, clear_output, display

        t0 = time.perf_counter()
        v = self.values()
        out = self.compute()
        c = self.curves(v["model"])
        if self._figure is None:
            self._figure = Figure(c.grid)
        png = self._figure.update(v["model"], c, out)
        with self.figure:
            clear_output(wait=True)
            display(Image(data=png, format="png"))
        self.summary.value = summary_html(v["model"], out)
        self.redraws += 1
        self.last_redraw_s = time.perf_counter() - t0
        left = [p for p, _ in self.skipped] + [p for p, _ in self.curves(v["model"]).skipped]
        self.status.value = (f"<small>redraw {self.redraws}: {self.last_redraw_s * 1000:.0f} ms"
                             + (f"; left out: {', '.join(left)}" if left else "") + "</small>")
        return out

    def _changed(self, change) -> None:
        self.redraw()

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


def priced_models() -> list[str]:
    """The offered models that are in the catalog."""
    known = set(catalog.model_ids())
    return [m for m in MODELS if m in known]
