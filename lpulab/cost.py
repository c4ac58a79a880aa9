"""Claims C3 and C4: what two deployments cost to buy and to run, per deployment and per
token, with the uncertainty of every input.

Each side (``lpu``: the chip under test; ``gpu``: the reference) is ``N`` units of its
device as its price sheet prices them (a card, an 8-GPU server, a rack, a wafer system):

    capex   = N (p_unit + p_host + p_net)            p: price per unit (host, network shares)
    P       = N (w_unit + w_host) f(u)               w: power per unit under load
    f(u)    = i + (1 - i) u                          i: idle power / loaded power; u: utilisation
    opex    = P T (PUE e + r)                        e: electricity; r: rent per IT watt
    TCO     = capex + opex
    cost per token   = TCO / (X u T)                 X: aggregate tokens/s at the operating point
    energy per token = P (PUE) / (X u)               joules per output token at the wall
    matched units    = N_gpu X_lpu / X_gpu           GPU units that deliver the LPU's tokens/s

SI floats inside: USD, W, s, tokens/s; any per-energy price in USD/J, so that ``$/kWh`` and
an all-in ``$/kW/month`` are the same kind of number. Every function broadcasts over numpy
arrays, so a Monte Carlo of a million draws is one call.

Because every per-kW rate (electricity price, PUE, rent, hours) multiplies both sides' power
alike, the operating-cost ratio is the power ratio: the claim's 10x does not depend on the
price of electricity at all.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy import stats

from . import catalog, claims, units
from .catalog import Value, load_prices

#: Hours in the claim's year (365 days); pint's year is 365.25 days.
HOURS_PER_YEAR = 8760.0
YEAR = HOURS_PER_YEAR * 3600.0
SIDES = ("lpu", "gpu")

_SIDE_INPUTS = {
    "units": ("count", "units bought (cards, servers, racks, systems: as the price sheet prices them)"),
    "unit_price": ("USD", "price of one unit"),
    "host_price_per_unit": ("USD", "host servers, chassis, rack share per unit"),
    "network_price_per_unit": ("USD", "scale-out network per unit"),
    "unit_power": ("W", "power of one unit under load"),
    "host_power_per_unit": ("W", "host power per unit"),
    "idle_power_fraction": ("", "power drawn when idle, as a fraction of power under load"),
    "tokens_per_s": ("token/s", "aggregate output tokens/s of the deployment at its operating point"),
}
#: Every input :func:`evaluate` takes: display unit, meaning.
INPUTS = {
    **{f"{s}_{k}": (u, f"{'chip under test' if s == 'lpu' else 'reference'}: {m}")
       for s in SIDES for k, (u, m) in _SIDE_INPUTS.items()},
    "energy_price": ("USD/kWh", "electricity price (or an all-in rate with PUE = 1)"),
    "facility_rate": ("USD/kW/month", "rent per kW of IT load (colocation), on top of electricity"),
    "pue": ("", "power usage effectiveness (facility power / IT power)"),
    "lifetime": ("hour", "time the hardware is owned and run"),
    "utilisation": ("", "fraction of the lifetime spent serving at the operating point"),
}

#: Each ratio :func:`evaluate` returns, as (numerator, denominator).
RATIOS = {
    "capex_ratio": ("lpu_capex", "gpu_capex"),
    "power_ratio": ("lpu_power", "gpu_power"),
    "opex_ratio": ("lpu_opex", "gpu_opex"),
    "tco_ratio": ("lpu_tco", "gpu_tco"),
    "cost_per_token_ratio": ("lpu_cost_per_token", "gpu_cost_per_token"),
    "energy_per_token_ratio": ("lpu_joules_per_token", "gpu_joules_per_token"),
    "capex_ratio_matched": ("lpu_capex", "gpu_capex_matched"),
    "opex_ratio_matched": ("lpu_opex", "gpu_opex_matched"),
    "tco_ratio_matched": ("lpu_tco", "gpu_tco_matched"),
}

DISTRIBUTIONS = ("triangular", "uniform", "log-triangular", "loguniform", "lognormal")


class CostError(ValueError):
    """An input that is unknown, missing, negative or out of range; the message names it."""


# --------------------------------------------------------------------------- building blocks


def capex(units_, unit_price, extra_per_unit=0.0):
    """Purchase cost: ``units x (unit price + extra per unit)`` (hosts, network shares)."""
    return np.asarray(units_, float) * (np.asarray(unit_price, float) + np.asarray(extra_per_unit, float))


def average_power(power, utilisation=1.0, idle_fraction=1.0):
    """Average power of equipment that draws ``power`` under load and ``idle_fraction x power``
    when idle, serving ``utilisation`` of the time. ``idle_fraction = 1`` (the claim's
    assumption) makes power independent of load."""
    u, i = np.asarray(utilisation, float), np.asarray(idle_fraction, float)
    return np.asarray(power, float) * (i + (1.0 - i) * u)


def opex(power, seconds, energy_price, pue=1.0, facility_rate=0.0):
    """Operating cost of IT ``power`` (W) over ``seconds``: ``P T (PUE e + r)``.

    ``energy_price`` and ``facility_rate`` are USD per joule (``units.to_si(0.08, "USD/kWh")``,
    ``units.to_si(200, "USD/kW/month")``). An all-in rate goes in ``energy_price`` with
    ``pue = 1``."""
    return (np.asarray(power, float) * np.asarray(seconds, float)
            * (np.asarray(pue, float) * np.asarray(energy_price, float) + np.asarray(facility_rate, float)))


def cost_per_token(total_cost, tokens_per_s, seconds, utilisation=1.0):
    """USD per output token: total cost over the tokens served in ``seconds`` at
    ``tokens_per_s`` for ``utilisation`` of the time."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(total_cost, float) / (np.asarray(tokens_per_s, float) * np.asarray(utilisation, float)
                                                * np.asarray(seconds, float))


