"""lpulab.cost: hand-computed costs, the claim's own arithmetic, laws, Monte Carlo, break-even."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq

from lpulab import cost, units

KWH = units.to_si(1.0, "kWh")  # J


def small_case(**over):
    """10 cards at $1,000 + $100 host, 110 W each; 2 servers at $5,000 + $500, 1 kW each;
    1,000 h at $0.10/kWh, PUE 1.5; LPU 100 tok/s, one server 1,000 tok/s, half the time."""
    inputs = dict(
        lpu_units=10, lpu_unit_price=1000.0, lpu_host_price_per_unit=100.0, lpu_unit_power=100.0,
        lpu_host_power_per_unit=10.0, gpu_units=2, gpu_unit_price=5000.0, gpu_network_price_per_unit=500.0,
        gpu_unit_power=1000.0, lifetime=1000 * 3600.0, energy_price=0.10 / KWH, pue=1.5, utilisation=0.5,
        lpu_tokens_per_s=100.0, gpu_tokens_per_s=1000.0,
    )
    inputs.update(over)
    return inputs


def test_hand_computed_capex_opex_tco_and_cost_per_token():
    o = cost.evaluate(**small_case())
    assert o["lpu_capex"] == pytest.approx(10 * 1100)             # 11,000
    assert o["gpu_capex"] == pytest.approx(2 * 5500)              # 11,000
    assert o["lpu_power"] == pytest.approx(1100.0)                # idle draws as much as load
    assert o["lpu_opex"] == pytest.approx(1.1 * 1000 * 1.5 * 0.10)  # 1.1 kW x 1000 h x PUE x $/kWh = 165
    assert o["gpu_opex"] == pytest.approx(2.0 * 1000 * 1.5 * 0.10)  # 300
    assert o["lpu_tco"] == pytest.approx(11165.0)
    assert o["gpu_tco"] == pytest.approx(11300.0)
    # 100 tok/s x half of 1000 h = 1.8e8 tokens
    assert o["lpu_usd_per_mtok"] == pytest.approx(11165.0 / 1.8e8 * 1e6)
    # the two servers deliver 1,000 tok/s together: (11,000 + 300) / 1.8e9 tokens
    assert o["gpu_usd_per_mtok"] == pytest.approx(11300.0 / 1.8e9 * 1e6)
    assert o["gpu_units_matched"] == pytest.approx(0.2)      # 2 units x 100 / 1,000
    assert o["tco_ratio_matched"] == pytest.approx(11165.0 / (0.2 * 5650.0))
    assert o["tco_ratio_matched"] == pytest.approx(o["cost_per_token_ratio"])
    assert o["capex_ratio"] == pytest.approx(1.0) and o["opex_ratio"] == pytest.approx(165 / 300)


def test_idle_power_facility_rent_and_integer_units():
    o = cost.evaluate(**small_case(lpu_idle_power_fraction=0.2, gpu_idle_power_fraction=0.2, facility_rate=units.to_si(100.0, "USD/kW/month")))
    # average power 0.2 + 0.8 x 0.5 = 0.6 of 1,100 W; rent on IT power (no PUE)
    month_h = units.to_si(1.0, "month") / 3600
    assert o["lpu_power"] == pytest.approx(660.0)
    assert o["lpu_opex"] == pytest.approx(0.66 * 1000 * (1.5 * 0.10 + 100.0 / month_h))
    o = cost.evaluate(**small_case(), integer_units=True)
    assert o["gpu_units_matched"] == 1.0 and o["gpu_tco_matched"] == pytest.approx(5650.0)
    # joules per token at the wall: average power x PUE over the tokens/s delivered
    o = cost.evaluate(**small_case())
    assert o["lpu_joules_per_token"] == pytest.approx(1100.0 * 1.5 / (100.0 * 0.5))
    assert o["energy_per_token_ratio"] == pytest.approx((1100.0 / 100.0) / (2000.0 / 1000.0))


def test_the_claims_own_inputs_give_38x_and_10_6x():
    o = cost.run(cost.as_stated())
    assert round(float(o["capex_ratio"]), 1) == 38.1
    assert round(float(o["opex_ratio"]), 1) == 10.6
    assert float(o["lpu_opex"]) == pytest.approx(762_000, rel=1e-3)
    assert float(o["gpu_opex"]) == pytest.approx(72_000, rel=1e-3)
    t = cost.as_stated_table(chip_counts=(572, 305, 576))
    assert list(np.round(t["capex_ratio"], 1)) == [38.1, 20.3, 38.4]
    # the 305-card repost's "40x" needs the GPU side to cost 305 x 20,000 / 40
    assert float(cost.break_even(cost.as_stated(lpu_units=305), "gpu_unit_price", "capex_ratio", 40.0)) == pytest.approx(152_500)
    # the default table: the stated count, the weights-only count and the vendor's deployment
    assert list(cost.as_stated_table()["lpu_cards"]) == [572, 305, 576]


@settings(max_examples=60, deadline=None)
@given(price=st.floats(1e-3, 1.0), pue=st.floats(1.0, 3.0), rent=st.floats(0.0, 500.0), years=st.floats(0.1, 10.0),
       card_w=st.floats(1.0, 1000.0), server_kw=st.floats(0.1, 20.0), n=st.integers(1, 5000))
def test_energy_price_pue_rent_and_time_cancel_out_of_the_opex_ratio(price, pue, rent, years, card_w, server_kw, n):
    base = dict(lpu_units=n, lpu_unit_price=1.0, lpu_unit_power=card_w, gpu_units=1, gpu_unit_price=1.0,
                gpu_unit_power=server_kw * 1e3, lifetime=years * cost.YEAR)
    a = cost.evaluate(**base, energy_price=price / KWH, pue=pue, facility_rate=units.to_si(rent, "USD/kW/month"))
    b = cost.evaluate(**base, energy_price=1.0 / KWH)
    assert a["opex_ratio"] == pytest.approx(b["opex_ratio"], rel=1e-9)
    assert a["opex_ratio"] == pytest.approx(n * card_w / (server_kw * 1e3), rel=1e-9)


def test_everything_broadcasts():
    o = cost.evaluate(**small_case(lpu_units=np.array([10.0, 20.0, 30.0]), energy_price=np.array([[0.1], [0.2]]) / KWH))
    assert o["lpu_tco"].shape == (2, 3) and o["capex_ratio"].shape == (2, 3)
    assert o["lpu_capex"][1, 2] == pytest.approx(30 * 1100)
    single = cost.evaluate(**small_case(lpu_units=30, energy_price=0.2 / KWH))
    assert o["lpu_tco"][1, 2] == pytest.approx(float(single["lpu_tco"]))


@pytest.mark.parametrize("over,message", [
    ({"lpu_units": -1}, r"'lpu_units' must lie in \(0, inf\)"),
    ({"utilisation": 1.5}, r"'utilisation' must lie in \(0, 1\]"),
    ({"pue": 0.9}, r"'pue' must be at least 1"),
    ({"energy_price": np.nan}, r"'energy_price' must be finite"),
    ({"gpu_idle_power_fraction": 1.5}, r"'gpu_idle_power_fraction' must lie in \[0, 1\]"),
])
def test_bad_inputs_are_refused_by_name(over, message):
    with pytest.raises(cost.CostError, match=message):
        cost.evaluate(**small_case(**over))


def test_unknown_inputs_and_bad_ranges_are_refused():
    with pytest.raises(cost.CostError, match=r"unknown input.*lpu_chip\b.*known: lpu_units"):
        cost.run({**small_case(), "lpu_chip": 3})
    with pytest.raises(cost.CostError, match="need low <= value <= high"):
        cost.Uncertain(5.0, 6.0, 10.0)
    with pytest.raises(cost.CostError, match="unknown distribution 'normal'"):
        cost.Uncertain(5.0, 1.0, 10.0, "normal")
    with pytest.raises(cost.CostError, match="must be positive"):
        cost.Uncertain(5.0, 0.0, 10.0, "log-triangular")
    u = cost.Uncertain.spanning(576, 600, 700)
    assert (u.low, u.value, u.high) == (576, 576, 700)


def uncertain_case():
    return {**small_case(), "lpu_unit_price": cost.Uncertain(1000.0, 500.0, 1500.0),
            "lpu_unit_power": cost.Uncertain(100.0, 80.0, 120.0, "uniform"),
            "gpu_unit_price": cost.Uncertain(5000.0, 4000.0, 6000.0),
            "lpu_tokens_per_s": cost.Uncertain(100.0, 10.0, 1000.0, "log-triangular"),
            "energy_price": cost.Uncertain(0.1 / KWH, 0.05 / KWH, 0.2 / KWH, "lognormal")}


def test_monte_carlo_is_deterministic_for_a_seed_and_its_band_contains_the_point():
    inputs = uncertain_case()
    a = cost.monte_carlo(inputs, 4000, seed=7)
    b = cost.monte_carlo(inputs, 4000, seed=7)
    c = cost.monte_carlo(inputs, 4000, seed=8)
    for k in ("capex_ratio", "opex_ratio", "cost_per_token_ratio", "input:lpu_unit_price"):
        np.testing.assert_array_equal(a[k], b[k])
        assert not np.array_equal(a[k], c[k])
    p = cost.run(inputs)
    t = cost.bands(a, ["capex_ratio", "opex_ratio", "cost_per_token_ratio", "lpu_usd_per_mtok"], points=p)
    assert (t["p5"] <= t["point"]).all() and (t["point"] <= t["p95"]).all()
    assert (t["p5"] < t["p50"]).all() and (t["p50"] < t["p95"]).all()
    # draws stay in their ranges and keep their own stream when another input is added
    assert a["input:lpu_unit_price"].min() >= 500 and a["input:lpu_unit_price"].max() <= 1500
    more = cost.monte_carlo({**inputs, "pue": cost.Uncertain(1.5, 1.1, 2.0)}, 4000, seed=7)
    np.testing.assert_array_equal(more["input:lpu_unit_price"], a["input:lpu_unit_price"])


def test_tornado_varies_one_input_at_a_time():
    inputs = uncertain_case()
    t = cost.tornado(inputs, "capex_ratio")
    assert list(t["swing"]) == sorted(t["swing"], reverse=True)
    row = t.set_index("input").loc["lpu_unit_price"]
    assert row["at_low"] == pytest.approx(float(cost.run({**inputs, "lpu_unit_price": 500.0})["capex_ratio"]))
    assert row["at_high"] == pytest.approx(float(cost.run({**inputs, "lpu_unit_price": 1500.0})["capex_ratio"]))
    assert t.set_index("input").loc["lpu_unit_power", "swing"] == 0.0   # power does not move capex
    assert set(t["input"]) == set(cost.uncertain(inputs))


@pytest.mark.parametrize("vary,metric,factor", [
    ("lpu_unit_price", "cost_per_token_ratio", 1.3),
    ("lpu_unit_power", "cost_per_token_ratio", 1.02),
    ("lpu_tokens_per_s", "cost_per_token_ratio", 0.5),
    ("gpu_tokens_per_s", "cost_per_token_ratio", 2.0),
    ("gpu_unit_price", "capex_ratio", 0.5),
    ("lifetime", "tco_ratio", 0.99),
    ("lpu_tokens_per_s", "capex_ratio_matched", 3.0),
])
def test_break_even_closed_form_agrees_with_brentq(vary, metric, factor):
    inputs = small_case(lpu_units=20)
    target = factor * float(cost.evaluate(**inputs)[metric])
    x = float(cost.break_even(inputs, vary, metric, target))
    assert x > 0
    f = lambda v: float(cost.evaluate(**{**inputs, vary: v})[metric]) - target  # noqa: E731
    assert f(x) == pytest.approx(0.0, abs=1e-9 * target)
    lo, hi = x / 10, x * 10
    assert brentq(f, lo, hi, xtol=1e-12 * x) == pytest.approx(x, rel=1e-8)


def test_break_even_is_vectorised_and_says_when_there_is_none():
    inputs = small_case(lpu_units=np.array([10.0, 20.0, 40.0]))
    x = cost.break_even(inputs, "lpu_tokens_per_s")
    for n, xi in zip([10.0, 20.0, 40.0], x):
        assert xi == pytest.approx(float(cost.break_even(small_case(lpu_units=n), "lpu_tokens_per_s")))
    # a capex ratio does not depend on electricity: no break-even
    assert np.isnan(cost.break_even(small_case(), "energy_price", "capex_ratio", 2.0))
    # far above any card price: the price would have to be negative
    assert cost.break_even(small_case(lpu_tokens_per_s=1.0), "lpu_unit_price") < 0
    with pytest.raises(cost.CostError, match="needs a ratio metric"):
        cost.break_even(small_case(), "lpu_unit_price", "lpu_tco")


def test_verdict_uses_the_band_and_widens_it_to_hold_the_point():
    v = cost.verdict("C3", "capex_ratio", 38.13, 39.0, np.linspace(30, 45, 1001))
    assert v.reproduces and v.holds == "depends on assumptions" and v.low == pytest.approx(30.75)
    v = cost.verdict("C4", "opex_ratio", 10.58, 40.0, np.linspace(15, 30, 1001))
    assert v.holds == "does not hold" and v.high == 40.0 and "widened" in v.note


def test_side_and_site_inputs_read_sourced_ranges():
    a = cost.side_inputs("lpu", "groq-card", 360)
    assert a["lpu_units"] == 360 and isinstance(a["lpu_unit_price"], cost.Uncertain)
    assert a["lpu_unit_price"].low == 6000 and "isopack" in a["lpu_unit_price"].source
    assert cost.side_inputs("lpu", "groq-card", 1, price_basis="bom")["lpu_unit_price"] == 500.0
    g = cost.side_inputs("gpu", "nvidia-dgx-h100", 1)
    assert g["gpu_unit_power"].value == pytest.approx(7500.0)
    s = cost.site_inputs("us-2023")
    assert s["lifetime"] == 3 * cost.YEAR and isinstance(s["pue"], cost.Uncertain)
    assert cost.site_inputs("us-2023", "all-in")["pue"] == 1.0
    assert cost.site_inputs("us-2023", "colocation")["facility_rate"] > 0
    d = cost.describe({**a, **g, **s})
    assert d.set_index("input").loc["gpu_unit_power", "point"] == pytest.approx(7500.0)
    with pytest.raises(cost.CostError, match="opex_basis"):
        cost.site_inputs("us-2023", "free")
    with pytest.raises(cost.CostError, match="'us-2023' is a 'site' sheet; a side needs a system sheet"):
        cost.side_inputs("gpu", "us-2023", 1)
    with pytest.raises(cost.CostError, match="not a site sheet"):
        cost.site_inputs("groq-card")


def test_a_throughput_interval_becomes_a_lognormal_input_with_the_same_median():
    from lpulab.speed import Interval

    u = cost.throughput_input(Interval("aggregate_tok_s", 100.0, 50.0, 200.0))
    assert isinstance(u, cost.Uncertain) and u.dist == "lognormal" and u.value == 100.0
    draws = u.sample(200_000, np.random.default_rng(0))
    assert np.median(draws) == pytest.approx(100.0, rel=0.01)
    assert np.quantile(draws, 0.975) == pytest.approx(200.0, rel=0.03)   # the interval's 95 % ends
    assert cost.throughput_input(Interval("aggregate_tok_s", 5.0, 5.0, 5.0)) == 5.0
