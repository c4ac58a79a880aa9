"""The frontier search: a hand case with a closed-form crossover, the price factors against
lpulab.cost, the layout rules, every returned configuration fits and meets its target
(property test, checked against brute force), a faster target never costs less, the
probability map's seeds, and bad input refused."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lpulab import catalog, cost, speed
from lpulab import frontier as F

# --------------------------------------------------------------------------- a hand case


_CONC = np.arange(1, 100001, dtype=float)


def _hand_points(platform_specs, conc=_CONC):
    """Points of platforms whose step time is tau0 + c tau1 at concurrency c (per-user speed
    1/(tau0 + c tau1), aggregate c times that), each bought as ``units``."""
    plat, pu, agg, units = [], [], [], []
    for i, (tau0, tau1, n) in enumerate(platform_specs):
        tau = tau0 + conc * tau1
        plat.append(np.full(conc.shape, i))
        pu.append(1.0 / tau)
        agg.append(conc / tau)
        units.append(np.full(conc.shape, float(n)))
    P = sum(len(x) for x in plat)
    return F.Points(np.concatenate(plat), np.arange(P), np.tile(conc, len(platform_specs)), np.concatenate(units),
                    np.ones(P, bool), np.concatenate(pu)[None], np.concatenate(agg)[None], np.zeros((1, P)))


def test_two_platforms_cross_where_the_closed_form_says():
    # cost per token of a platform at target s, using the most streams that still meet it:
    #   N B (tau0 / c + tau1) with c = (1/s - tau0) / tau1   ->   N B tau1 / (1 - s tau0)
    # so the SRAM-like platform (s0, s1, price h) and the GPU-like one (g0, g1, price g) cost
    # the same at s* = (h s1 - g g1) / (h s1 g0 - g g1 s0)
    g0, g1, g = 1 / 100, 1e-6, 1.0          # tops out at 100 tok/s per user, cheap per stream
    s0, s1, h = 1 / 400, 1e-5, 1.0          # tops out at 400 tok/s per user, ten times dearer per stream
    exact = (h * s1 - g * g1) / (h * s1 * g0 - g * g1 * s0)
    assert 90 < exact < 95                  # 92.3 tok/s per user, below the GPU's top speed
    pts = _hand_points([(s0, s1, h), (g0, g1, g)])
    grid = np.geomspace(10, 1000, 2000)
    sram = F.ladder(pts, 0).query(0, grid)[0]
    gpu = F.ladder(pts, 1).query(0, grid)[0]
    # each curve is the closed form, up to whole streams (hundreds of them below 95 tok/s)
    ok = grid <= 95
    np.testing.assert_allclose(gpu[ok], g * g1 / (1 - grid[ok] * g0), rtol=5e-3)
    np.testing.assert_allclose(sram[ok], h * s1 / (1 - grid[ok] * s0), rtol=5e-3)
    assert not np.isfinite(gpu[grid > 100]).any() and np.isfinite(sram[grid < 398]).all()
    i = int(F.crossover_index(sram, gpu))
    assert 0 < i < grid.size
    assert grid[i - 1] < exact * 1.005 and grid[i] > exact * 0.995   # found within the grid's step
    # a thousand times cheaper, the SRAM-like platform wins at every speed
    assert int(F.crossover_index(sram * 1e-3, gpu)) == 0
    # and with a GPU that never runs out of speed it never crosses
    assert int(F.crossover_index(sram, np.full(grid.size, 1e-9))) == grid.size


def test_the_crossover_is_the_first_win_and_the_windows_say_where_the_sram_side_stays_cheaper():
    inf = np.inf
    g = np.array([10.0, 20.0, 40.0, 80.0])
    assert F.crossover_index(np.array([5, 5, 1, inf]), np.array([1, 1, 2, inf])) == 2
    assert F.windows([5, 5, 1, inf], [1, 1, 2, inf], g) == [[40.0, 40.0]]
    assert F.crossover_index(np.array([5, 1, 5, 1]), np.array([1, 2, 1, 2])) == 1   # becomes cheaper at the first win
    assert F.windows([5, 1, 5, 1], [1, 2, 1, 2], g) == [[20.0, 20.0], [80.0, 80.0]]
    assert F.crossover_index(np.array([5, 1, inf, inf]), np.array([1, 2, 3, inf])) == 1  # the GPU alone goes faster
    assert F.windows([5, 1, inf, inf], [1, 2, 3, inf], g) == [[20.0, 20.0]]
    assert F.crossover_index(np.array([inf, inf]), np.array([1, inf])) == 2         # the SRAM side never serves
    assert F.crossover_index(np.array([1.0, 1.0]), np.array([1.0, 2.0])) == 1        # a tie is no win
    assert F.crossover_index(np.array([inf, 1.0, 1.0]), np.array([inf, 2.0, 3.0])) == 0   # cheaper from the start
    rows = F.crossover_index(np.array([[5, 1], [1, 1]]), np.array([[1, 2], [2, 2]]))
    assert rows.tolist() == [1, 0]                                                   # one per draw


# --------------------------------------------------------------------------- prices and layouts


def test_price_factors_times_units_per_throughput_are_lpulab_costs_per_token():
    plats, _ = F.platforms(["groq-lpu-v1", "nvidia-h100-sxm"])
    inputs = F.price_inputs(plats, utilisation=0.6, years=4.0)
    B, E = F.price_factors(plats, inputs)
    n, x = 576.0, 12345.0
    o = cost.run({**cost.side_inputs("lpu", "groq-card", n), **cost.side_inputs("gpu", "nvidia-dgx-h100", 3),
                  **cost.site_inputs("us-2023", years=4.0), "utilisation": 0.6, "lpu_tokens_per_s": x,
                  "gpu_tokens_per_s": 2 * x})
    assert n / x * float(B[0]) == pytest.approx(float(o["lpu_cost_per_token"]), rel=1e-12)
    assert n / x * float(E[0]) == pytest.approx(float(o["lpu_joules_per_token"]), rel=1e-12)
    assert 3 / (2 * x) * float(B[1]) == pytest.approx(float(o["gpu_cost_per_token"]), rel=1e-12)
    # and arrays of sampled inputs broadcast
    draws = cost.sample_inputs(inputs, 100, 1)
    Bd, Ed = F.price_factors(plats, draws)
    assert Bd.shape == (2, 100) and np.all(Bd > 0) and np.all(Ed > 0) and np.ptp(Bd[0]) > 0


def test_replicas_fill_the_units_bought():
    assert F.best_replicas(2, 8, 8, 16) == (4, 8, 1)          # TP2 on 8-GPU servers: four copies per server
    assert F.best_replicas(8, 8, 8, 16) == (1, 8, 1)
    r, deployed, units = F.best_replicas(302, 72, 1, 16)      # 302 chips on 72-chip racks, priced per card
    assert deployed % 72 == 0 and units == deployed and deployed >= r * 302
    assert units / r <= min(math.ceil(k * 302 / 72) * 72 / k for k in range(1, 17)) + 1e-9
    assert F.best_replicas(9, 72, 72, 16) == (8, 72, 1)


def test_tensor_widths_are_thinned_on_a_ladder_keeping_the_fewest_chips_width():
    assert F._ladder_widths(range(1, 9), 2.0) == list(range(1, 9))        # a short list is kept whole
    w = F._ladder_widths(range(1, 10441), 2.0, keep=[151])
    assert w[:4] == [1, 2, 4, 8] and 151 in w and 8192 in w and len(w) <= 16


def test_layouts_follow_each_devices_deployment_rules():
    m = catalog.load_model("llama-2-70b")
    plats, _ = F.platforms(["groq-lpu-v1", "nvidia-h100-sxm"])
    c = F.candidates(m, plats, 550, 150)
    gpu = c.configs[c.configs.device == "nvidia-h100-sxm"]
    assert set(gpu.tensor) <= {1, 2, 4, 8} and (gpu.chips_deployed % 8 == 0).all()
    assert (gpu.units == gpu.chips_deployed // 8).all()
    lpu = c.configs[c.configs.device == "groq-lpu-v1"]
    assert (lpu.chips_deployed % 72 == 0).all() and (lpu.units == lpu.chips_deployed).all()
    assert (lpu.chips == lpu.replicas * lpu.tensor * lpu.pipeline).all()
    assert (lpu.chips <= lpu.chips_deployed).all() and (lpu.tensor * lpu.pipeline <= 8192).all()


def test_a_device_without_a_price_sheet_is_left_out_with_why():
    plats, skipped = F.platforms(["nvidia-h100-sxm", "nvidia-h100-pcie"])
    assert [p.device.id for p in plats] == ["nvidia-h100-sxm"]
    assert skipped[0][0] == "nvidia-h100-pcie" and "deployment.prices" in skipped[0][1]


@pytest.mark.parametrize("call, match", [
    (lambda: F.platforms(["nvidia-h100-sxmm"]), "unknown device"),
    (lambda: F.platforms(["groq-lpu-3"], {"groq-lpu-3": ["bf16"]}), "no bf16 peak"),
    (lambda: F.platforms(["groq-lpu-v1"], {"nvidia-b200": ["nvfp4"]}), "not among the devices"),
    (lambda: F.speed_targets(10, 5), "low <= high"),
    (lambda: F.speed_targets(0, 5), "low <= high"),
    (lambda: F._check_targets([10, float("nan")]), "finite"),
    (lambda: F.axis_values("price"), "not one of"),
    (lambda: F.axis_values("utilisation", 0.1, 2.0), "fraction"),
    (lambda: F.axis_values("model", models=["llama-9"]), "unknown model"),
    (lambda: F.price_inputs([], utilisation=0), "utilisation"),
    (lambda: F.analyse("llama-2-70b", ["groq-lpu-v1"], map_axis="weather"), "map axis"),
    (lambda: F.analyse("llama-2-70b", ["groq-lpu-v1"], ttft_limit=-1.0), "time-to-first-token"),
])
def test_bad_input_is_refused_with_the_allowed_values(call, match):
    with pytest.raises(F.FrontierError, match=match):
        call()


# --------------------------------------------------------------------------- the search, as a property


@pytest.fixture(scope="module")
def built():
    m = catalog.load_model("llama-2-70b")
    plats, _ = F.platforms(["groq-lpu-v1", "nvidia-h100-sxm"])
    cands = F.candidates(m, plats, 550, 150, concurrency_points=16, pipeline_steps=(1, 2))
    cal, _, _ = speed.calibrate()
    return cands, cal


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(targets=st.lists(st.floats(1.0, 400.0), min_size=1, max_size=8),
       ttft=st.one_of(st.none(), st.floats(0.01, 2.0)),
       memory=st.floats(0.4, 1.0), overhead=st.floats(1e-6, 1e-4),
       price=st.floats(0.2, 5.0), utilisation=st.floats(0.05, 1.0))
def test_the_search_returns_only_configurations_that_fit_and_meet_the_target(built, targets, ttft, memory, overhead,
                                                                            price, utilisation):
    cands, cal = built
    knobs = F.point_knobs(cal)
    knobs["hbm"] = knobs["hbm"].__class__(knobs["hbm"].compute, memory, 1.0, overhead, knobs["hbm"].prefill_compute)
    inputs = F.price_inputs(cands.platforms, utilisation=utilisation)
    inputs["groq-card.unit_price"] = price * 20000.0
    rows = F.search(cands, targets, knobs=knobs, inputs=inputs, ttft_limit=ttft)
    pts = cands.points(knobs)
    B, E = F.price_factors(cands.platforms, inputs)
    every = F.configurations(cands, pts, B.ravel(), E.ravel())
    for obj in F.OBJECTIVES:
        for p in cands.platforms:
            r = rows[(rows.objective == obj) & (rows.platform == p.label)].sort_values("target_tok_s")
            mine = every[every.platform == p.label]
            for x in r.itertuples():
                ok = mine[mine.fits & (mine.per_user_tok_s >= x.target_tok_s)
                          & ((mine.ttft_s <= ttft) if ttft is not None else True)]
                assert x.feasible == (len(ok) > 0)
                if not x.feasible:
                    continue
                # the configuration returned exists, fits, meets the target and the TTFT limit
                match = mine[(mine.layout == x.layout) & (mine.concurrency == x.concurrency)]
                assert len(match) == 1 and bool(match.fits.iloc[0])
                assert x.per_user_tok_s >= x.target_tok_s and (ttft is None or x.ttft_s <= ttft)
                assert x.chips == x.replicas * x.tensor * x.pipeline and x.units >= 1
                # ... and it is the cheapest such configuration (brute force)
                assert getattr(x, obj) == pytest.approx(ok[obj].min(), rel=1e-12)
            # a faster target never costs less
            vals = r[r.feasible][obj].to_numpy()
            assert np.all(np.diff(vals) >= -1e-12 * np.abs(vals[1:]))
            # and once a target is out of reach, every faster one is too
            feas = r.feasible.to_numpy()
            assert not np.any(~feas[:-1] & feas[1:])


def test_sampled_costs_never_fall_with_speed_in_any_draw(built):
    cands, cal = built
    inputs = F.price_inputs(cands.platforms)
    d = F.draws(cands.platforms, inputs, cal, 300, 5, knob_rows=8)
    A, sides = F.sampled_costs(cands, d, np.geomspace(1, 500, 60))
    assert np.all(A[..., 1:] >= A[..., :-1])             # inf (out of reach) only ever follows inf
    assert np.isfinite(A[..., 0]).all() and np.isinf(A[..., -1]).mean() > 0.5   # 500 tok/s: mostly out of reach
    assert set(sides) == {"sram", "hbm"} and A.shape == (2, 300, 60)


def test_the_probability_map_is_the_same_for_the_same_seed_and_moves_with_another(built):
    cands, _ = built
    kw = dict(targets=(20.0, 400.0, 8), samples=400, knob_rows=8, map_axis="electricity",
              map_values=[0.05, 0.2], with_measured=False, prebuilt=cands)
    a = F.analyse("llama-2-70b", seed=11, **kw)
    b = F.analyse("llama-2-70b", seed=11, **kw)
    c = F.analyse("llama-2-70b", seed=12, **kw)
    pa, pb, pc = (x.odds.probability for x in (a, b, c))
    assert pa.shape == (8, 2)
    np.testing.assert_array_equal(pa, pb)
    assert a.crossover.to_dict() == b.crossover.to_dict()
    assert not np.array_equal(np.nan_to_num(pa, nan=-1), np.nan_to_num(pc, nan=-1))
    ok = np.isfinite(pa)
    assert ok.any() and np.all((pa[ok] >= 0) & (pa[ok] <= 1))


def test_a_cheaper_sram_card_raises_the_odds_and_the_point_crossover_is_a_grid_speed(built):
    cands, _ = built
    r = F.analyse("llama-2-70b", targets=(20.0, 400.0, 10), samples=400, knob_rows=8, seed=3, map_axis="card_price",
                  map_values=[3000.0, 30000.0], with_measured=False, prebuilt=cands)
    p = r.odds.probability
    ok = np.isfinite(p).all(axis=1)
    assert np.all(p[ok, 0] >= p[ok, 1])                       # cheaper cards never lower the odds
    assert (p[ok, 0] > p[ok, 1]).any()
    x = r.crossover
    if x.value is not None:
        assert x.speed_range[0] < x.value <= x.speed_range[1]
    d = r.to_dict()
    assert d["crossover"]["draws"] == 400 and d["odds"]["axis_unit"] == "USD per chip"


def test_the_monte_carlo_in_chunks_gives_the_same_numbers(built, monkeypatch):
    cands, _ = built
    kw = dict(targets=(20.0, 400.0, 6), samples=300, knob_rows=8, seed=4, map_axis="utilisation",
              map_values=[0.3, 1.0], with_measured=False, prebuilt=cands)
    whole = F.analyse("llama-2-70b", **kw)
    monkeypatch.setattr(F, "CHUNK", 70)
    parts = F.analyse("llama-2-70b", **kw)
    np.testing.assert_array_equal(whole.odds.probability, parts.odds.probability)
    assert whole.crossover.to_dict() == parts.crossover.to_dict()
    assert whole.energy_crossover.to_dict() == parts.energy_crossover.to_dict()


def test_the_explorer_shows_the_searchs_numbers_and_moves_with_its_controls(built):
    from lpulab import explore

    cands, cal = built
    r = F.analyse("llama-2-70b", targets=[20.0, 30.0, 150.0], samples=0, with_measured=False, prebuilt=cands)
    c = explore.Curves(cands.model, cands.platforms, np.array([20.0, 30.0, 150.0]),
                       np.stack([F.ladder(cands.points(F.point_knobs(cal)), i).query(0, [20.0, 30.0, 150.0])[0]
                                 for i in range(len(cands.platforms))]))
    sel = [p.label for p in cands.platforms]
    inputs = F.price_inputs(cands.platforms)
    out = explore.evaluate(c, sel, inputs, target=30.0)
    best = r.curve("usd_per_mtok")
    for p in sel:
        want = best[(best.platform == p) & (best.target_tok_s == 30.0)].usd_per_mtok
        assert out["at_target"][p]["usd_per_mtok"] == pytest.approx(float(want.iloc[0]), rel=1e-12)
    cheaper = explore.evaluate(c, sel, inputs, target=30.0, sram_price=0.5)
    lpu = "groq-lpu-v1 int8"
    assert cheaper["at_target"][lpu]["usd_per_mtok"] < out["at_target"][lpu]["usd_per_mtok"]
    assert cheaper["at_target"]["nvidia-h100-sxm fp8"] == out["at_target"]["nvidia-h100-sxm fp8"]
    idle = explore.evaluate(c, sel, inputs, target=30.0, utilisation=0.2)
    assert idle["at_target"][lpu]["joules_per_token"] > out["at_target"][lpu]["joules_per_token"]
    one = explore.evaluate(c, [lpu], inputs)
    assert one["crossover"]["usd_per_mtok"] is None                     # one side only: no crossover
    png = explore.Figure(c.grid).update("llama-2-70b", c, out)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