def energy_per_token(power, tokens_per_s, utilisation=1.0, pue=1.0):
    """Joules per output token at the wall: average IT power times PUE over the tokens/s
    delivered on average (``tokens_per_s x utilisation``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.asarray(power, float) * np.asarray(pue, float)
                / (np.asarray(tokens_per_s, float) * np.asarray(utilisation, float)))


def units_to_match(units_, tokens_per_s, target_tokens_per_s, integer=False):
    """Units of a deployment that deliver ``target_tokens_per_s``, given that ``units_`` of
    them deliver ``tokens_per_s`` (fractional unless ``integer``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        n = np.asarray(units_, float) * np.asarray(target_tokens_per_s, float) / np.asarray(tokens_per_s, float)
    return np.ceil(n) if integer else n


# --------------------------------------------------------------------------- the whole comparison


def _arr(name, x, lo=0.0, hi=None, lo_open=False):
    a = np.asarray(x, float)
    if np.any(~np.isfinite(a)):
        raise CostError(f"input {name!r} must be finite, got {x!r}")
    if np.any(a <= lo if lo_open else a < lo) or (hi is not None and np.any(a > hi)):
        rng = f"{'(' if lo_open else '['}{lo:g}, {'inf)' if hi is None else f'{hi:g}]'}"
        raise CostError(f"input {name!r} must lie in {rng}, got {x!r}")
    return a


def evaluate(*, lpu_units, lpu_unit_price, lpu_unit_power, gpu_units, gpu_unit_price, gpu_unit_power, lifetime,
             energy_price, lpu_host_price_per_unit=0.0, lpu_network_price_per_unit=0.0, lpu_host_power_per_unit=0.0,
             gpu_host_price_per_unit=0.0, gpu_network_price_per_unit=0.0, gpu_host_power_per_unit=0.0,
             lpu_idle_power_fraction=1.0, gpu_idle_power_fraction=1.0, lpu_tokens_per_s=None, gpu_tokens_per_s=None,
             pue=1.0, facility_rate=0.0, utilisation=1.0, integer_units=False) -> dict[str, np.ndarray]:
    """Costs of both deployments and every ratio (see :data:`INPUTS`; arrays broadcast).

    Returns arrays: ``lpu_/gpu_`` capex, power, opex, tco, tokens_per_s, cost_per_token,
    usd_per_mtok, joules_per_token; ``gpu_units_matched`` (reference units delivering the
    LPU side's tokens/s) and the ``gpu_*_matched`` costs; and the ratios in :data:`RATIOS`
    (LPU side / reference). Without throughputs the per-token outputs are NaN.
    """
    T = _arr("lifetime", lifetime, lo_open=True)
    u = _arr("utilisation", utilisation, 0.0, 1.0, lo_open=True)
    e, r, pue_ = _arr("energy_price", energy_price), _arr("facility_rate", facility_rate), _arr("pue", pue)
    if np.any(pue_ < 1.0):
        raise CostError(f"input 'pue' must be at least 1 (facility power includes IT power), got {pue!r}")
    given = {"lpu": dict(units=lpu_units, unit_price=lpu_unit_price, unit_power=lpu_unit_power,
                         host_price_per_unit=lpu_host_price_per_unit, network_price_per_unit=lpu_network_price_per_unit,
                         host_power_per_unit=lpu_host_power_per_unit, idle_power_fraction=lpu_idle_power_fraction,
                         tokens_per_s=lpu_tokens_per_s),
             "gpu": dict(units=gpu_units, unit_price=gpu_unit_price, unit_power=gpu_unit_power,
                         host_price_per_unit=gpu_host_price_per_unit, network_price_per_unit=gpu_network_price_per_unit,
                         host_power_per_unit=gpu_host_power_per_unit, idle_power_fraction=gpu_idle_power_fraction,
                         tokens_per_s=gpu_tokens_per_s)}
    out: dict[str, np.ndarray] = {}
    per_unit = {}
    for s, g in given.items():
        n = _arr(f"{s}_units", g["units"], lo_open=True)
        extra = _arr(f"{s}_host_price_per_unit", g["host_price_per_unit"]) + _arr(
            f"{s}_network_price_per_unit", g["network_price_per_unit"])
        unit_capex = capex(1.0, _arr(f"{s}_unit_price", g["unit_price"]), extra)
        load = _arr(f"{s}_unit_power", g["unit_power"]) + _arr(f"{s}_host_power_per_unit", g["host_power_per_unit"])
        i = _arr(f"{s}_idle_power_fraction", g["idle_power_fraction"], 0.0, 1.0)
        unit_power = average_power(load, u, i)
        unit_opex = opex(unit_power, T, e, pue_, r)
        x = np.nan if g["tokens_per_s"] is None else _arr(f"{s}_tokens_per_s", g["tokens_per_s"], lo_open=True)
        out[f"{s}_capex"] = n * unit_capex
        out[f"{s}_power"] = n * unit_power
        out[f"{s}_opex"] = n * unit_opex
        out[f"{s}_tco"] = out[f"{s}_capex"] + out[f"{s}_opex"]
        out[f"{s}_tokens_per_s"] = x * np.ones_like(out[f"{s}_tco"])
        out[f"{s}_cost_per_token"] = cost_per_token(out[f"{s}_tco"], x, T, u)
        out[f"{s}_usd_per_mtok"] = out[f"{s}_cost_per_token"] * 1e6
        out[f"{s}_joules_per_token"] = energy_per_token(out[f"{s}_power"], x, u, pue_)
        per_unit[s] = (n, unit_capex, unit_opex, x)
    n_g, capex_g, opex_g, x_g = per_unit["gpu"]
    m = units_to_match(n_g, x_g, per_unit["lpu"][3], integer=integer_units) * np.ones_like(out["lpu_tco"])
    out["gpu_units_matched"] = m
    out["gpu_capex_matched"] = m * capex_g
    out["gpu_opex_matched"] = m * opex_g
    out["gpu_tco_matched"] = out["gpu_capex_matched"] + out["gpu_opex_matched"]
    with np.errstate(divide="ignore", invalid="ignore"):
        for name, (num, den) in RATIOS.items():
            out[name] = out[num] / out[den]
    shape = np.broadcast_shapes(*(np.shape(v) for v in out.values()))
    return {k: np.array(np.broadcast_to(v, shape), float) for k, v in out.items()}


def _check_names(inputs: Mapping) -> None:
    unknown = sorted(set(inputs) - set(INPUTS) - {"integer_units"})
    if unknown:
        raise CostError(f"unknown input(s) {', '.join(unknown)}; known: {', '.join(INPUTS)}")


# --------------------------------------------------------------------------- uncertain inputs


@dataclass(frozen=True)
class Uncertain:
    """An input known only as a range: ``value`` is the point estimate (the mode of a
    triangular draw, the median of a lognormal), ``[low, high]`` its range, ``dist`` the
    shape drawn in the Monte Carlo (one of :data:`DISTRIBUTIONS`), ``source`` where it comes
    from (a citation, or the word *assumption*)."""

    value: float
    low: float
    high: float
    dist: str = "triangular"
    source: str = ""

    def __post_init__(self):
        if self.dist not in DISTRIBUTIONS:
            raise CostError(f"unknown distribution {self.dist!r}; allowed: {', '.join(DISTRIBUTIONS)}")
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low <= self.value <= self.high):
            raise CostError(f"need low <= value <= high, got {self.low!r} <= {self.value!r} <= {self.high!r}")
        if self.dist in ("log-triangular", "loguniform", "lognormal") and self.low <= 0:
            raise CostError(f"a {self.dist} range must be positive, got low = {self.low!r}")

    @classmethod
    def of(cls, v: Value, dist: str = "triangular", scale: float = 1.0) -> Uncertain | float:
        """From a catalog value: its range if it has one, else the plain number."""
        lo, hi = v.low_si, v.high_si
        if lo is None or hi is None:   # not a range
            return v.si * scale
        return cls(v.si * scale, lo * scale, hi * scale, dist, v.cite())

    @classmethod
    def spanning(cls, value: float, low: float, high: float, dist: str = "triangular", source: str = "") -> Uncertain:
        """A range that always contains its point: ``[min(low, value), max(high, value)]``."""
        return cls(float(value), float(min(low, value)), float(max(high, value)), dist, source)

    def distribution(self):
        """The scipy.stats frozen distribution drawn from (of log x for log-triangular)."""
        lo, hi, mode = self.low, self.high, self.value
        if self.dist == "triangular":
            return stats.triang(c=(mode - lo) / (hi - lo), loc=lo, scale=hi - lo)
        if self.dist == "uniform":
            return stats.uniform(loc=lo, scale=hi - lo)
        if self.dist == "loguniform":
            return stats.loguniform(lo, hi)
        if self.dist == "lognormal":
            sigma = max(math.log(hi / mode), math.log(mode / lo)) / stats.norm.ppf(0.95)
            return stats.lognorm(s=sigma, scale=mode)
        llo, lhi, lmode = math.log(lo), math.log(hi), math.log(mode)
        return stats.triang(c=(lmode - llo) / (lhi - llo), loc=llo, scale=lhi - llo)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.high == self.low or (self.dist == "lognormal" and self.high == self.value == self.low):
            return np.full(n, self.value)
        x = self.distribution().rvs(size=n, random_state=rng)
        return np.exp(x) if self.dist == "log-triangular" else np.asarray(x, float)


