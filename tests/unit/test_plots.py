"""Every public figure function in lpulab.plots, called with small inputs: it returns a
matplotlib Figure whose axes all say what they show; labels next to points do not overlap;
legends sit outside the data; a device has one colour everywhere."""

from __future__ import annotations

import inspect
import itertools

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from lpulab import catalog, placement, plots, roofline

from ._tiny import tiny_device, tiny_model

#: public functions of lpulab.plots that are not figures
NOT_FIGURES = {"configure", "device_color", "device_palette"}


def _roofs():
    return [roofline.Roofs("groq-lpu-v1", "int8", 750e12, {"sram": 80e12}),
            roofline.Roofs("nvidia-h100-sxm", "int8", 1979e12, {"hbm": 3.35e12})]


def _placement():
    m, d = tiny_model(L=2), tiny_device(400)
    return placement.place(m, d, batch=1, context=8)


def _compare():
    devs = [catalog.load_device("groq-lpu-v1"), catalog.load_device("nvidia-h100-sxm")]
    return placement.compare_devices(catalog.load_model("llama-2-7b"), devs, context=512)


def _curve(scale):
    c = np.array([1, 4, 16, 64])
    return pd.DataFrame({"concurrency": c, "per_user_tok_s": scale / np.sqrt(c), "aggregate_tok_s": scale * np.sqrt(c),
                         "fits": [True, True, True, False]})


def _tornado():
    return pd.DataFrame({"input": ["card price", "card power"], "low": [6000.0, 185.0], "high": [20000.0, 375.0],
                         "unit": ["USD", "W"], "point": [39.6, 39.6], "at_low": [21.4, 38.0], "at_high": [41.0, 43.0],
                         "swing": [19.6, 5.0]})


def _bands():
    return pd.DataFrame({"p5": [21.0, 16.8], "p50": [38.0, 22.0], "p95": [47.5, 32.2], "point": [39.6, 22.3]},
                        index=["capex_ratio", "opex_ratio"])


def _frontier_rows():
    t = np.geomspace(10, 400, 12)
    rows = []
    for plat, dev, side, base, top in (("groq-lpu-v1 int8", "groq-lpu-v1", "sram", 1.2, 250),
                                       ("nvidia-h100-sxm fp8", "nvidia-h100-sxm", "hbm", 0.5, 180)):
        for obj, scale in (("usd_per_mtok", 1.0), ("joules_per_token", 2.0)):
            for x in t:
                rows.append({"objective": obj, "platform": plat, "device": dev, "side": side, "target_tok_s": x,
                             "feasible": bool(x <= top), obj: scale * base * (1 + x / top) if x <= top else None})
    return pd.DataFrame(rows)


def _odds_rows():
    t = np.geomspace(10, 400, 8)
    return pd.DataFrame([{"target_tok_s": x, "axis_value": v, "p_sram_cheaper": min(1.0, x / 400 * v / 0.2)}
                         for x in t for v in (0.05, 0.1, 0.2)])