def point(inputs: Mapping) -> dict:
    """Every input at its point value (an :class:`Uncertain` becomes its ``value``)."""
    return {k: (v.value if isinstance(v, Uncertain) else v) for k, v in inputs.items()}


def uncertain(inputs: Mapping) -> dict[str, Uncertain]:
    return {k: v for k, v in inputs.items() if isinstance(v, Uncertain)}


def with_distribution(inputs: Mapping, dist: str, only=None) -> dict:
    """A copy of ``inputs`` whose uncertain entries (or those named in ``only``) are drawn from ``dist``."""
    return {k: (replace(v, dist=dist) if isinstance(v, Uncertain) and (only is None or k in only) else v)
            for k, v in inputs.items()}


def sample_inputs(inputs: Mapping, n: int, seed: int) -> dict:
    """``n`` joint draws of the inputs: each :class:`Uncertain` from its distribution, the
    others repeated. Each input has its own stream, seeded by ``(seed, name)``, so the draws
    of one input do not change when another is added; inputs are drawn independently."""
    if int(n) < 1:
        raise CostError(f"need at least one sample, got {n!r}")
    out = {}
    for k, v in inputs.items():
        if isinstance(v, Uncertain):
            rng = np.random.default_rng([int(seed), zlib.crc32(k.encode())])
            out[k] = v.sample(int(n), rng)
        else:
            out[k] = v
    return out


def run(inputs: Mapping, **options) -> dict[str, np.ndarray]:
    """:func:`evaluate` on a mapping of inputs (uncertain ones at their point values)."""
    _check_names(inputs)
    return evaluate(**point(inputs), **options)


def monte_carlo(inputs: Mapping, n: int = 10_000, seed: int = 0, **options) -> dict[str, np.ndarray]:
    """Draw the uncertain inputs ``n`` times (:func:`sample_inputs`) and evaluate all draws
    in one vectorised call. Returns the outputs plus the drawn inputs under ``input:<name>``."""
    _check_names(inputs)
    draws = sample_inputs(inputs, n, seed)
    out = evaluate(**draws, **options)
    out.update({f"input:{k}": np.broadcast_to(np.asarray(v, float), (int(n),)) for k, v in draws.items()})
    return out


def bands(samples: Mapping, metrics, q=(5.0, 50.0, 95.0), points: Mapping | None = None) -> pd.DataFrame:
    """Percentiles of each metric over the draws (NaN draws ignored), with the point value."""
    rows = []
    for m in metrics:
        pct = np.nanpercentile(np.asarray(samples[m], float), q)
        row = {"metric": m, **{f"p{x:g}": float(v) for x, v in zip(q, pct)}}
        if points is not None:
            row["point"] = float(np.asarray(points[m]).reshape(-1)[0])
        rows.append(row)
    return pd.DataFrame(rows).set_index("metric")


# --------------------------------------------------------------------------- sensitivity, break-even


def tornado(inputs: Mapping, metric: str, **options) -> pd.DataFrame:
    """One-at-a-time sensitivity of ``metric``: each uncertain input at its low and its high
    end, every other input at its point value; all in one vectorised call. Rows sorted by
    swing (largest first): input, low, high (SI), at_low, at_high, point, swing, and the
    range in display units (unit, low_shown, high_shown)."""
    _check_names(inputs)
    unc = uncertain(inputs)
    if not unc:
        raise CostError("no uncertain inputs: nothing to vary")
    names = list(unc)
    base = point(inputs)
    k = len(names)
    batch = {name: np.full(2 * k, float(v)) for name, v in base.items()}
    for j, name in enumerate(names):
        batch[name][2 * j] = unc[name].low
        batch[name][2 * j + 1] = unc[name].high
    out = evaluate(**batch, **options)[metric]
    p = float(np.asarray(evaluate(**base, **options)[metric]).reshape(-1)[0])
    df = pd.DataFrame({
        "input": names, "low": [unc[n].low for n in names], "high": [unc[n].high for n in names],
        "at_low": out[0::2], "at_high": out[1::2], "point": p,
    })
    df["swing"] = (df["at_high"] - df["at_low"]).abs()
    df["unit"] = [INPUTS[n][0] for n in names]
    df["low_shown"] = [_display(n, unc[n].low) for n in names]
    df["high_shown"] = [_display(n, unc[n].high) for n in names]
    return df.sort_values("swing", ascending=False, ignore_index=True)