CASES = {
    "frontier_costs": lambda: plots.frontier_costs(
        _frontier_rows(), pd.DataFrame([{"device": "nvidia-h100-sxm", "per_user": 7.0, "usd_per_mtok": 0.2,
                                         "joules_per_token": 0.5}]),
        {"value": 150.0, "low": 90.0, "high": 240.0, "draws": 100, "speed_range": [10, 400]},
        {"value": 120.0, "low": None, "high": None, "draws": 100, "speed_range": [10, 400]}),
    "odds_map": lambda: plots.odds_map(_odds_rows(), axis_label="electricity (USD/kWh)", crossover={"value": 150.0}),
    "ratio_bars": lambda: plots.ratio_bars(pd.DataFrame({
        "gpu": ["nvidia-h100-sxm", "nvidia-h100-sxm", "nvidia-b200"], "tier": ["hbm", "l2", "hbm"],
        "bandwidth_ratio": [23.9, 2.4, 10.0]}), threshold=20, title="t", xlabel="bandwidth ratio (x, log scale)"),
    "capacity_bandwidth": lambda: plots.capacity_bandwidth(list(catalog.devices().values())),
    "roofline": lambda: plots.roofline(_roofs(), {"groq-lpu-v1": ["sram"], "nvidia-h100-sxm": ["hbm"]},
                                       [{"label": "B=1", "intensity": 2.0,
                                         "attainable": {"groq-lpu-v1": 160e12, "nvidia-h100-sxm": 6.7e12}}]),
    "chips_by_device": lambda: plots.chips_by_device(_compare()),
    "residency_heatmap": lambda: plots.residency_heatmap(_placement().chip_bytes()),
    "chips_sweep": lambda: plots.chips_sweep(
        placement.sweep(tiny_model(L=2), [tiny_device(400)], [8, 16, 32], [1, 2]), value="chips",
        marks={"a mark": 10}),
    "capacity_chain": lambda: plots.capacity_chain(pd.DataFrame({"step": ["70 GB / 230 MB", "exact"],
                                                                 "chips": [305.0, 290.0]}), device="groq-lpu-v1"),
    "capacity_and_bandwidth": lambda: plots.capacity_and_bandwidth(_compare()),
    "frontier": lambda: plots.frontier({"groq-lpu-v1 x576 (int8)": _curve(300.0), "nvidia-h100-sxm x8 (fp8)": _curve(60.0)},
                                       pd.DataFrame([{"label": "MLPerf", "per_user": 7.3, "aggregate": 20556.0}])),
    "ratio_curve": lambda: plots.ratio_curve(np.array([1, 4, 16]), {"per user": np.array([5.0, 6.0, 9.0])}, threshold=10,
                                             xlabel="GPU streams in flight"),
    "tornado": lambda: plots.tornado(_tornado(), claimed=38.0, xlabel="capex ratio (x)"),
    "predicted_vs_measured": lambda: plots.predicted_vs_measured(pd.DataFrame({
        "predicted": [290.0, 30.0, 0.5], "measured": [300.0, 33.0, 0.4], "fitted": [True, False, False],
        "metric": ["per_user_tok_s", "per_user_tok_s", "ttft_s"]})),
    "distributions": lambda: plots.distributions(
        {"capex_ratio": np.random.default_rng(0).uniform(20, 48, 500),
         "opex_ratio": np.random.default_rng(1).uniform(16, 33, 500)}, _bands(), claimed={"capex_ratio": 38.0}),
    "cost_per_mtok": lambda: plots.cost_per_mtok(pd.DataFrame({
        "label": ["LPU", "GPU"], "platform": ["LPU", "GPU"], "point": [1.27, 0.42], "p5": [0.9, 0.3], "p95": [2.0, 0.6]})),
    "break_even": lambda: plots.break_even([{
        "x": np.geomspace(100, 40000, 20), "xlabel": "LPU card price (USD)", "root": 5000.0,
        "curves": [{"label": "LPU", "y": np.geomspace(0.1, 10, 20)}, {"label": "GPU", "y": np.full(20, 1.0)}],
        "refs": [(500.0, "build cost < $500"), (20000.0, "$20k list")]}]),
    "measured_roofline": lambda: plots.measured_roofline(
        roofline.Roofs("host", "fp32", 200e9, {"l1": 400e9, "dram": 20e9}),
        pd.DataFrame({"op": ["q_proj", "k_proj", "rmsnorm", "lm_head"], "phase": ["decode", "decode", "decode", "prefill"],
                      "intensity": [0.5, 0.5, 0.25, 8.0], "flops_per_s": [9e9, 8.5e9, 1e9, 90e9]})),
    "measured_vs_assumed": lambda: plots.measured_vs_assumed(pd.DataFrame({
        "part": ["layer all-reduces", "pipeline hand-overs"], "measured": [16384.0, 2048.0], "assumed": [16384.0, 0.0]})),
}


def public_functions():
    return sorted(name for name, f in inspect.getmembers(plots, inspect.isfunction)
                  if not name.startswith("_") and f.__module__ == plots.__name__)


def test_every_public_figure_function_has_a_case():
    figures = set(public_functions()) - NOT_FIGURES
    assert figures == set(CASES), (sorted(figures - set(CASES)), sorted(set(CASES) - figures))


def _data_axes(fig):
    """The axes that show data (not colorbars)."""
    cbars = {a for a in fig.axes if a.get_label() == "<colorbar>"}
    return [a for a in fig.axes if a not in cbars and a.get_visible()]


@pytest.mark.parametrize("name", sorted(CASES))
def test_figure_function_returns_a_labelled_figure(name):
    fig = CASES[name]()
    try:
        assert isinstance(fig, Figure), type(fig)
        axes = _data_axes(fig)
        assert axes
        for ax in axes:
            assert ax.get_xlabel().strip(), f"{name}: an axes without an x label"
            shared = ax.get_shared_y_axes().get_siblings(ax)
            assert any(a.get_ylabel().strip() for a in shared), f"{name}: an axes without a y label"
            for t in ax.get_xticklabels() + ax.get_yticklabels():  # never 1e+04 on a tick
                assert "e+" not in t.get_text() and "e-" not in t.get_text(), (name, t.get_text())
        fig.canvas.draw()
    finally:
        matplotlib.pyplot.close(fig)