def break_even(inputs: Mapping, vary: str, metric: str = "cost_per_token_ratio", target: float = 1.0,
               **options) -> np.ndarray:
    """The value of input ``vary`` at which ``metric`` (a ratio in :data:`RATIOS`) equals
    ``target``, every other input at its point value (arrays broadcast).

    Closed form: the ratio is ``num / den`` and ``num - target x den`` is linear either in
    the input (prices, powers, counts, energy price, PUE) or in its reciprocal (a throughput
    or the lifetime, for per-token metrics). Three evaluations tell which, and give the root
    exactly. A negative result means no non-negative value reaches the target (e.g. a card
    price below zero); NaN means the metric does not depend on ``vary``, or only a
    non-positive value of a reciprocal input would reach it."""
    _check_names(inputs)
    if metric not in RATIOS:
        raise CostError(f"break-even needs a ratio metric, one of {', '.join(RATIOS)}; got {metric!r}")
    if vary not in INPUTS:
        raise CostError(f"unknown input {vary!r}; known: {', '.join(INPUTS)}")
    base = point(inputs)
    if vary not in base:
        raise CostError(f"input {vary!r} is not among the inputs given")
    num, den = RATIOS[metric]
    x0 = np.asarray(base[vary], float)
    if vary in ("utilisation", "lpu_idle_power_fraction", "gpu_idle_power_fraction"):  # bounded to [0, 1]: step down
        x1, x2 = np.where(x0 > 0, x0 / 2, 0.5), np.where(x0 > 0, x0 / 3, 0.25)
    else:
        x1, x2 = np.where(x0 > 0, 2 * x0, 1.0), np.where(x0 > 0, 3 * x0, 2.0)

    def gap(x):
        o = evaluate(**{**base, vary: x}, **options)
        return o[num] - target * o[den], np.abs(o[num]) + np.abs(target * o[den])

    (g0, s0), (g1, _), (g2, _) = gap(x0), gap(x1), gap(x2)
    tol = 1e-7 * s0
    with np.errstate(divide="ignore", invalid="ignore"):
        lin_ok = np.abs((g2 - g0) * (x1 - x0) - (g1 - g0) * (x2 - x0)) <= tol * np.abs(x2 - x0)
        root_lin = x0 - g0 * (x1 - x0) / (g1 - g0)
        r0, r1, r2 = 1.0 / x0, 1.0 / x1, 1.0 / x2
        rec_ok = np.isfinite(r0) & (np.abs((g2 - g0) * (r1 - r0) - (g1 - g0) * (r2 - r0)) <= tol * np.abs(r2 - r0))
        t = r0 - g0 * (r1 - r0) / (g1 - g0)
        root_rec = np.where(t > 0, 1.0 / t, np.nan)
        flat = g1 == g0
        out = np.where(flat, np.nan, np.where(lin_ok, root_lin, np.where(rec_ok, root_rec, np.nan)))
    return np.where(np.isfinite(out), out, np.nan)


# --------------------------------------------------------------------------- scenarios from the catalog


def as_stated(sheet: str | None = None, lpu_units: float | None = None) -> dict:
    """The claim's own inputs (the sheet ``data/claims.toml`` names for C3, by default):
    ``lpu_units`` cards at the card price and power against the stated GPU servers, over
    three years at the rate the reposted opex figures imply (all-in, PUE 1), no hosts."""
    s = load_prices(sheet or catalog.load_claims()["C3"].as_stated["sheet"])
    return {
        "lpu_units": float(lpu_units if lpu_units is not None else s["count.lpu_cards"].si),
        "lpu_unit_price": s["price.card"].si, "lpu_unit_power": s["power.card"].si,
        "gpu_units": s["count.gpu_servers"].si, "gpu_unit_price": s["price.server"].si,
        "gpu_unit_power": s["power.server"].si,
        "energy_price": s["tariff.implied"].si, "pue": 1.0, "facility_rate": 0.0,
        "lifetime": s["time.lifetime"].si, "utilisation": 1.0,
    }


def as_stated_table(sheet: str | None = None, chip_counts=None) -> pd.DataFrame:
    """The claim's arithmetic for several card counts at once (one vectorised call): the
    stated count, the weights-only count and the vendor's own deployment count of the
    sheet by default."""
    s = load_prices(sheet or catalog.load_claims()["C3"].as_stated["sheet"])
    if chip_counts is None:
        chip_counts = [s[k].si for k in ("count.lpu_cards", "count.lpu_cards_weights_only", "count.lpu_cards_groq")
                       if k in s]
    n = np.asarray(chip_counts, float)
    o = run({**as_stated(sheet), "lpu_units": n})
    cols = ["lpu_capex", "gpu_capex", "capex_ratio", "lpu_power", "gpu_power", "lpu_opex", "gpu_opex", "opex_ratio"]
    return pd.DataFrame({"lpu_cards": n.astype(int), **{c: o[c] for c in cols}})


OPEX_BASES = ("electricity", "colocation", "all-in")
PRICE_BASES = ("market", "bom")


def side_inputs(side: str, sheet_id: str, units_: float, *, price_basis: str = "market",
                dist: str = "triangular") -> dict:
    """One side's inputs from its system price sheet: ``units_`` units at the sheet's unit
    price (or its estimated build cost with ``price_basis="bom"``), host and network shares,
    unit and host power and idle fraction; every sourced range an :class:`Uncertain`."""
    if side not in SIDES:
        raise CostError(f"side {side!r} is not one of {', '.join(SIDES)}")
    if price_basis not in PRICE_BASES:
        raise CostError(f"price basis {price_basis!r} is not one of {', '.join(PRICE_BASES)}")
    S = load_prices(sheet_id)
    if S.category != "system":
        raise CostError(f"price sheet {sheet_id!r} is a {S.category!r} sheet; a side needs a system sheet "
                        f"({', '.join(catalog.price_ids(category='system'))})")
    if price_basis == "bom" and "price.unit_bom" not in S:
        raise CostError(f"price sheet {sheet_id!r} has no price.unit_bom (an estimated build cost)")
    u = lambda key, default=0.0: Uncertain.of(S[key], dist) if key in S else default  # noqa: E731
    return {f"{side}_units": float(units_),
            f"{side}_unit_price": u("price.unit" if price_basis == "market" else "price.unit_bom"),
            f"{side}_host_price_per_unit": u("price.host_per_unit"),
            f"{side}_network_price_per_unit": u("price.network_per_unit"),
            f"{side}_unit_power": u("power.unit"), f"{side}_host_power_per_unit": u("power.host_per_unit"),
            f"{side}_idle_power_fraction": u("factor.idle_power", 1.0)}


def site_inputs(site: str, opex_basis: str = "electricity", years: float = 3.0, dist: str = "triangular",
                all_in_sheet: str | None = None) -> dict:
    """Electricity, PUE and rent from a site sheet (``electricity``: IT power x PUE x price;
    ``colocation``: plus the site's rent per kW; ``all-in``: the claim's $/kW/month, PUE 1)."""
    if opex_basis not in OPEX_BASES:
        raise CostError(f"opex_basis {opex_basis!r} is not one of {', '.join(OPEX_BASES)}")
    out: dict[str, float | Uncertain] = {"lifetime": float(years) * YEAR, "utilisation": 1.0}
    if opex_basis == "all-in":
        sheet = all_in_sheet or catalog.load_claims()["C4"].as_stated["sheet"]
        out.update(energy_price=load_prices(sheet)["tariff.implied_monthly"].si, pue=1.0, facility_rate=0.0)
        return out
    S = load_prices(site)
    if S.category != "site":
        raise CostError(f"price sheet {site!r} is a {S.category!r} sheet, not a site sheet "
                        f"({', '.join(catalog.price_ids(category='site'))})")
    out.update(energy_price=Uncertain.of(S["tariff.electricity"], dist), pue=Uncertain.of(S["factor.pue"], dist),
               facility_rate=S["tariff.colocation"].si if opex_basis == "colocation" else 0.0)
    return out


def throughput_input(interval, scale: float = 1.0) -> Uncertain | float:
    """A speed-model throughput with its 95 % prediction interval as a lognormal input
    (median the prediction; :class:`Uncertain` reads lognormal low/high as P5/P95)."""
    v, lo, hi = (float(np.asarray(x)) * scale for x in (interval.value, interval.low, interval.high))
    if not (hi > v > lo > 0):
        return v
    sigma = max(math.log(hi / v), math.log(v / lo)) / 1.96
    z = stats.norm.ppf(0.95)
    return Uncertain(v, v * math.exp(-z * sigma), v * math.exp(z * sigma), "lognormal",
                     "lpulab serving model, 95 % prediction interval")


# --------------------------------------------------------------------------- tables and verdicts


def _display(name: str, v: float) -> float:
    unit = INPUTS[name][0]
    return float(v) if unit in ("", "count", "USD", "token/s") else float(units.from_si(v, unit))


def describe(inputs: Mapping) -> pd.DataFrame:
    """The inputs as a table for people: point, low, high in display units, distribution, source."""
    rows = []
    for k, v in inputs.items():
        unit, meaning = INPUTS[k]
        if isinstance(v, Uncertain):
            rows.append({"input": k, "unit": unit or "-", "point": _display(k, v.value), "low": _display(k, v.low),
                         "high": _display(k, v.high), "distribution": v.dist, "source": v.source, "meaning": meaning})
        else:
            rows.append({"input": k, "unit": unit or "-", "point": _display(k, v), "low": np.nan, "high": np.nan,
                         "distribution": "fixed", "source": "", "meaning": meaning})
    return pd.DataFrame(rows)


def summary(outputs: Mapping, lpu_label: str = "LPU deployment", gpu_label: str = "GPU side") -> pd.DataFrame:
    """Both sides of one evaluation side by side, in units people read: capex and opex and TCO
    (USD), average IT power (kW), aggregate throughput (tokens/s), $/Mtok, and LPU / GPU."""
    rows = [("capex (USD)", "lpu_capex", "gpu_capex", 1.0), ("average IT power (kW)", "lpu_power", "gpu_power", 1e-3),
            ("opex over the lifetime (USD)", "lpu_opex", "gpu_opex", 1.0), ("TCO (USD)", "lpu_tco", "gpu_tco", 1.0),
            ("aggregate throughput (tokens/s)", "lpu_tokens_per_s", "gpu_tokens_per_s", 1.0),
            ("USD per million output tokens", "lpu_usd_per_mtok", "gpu_usd_per_mtok", 1.0)]
    first = lambda k: float(np.asarray(outputs[k]).reshape(-1)[0])  # noqa: E731
    df = pd.DataFrame([{"quantity": q, lpu_label: first(a) * f, gpu_label: first(b) * f} for q, a, b, f in rows])
    df["LPU / GPU"] = df[lpu_label] / df[gpu_label]
    return df.set_index("quantity")