def _overlaps(a, b, pad=0.0) -> bool:
    return not (a.x1 <= b.x0 + pad or b.x1 <= a.x0 + pad or a.y1 <= b.y0 + pad or b.y1 <= a.y0 + pad)


def test_point_labels_do_not_overlap_in_the_catalog_scatter():
    """The capacity-bandwidth scatter of every shipped device (01): no two labels overlap,
    and no label covers the legend."""
    fig = plots.capacity_bandwidth(list(catalog.devices().values()))
    try:
        fig.canvas.draw()
        r = fig.canvas.get_renderer()
        ax = fig.axes[0]
        texts = [t for t in ax.texts if t.get_text()]
        assert len(texts) == len(catalog.device_ids())
        boxes = [t.get_window_extent(r) for t in texts]
        clashes = [(texts[i].get_text(), texts[j].get_text())
                   for i, j in itertools.combinations(range(len(boxes)), 2) if _overlaps(boxes[i], boxes[j])]
        assert clashes == []
        legend = ax.get_legend().get_window_extent(r)
        assert not _overlaps(legend, ax.get_window_extent(r), pad=1.0), "the legend sits on the data"
    finally:
        matplotlib.pyplot.close(fig)


@pytest.mark.parametrize("name", ["ratio_bars", "roofline", "frontier", "ratio_curve", "tornado",
                                  "predicted_vs_measured", "measured_roofline", "chips_by_device"])
def test_legend_is_outside_the_data(name):
    fig = CASES[name]()
    try:
        fig.canvas.draw()
        r = fig.canvas.get_renderer()
        for ax in _data_axes(fig):
            if ax.get_legend() is not None:
                assert not _overlaps(ax.get_legend().get_window_extent(r), ax.get_window_extent(r), pad=1.0), name
    finally:
        matplotlib.pyplot.close(fig)


def test_one_colour_per_device_everywhere():
    ids = catalog.device_ids()
    colours = [plots.device_color(d) for d in ids]
    assert len(set(colours)) == len(ids)                      # shipped devices are told apart
    assert plots.device_color("nvidia-h100-sxm") == plots.device_color("nvidia-h100-sxm x8 (fp8)")
    user = plots.device_color("my-wafer-44gb")                # a device not shipped: stable, not grey
    assert user == plots.device_color("my-wafer-44gb") and user not in colours
    # the same colour in two different figures
    fig1 = CASES["roofline"]()
    fig2 = CASES["capacity_bandwidth"]()
    try:
        h100 = np.array(plots.device_color("nvidia-h100-sxm"))
        line = next(ln for ln in fig1.axes[0].get_lines() if ln.get_label().startswith("nvidia-h100-sxm"))
        assert np.allclose(matplotlib.colors.to_rgb(line.get_color()), h100)
        dots = [c for c in fig2.axes[0].collections if len(c.get_offsets())]
        assert any(np.allclose(c.get_facecolor()[0][:3], h100) for c in dots)
    finally:
        matplotlib.pyplot.close(fig1)
        matplotlib.pyplot.close(fig2)


def test_resolution_is_set_in_one_place():
    fig = CASES["ratio_curve"]()
    try:
        assert fig.dpi == plots.DPI
        assert matplotlib.rcParams["savefig.dpi"] == 2 * plots.DPI
        w, _ = fig.get_size_inches() * fig.dpi
        assert 600 <= w <= 1280  # fits a laptop window and the report's column at 1x
    finally:
        matplotlib.pyplot.close(fig)


def test_a_long_title_wraps_instead_of_widening_the_figure():
    """A title built from a long device or model name wraps to the figure's width."""
    long_name = "A very long user-supplied device name " * 12
    fig = plots.ratio_curve(np.array([1, 4, 16]), {"per user": np.array([5.0, 6.0, 9.0])}, xlabel="streams",
                            title=long_name)
    try:
        fig.canvas.draw()
        tight = fig.get_tightbbox(fig.canvas.get_renderer())
        assert tight.width <= fig.get_figwidth() * 1.1, (tight.width, fig.get_figwidth())
        assert fig.axes[0].get_title().count("\n") >= 3
    finally:
        matplotlib.pyplot.close(fig)