def verdict(claim: str, metric: str, as_stated_value: float, estimate: float, samples: np.ndarray,
            q=(5.0, 95.0), assumptions: Mapping | None = None, note: str = "") -> claims.Verdict:
    """A claim's verdict from its as-stated ratio, the best estimate and the Monte Carlo band
    [P5, P95] of ``samples``. If the point estimate falls outside that band (an input's point
    value at the edge of its range can put it there), the band is widened to include it and
    the verdict's note says so."""
    lo, hi = (float(x) for x in np.nanpercentile(np.asarray(samples, float), q))
    widened = not lo <= estimate <= hi
    if widened:
        note = (note + " " if note else "") + (f"The point estimate {estimate:.3g} lies outside the Monte Carlo "
                                               f"P{q[0]:g}-P{q[1]:g} band [{lo:.3g}, {hi:.3g}]; the band is widened to include it.")
        lo, hi = min(lo, estimate), max(hi, estimate)
    return claims.judge(claim, as_stated=as_stated_value, estimate=estimate, low=lo, high=hi,
                        assumptions={"metric": metric, "band": f"Monte Carlo P{q[0]:g}-P{q[1]:g}", **(assumptions or {})},
                        note=note)


# --------------------------------------------------------------------------- the whole analysis


@dataclass(frozen=True)
class Side:
    """One side's deployment as it is costed."""

    side: str
    device: str
    layout: Mapping
    precision: str
    concurrency: int
    chips: int                 # chips the layout uses
    chips_deployed: int        # rounded up to the device's deployment unit (all bought and powered)
    price_sheet: str
    chips_per_unit: int
    units: int                 # units bought, as the price sheet prices them
    tokens_per_s: Mapping      # aggregate tokens/s with its 95 % interval (or an override)
    per_user_tok_s: Mapping
    throughput_source: str     # "serving model" or "override"

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Result:
    """What notebook 04 records: the claim's own arithmetic, both deployments as costed,
    the inputs, point outputs, Monte Carlo bands, sensitivity, break-even and the verdicts."""

    model: str
    as_stated: Mapping
    as_stated_table: pd.DataFrame = field(repr=False)
    lpu: Side | None = None
    gpu: Side | None = None
    inputs: Mapping = field(default_factory=dict, repr=False)
    point: Mapping = field(default_factory=dict, repr=False)
    bands: pd.DataFrame | None = field(default=None, repr=False)
    samples: Mapping = field(default_factory=dict, repr=False)
    tornado: Mapping = field(default_factory=dict, repr=False)
    break_even_unit_price: float = float("nan")
    full_context_streams: int = 0
    verdicts: tuple = ()
    options: Mapping = field(default_factory=dict)

    def to_dict(self) -> dict:
        first = lambda k: float(np.asarray(self.point[k]).reshape(-1)[0])  # noqa: E731
        keys = ["lpu_capex", "gpu_capex", "lpu_power", "gpu_power", "lpu_opex", "gpu_opex", "lpu_tco", "gpu_tco",
                "lpu_tokens_per_s", "gpu_tokens_per_s", "lpu_usd_per_mtok", "gpu_usd_per_mtok", "lpu_joules_per_token",
                "gpu_joules_per_token", "gpu_units_matched", *RATIOS]
        return {"model": self.model, "as_stated": dict(self.as_stated),
                "lpu": self.lpu.to_dict() if self.lpu else None, "gpu": self.gpu.to_dict() if self.gpu else None,
                "point": {k: first(k) for k in keys},
                "bands": self.bands.reset_index().to_dict(orient="records") if self.bands is not None else [],
                "break_even_lpu_unit_price": self.break_even_unit_price,
                "full_context_streams": self.full_context_streams,
                "verdicts": [v.to_dict() for v in self.verdicts], "options": dict(self.options)}


BAND_METRICS = ("capex_ratio", "opex_ratio", "tco_ratio", "cost_per_token_ratio", "energy_per_token_ratio",
                "capex_ratio_matched", "tco_ratio_matched", "lpu_usd_per_mtok", "gpu_usd_per_mtok")


def _side(side, model, device, layout, precision, concurrency, prompt, output, sheet, cal, measured, override):
    from . import speed, workload

    try:   # a precision the device does not run is refused, even when the tokens/s are given
        workload.compute_format(device, precision)
    except workload.WorkloadError as exc:
        raise CostError(f"{side}: {exc}") from None

    chips = layout.chips
    unit = device.deployment.unit_chips
    deployed = -(-chips // unit) * unit
    S = load_prices(sheet)
    per_unit = int(S["count.chips_per_unit"].si)
    units_ = -(-deployed // per_unit)
    if override:
        tok = {"metric": "aggregate_tok_s", "value": float(override), "low": float(override), "high": float(override)}
        user = {"metric": "per_user_tok_s", "value": float(override) / concurrency,
                "low": float(override) / concurrency, "high": float(override) / concurrency}
        src = "override"
    else:
        from . import perf

        f = speed.forecast(model, perf.Deployment(device, layout, precision), int(concurrency), prompt, output, cal,
                           measured)
        tok, user = f.intervals["aggregate_tok_s"].to_dict(), f.intervals["per_user_tok_s"].to_dict()
        src = "serving model" + ("" if f.calibrated else " (uncalibrated device)")
    return Side(side, device.id, layout.to_dict(), precision.label(), int(concurrency), int(chips), int(deployed),
                sheet, per_unit, int(units_), tok, user, src)


def analyse(model: str, lpu: str, gpu: str, *, gpu_layout, lpu_layout=None, lpu_precision="int8",
            gpu_precision="fp8", lpu_concurrency: int = 1, gpu_concurrency: int = 64, prompt: int = 550,
            output: int = 150, lpu_prices: str | None = None, gpu_prices: str | None = None, site: str = "us-2023",
            opex_basis: str = "electricity", price_basis: str = "market", years: float = 3.0,
            utilisation: float = 1.0, distribution: str = "triangular", samples: int = 20000, seed: int = 0,
            lpu_tokens_per_s: float | None = None, gpu_tokens_per_s: float | None = None) -> Result:
    """C3 and C4 for the chip under test ``lpu`` against ``gpu`` serving ``model`` at the
    stated operating point (as in :func:`lpulab.speed.analyse`): each side's chips from
    placement and layout, rounded to its deployment unit, priced by its own price sheet
    (the device's ``deployment.prices`` unless ``lpu_prices``/``gpu_prices``), its tokens/s
    from the calibrated serving model with its interval (unless an override is given, which
    the result labels). The claim's own arithmetic comes from its sheet in ``data/claims.toml``."""
    from . import placement, speed, workload

    if utilisation <= 0 or utilisation > 1:
        raise CostError(f"utilisation must lie in (0, 1], got {utilisation!r}")
    M = catalog.load_model(model)
    L, G = catalog.load_device(lpu), catalog.load_device(gpu)
    pl, pg = workload.Precision.of(lpu_precision), workload.Precision.of(gpu_precision)
    if lpu_layout is None:
        lpu_layout = speed.sram_layout(M, L, pl, max(int(lpu_concurrency), 1), prompt + output)
    sheets = {"lpu": lpu_prices or L.price_sheet_id(), "gpu": gpu_prices or G.price_sheet_id()}
    cal, measured, _ = speed.calibrate()
    a = _side("lpu", M, L, lpu_layout, pl, lpu_concurrency, prompt, output, sheets["lpu"], cal, measured,
              lpu_tokens_per_s)
    b = _side("gpu", M, G, gpu_layout, pg, gpu_concurrency, prompt, output, sheets["gpu"], cal, measured,
              gpu_tokens_per_s)
    inputs = {**side_inputs("lpu", sheets["lpu"], a.units, price_basis=price_basis, dist=distribution),
              **side_inputs("gpu", sheets["gpu"], b.units, dist=distribution),
              **site_inputs(site, opex_basis, years, distribution)}
    inputs["utilisation"] = float(utilisation)
    for s, side in (("lpu", a), ("gpu", b)):
        inputs[f"{s}_tokens_per_s"] = (side.tokens_per_s["value"] if side.throughput_source == "override"
                                       else throughput_input(speed.Interval(**side.tokens_per_s)))
    stated_inputs = as_stated()
    o_s = run(stated_inputs)
    stated = {"capex_ratio": float(o_s["capex_ratio"][()] if o_s["capex_ratio"].ndim == 0 else o_s["capex_ratio"][0]),
              "opex_ratio": float(np.asarray(o_s["opex_ratio"]).reshape(-1)[0]),
              "lpu_units": stated_inputs["lpu_units"], "sheet": catalog.load_claims()["C3"].as_stated["sheet"]}
    pt = run(inputs)
    mc = monte_carlo(inputs, samples, seed)
    bnd = bands(mc, BAND_METRICS, points=pt)
    torn = {m: tornado(inputs, m) for m in ("capex_ratio", "opex_ratio", "cost_per_token_ratio")}
    be = float(np.asarray(break_even(inputs, "lpu_unit_price", "cost_per_token_ratio", 1.0)).reshape(-1)[0])
    streams = placement.full_context_streams(M, L, a.chips_deployed, precision=pl)
    first = lambda k: float(np.asarray(pt[k]).reshape(-1)[0])  # noqa: E731
    assum = {"model": model, "chip under test": f"{lpu}: {a.chips_deployed} chips ({a.units} x {sheets['lpu']})",
             "reference": f"{gpu}: {b.chips_deployed} chips ({b.units} x {sheets['gpu']})",
             "operating point": f"{lpu_concurrency} vs {gpu_concurrency} streams, {prompt} in / {output} out",
             "opex basis": opex_basis, "lifetime": f"{years:g} years", "utilisation": utilisation}
    v3 = verdict("C3", "capex ratio of the two deployments", stated["capex_ratio"], first("capex_ratio"),
                 mc["capex_ratio"], assumptions=assum)
    v4 = verdict("C4", "opex ratio of the two deployments", stated["opex_ratio"], first("opex_ratio"),
                 mc["opex_ratio"], assumptions=assum)
    opts = {"lpu_prices": sheets["lpu"], "gpu_prices": sheets["gpu"], "site": site, "opex_basis": opex_basis,
            "price_basis": price_basis, "years": years, "utilisation": utilisation, "distribution": distribution,
            "samples": samples, "seed": seed,
            "throughput_overrides": {k: v for k, v in (("lpu", lpu_tokens_per_s), ("gpu", gpu_tokens_per_s)) if v}}
    return Result(model, stated, as_stated_table(), a, b, inputs, pt, bnd, mc, torn, be, streams, (v3, v4), opts)
