"""Claims C3 and C4: what an LPU deployment and GPU servers cost to buy and to run, per
deployment and per token, with the uncertainty of every input.

The model (SI floats inside: USD, W, s, tokens/s; any per-energy price in USD/J, so that
``$/kWh`` and an all-in ``$/kW/month`` are the same kind of number):

    capex_L = N_L (p_card + p_host)              capex_G = N_G (p_server + p_net)
    P_L     = N_L (w_card + w_host) f(u)         P_G     = N_G w_server f(u)
    f(u)    = i + (1 - i) u                      (i: idle power / loaded power; u: utilisation)
    opex    = P T (PUE e + r)                    (e: electricity; r: facility rent per IT watt)
    TCO     = capex + opex
    cost per token = TCO / (X u T)               (X: aggregate tokens/s at the operating point)
    servers to match = X_L / X_G                 (X_G: one GPU server's aggregate at the per-user floor)

Every function broadcasts over numpy arrays, so a Monte Carlo of a million draws is one call.
Chip counts and throughputs are plain inputs: today the notebook states them; later
``lpulab.placement`` and ``lpulab.perf`` supply them through the same arguments.

Because every per-kW rate (electricity price, PUE, rent, hours) multiplies both sides' power
alike, the operating-cost ratio is the power ratio: the claim's 10x does not depend on the
price of electricity at all.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, replace
from typing import Mapping

import numpy as np
import pandas as pd
from scipy import stats

from . import catalog, claims, units
from .catalog import Value, load_prices

#: Hours in the claim's year (365 days); pint's year is 365.25 days.
HOURS_PER_YEAR = 8760.0
YEAR = HOURS_PER_YEAR * 3600.0

#: Every input :func:`evaluate` takes: display unit, meaning.
INPUTS = {
    "lpu_chips": ("count", "LPU cards in the deployment"),
    "lpu_card_price": ("USD", "price of one LPU card"),
    "lpu_host_price_per_card": ("USD", "host servers, chassis and network, per card"),
    "lpu_card_power": ("W", "power of one LPU card under load"),
    "lpu_host_power_per_card": ("W", "host power per card"),
    "lpu_tokens_per_s": ("token/s", "aggregate output tokens/s of the LPU deployment"),
    "lpu_users": ("count", "concurrent streams one LPU deployment serves"),
    "lpu_user_tokens_per_s": ("token/s", "output tokens/s each LPU stream sees"),
    "gpu_servers": ("count", "GPU servers in the deployment compared (the claim: 1)"),
    "gpu_server_price": ("USD", "price of one 8-GPU server"),
    "gpu_network_price_per_server": ("USD", "scale-out network per server"),
    "gpu_server_power": ("kW", "power of one GPU server under load"),
    "gpu_tokens_per_s": ("token/s", "aggregate output tokens/s of one GPU server at the per-user floor"),
    "gpu_users": ("count", "streams one GPU server serves at the LPU's per-user speed (matched speed)"),
    "energy_price": ("USD/kWh", "electricity price (or an all-in rate with PUE = 1)"),
    "facility_rate": ("USD/kW/month", "rent per kW of IT load (colocation), on top of electricity"),
    "pue": ("", "power usage effectiveness (facility power / IT power)"),
    "lifetime": ("hour", "time the hardware is owned and run"),
    "utilisation": ("", "fraction of the lifetime spent serving at the operating point"),
    "idle_power_fraction": ("", "power drawn when idle, as a fraction of power under load"),
}

#: Each ratio :func:`evaluate` returns, as (numerator, denominator).
RATIOS = {
    "capex_ratio": ("lpu_capex", "gpu_capex"),
    "power_ratio": ("lpu_power", "gpu_power"),
    "opex_ratio": ("lpu_opex", "gpu_opex"),
    "tco_ratio": ("lpu_tco", "gpu_tco"),
    "cost_per_token_ratio": ("lpu_cost_per_token", "gpu_cost_per_token"),
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


def servers_to_match(lpu_tokens_per_s, gpu_tokens_per_s, integer=False):
    """GPU servers that deliver the LPU deployment's aggregate tokens/s, each at its
    aggregate ``gpu_tokens_per_s`` at the per-user speed floor (fractional unless ``integer``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        n = np.asarray(lpu_tokens_per_s, float) / np.asarray(gpu_tokens_per_s, float)
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


def evaluate(*, lpu_chips, lpu_card_price, lpu_card_power, gpu_server_price, gpu_server_power, lifetime,
             energy_price, lpu_host_price_per_card=0.0, lpu_host_power_per_card=0.0, gpu_servers=1.0,
             gpu_network_price_per_server=0.0, pue=1.0, facility_rate=0.0, utilisation=1.0,
             idle_power_fraction=1.0, lpu_tokens_per_s=None, lpu_users=None, lpu_user_tokens_per_s=None,
             gpu_tokens_per_s=None, gpu_users=None, integer_servers=False) -> dict[str, np.ndarray]:
    """Costs of an LPU deployment and of ``gpu_servers`` GPU servers, and every ratio.

    All inputs are SI floats or numpy arrays that broadcast together (see :data:`INPUTS`).
    The LPU's aggregate throughput is ``lpu_tokens_per_s``, or ``lpu_users x
    lpu_user_tokens_per_s``. One GPU server's aggregate at the per-user floor is
    ``gpu_tokens_per_s``, or, at *matched per-user speed*, ``gpu_users x
    lpu_user_tokens_per_s`` (each GPU stream as fast as an LPU stream). Without throughputs
    the per-token outputs are NaN.

    Returns arrays: ``lpu_/gpu_`` capex, power, opex, tco, cost_per_token, usd_per_mtok;
    ``gpu_servers_matched`` (servers delivering the LPU's aggregate) and the ``*_matched``
    GPU costs; and the ratios in :data:`RATIOS` (LPU / GPU). Per deployment, the GPU side is
    ``gpu_servers`` servers; *matched*, it is ``gpu_servers_matched`` servers.
    """
    n_l = _arr("lpu_chips", lpu_chips, lo_open=True)
    n_g = _arr("gpu_servers", gpu_servers, lo_open=True)
    T = _arr("lifetime", lifetime, lo_open=True)
    u = _arr("utilisation", utilisation, 0.0, 1.0, lo_open=True)
    i = _arr("idle_power_fraction", idle_power_fraction, 0.0, 1.0)
    e, r, pue_ = _arr("energy_price", energy_price), _arr("facility_rate", facility_rate), _arr("pue", pue)
    if np.any(pue_ < 1.0):
        raise CostError(f"input 'pue' must be at least 1 (facility power includes IT power), got {pue!r}")

    if lpu_tokens_per_s is not None and (lpu_users is not None or lpu_user_tokens_per_s is not None):
        raise CostError("give the LPU throughput either as lpu_tokens_per_s or as lpu_users x lpu_user_tokens_per_s, not both")
    if (lpu_users is None) != (lpu_user_tokens_per_s is None):
        raise CostError("lpu_users and lpu_user_tokens_per_s go together")
    if lpu_users is not None:
        lpu_tokens_per_s = _arr("lpu_users", lpu_users, lo_open=True) * _arr("lpu_user_tokens_per_s", lpu_user_tokens_per_s, lo_open=True)
    x_l = np.nan if lpu_tokens_per_s is None else _arr("lpu_tokens_per_s", lpu_tokens_per_s, lo_open=True)
    if gpu_users is not None:
        if gpu_tokens_per_s is not None or lpu_user_tokens_per_s is None:
            raise CostError("gpu_users (matched per-user speed) needs lpu_user_tokens_per_s and excludes gpu_tokens_per_s")
        gpu_tokens_per_s = _arr("gpu_users", gpu_users, lo_open=True) * np.asarray(lpu_user_tokens_per_s, float)
    x_g = np.nan if gpu_tokens_per_s is None else _arr("gpu_tokens_per_s", gpu_tokens_per_s, lo_open=True)

    out = {}
    out["lpu_capex"] = capex(n_l, _arr("lpu_card_price", lpu_card_price), _arr("lpu_host_price_per_card", lpu_host_price_per_card))
    server_capex = capex(1.0, _arr("gpu_server_price", gpu_server_price), _arr("gpu_network_price_per_server", gpu_network_price_per_server))
    out["gpu_capex"] = n_g * server_capex
    lpu_peak = n_l * (_arr("lpu_card_power", lpu_card_power) + _arr("lpu_host_power_per_card", lpu_host_power_per_card))
    server_power = average_power(_arr("gpu_server_power", gpu_server_power), u, i)
    out["lpu_power"] = average_power(lpu_peak, u, i)
    out["gpu_power"] = n_g * server_power
    out["lpu_opex"] = opex(out["lpu_power"], T, e, pue_, r)
    server_opex = opex(server_power, T, e, pue_, r)
    out["gpu_opex"] = n_g * server_opex
    out["lpu_tco"] = out["lpu_capex"] + out["lpu_opex"]
    out["gpu_tco"] = out["gpu_capex"] + out["gpu_opex"]
    out["lpu_tokens_per_s"] = x_l * np.ones_like(out["lpu_tco"])
    out["gpu_tokens_per_s"] = x_g * np.ones_like(out["gpu_tco"])
    out["lpu_cost_per_token"] = cost_per_token(out["lpu_tco"], x_l, T, u)
    out["gpu_cost_per_token"] = cost_per_token(server_capex + server_opex, x_g, T, u)
    out["lpu_usd_per_mtok"] = out["lpu_cost_per_token"] * 1e6
    out["gpu_usd_per_mtok"] = out["gpu_cost_per_token"] * 1e6
    m = servers_to_match(x_l, x_g, integer=integer_servers) * np.ones_like(out["lpu_tco"])
    out["gpu_servers_matched"] = m
    out["gpu_capex_matched"] = m * server_capex
    out["gpu_opex_matched"] = m * server_opex
    out["gpu_tco_matched"] = out["gpu_capex_matched"] + out["gpu_opex_matched"]
    with np.errstate(divide="ignore", invalid="ignore"):
        for name, (num, den) in RATIOS.items():
            out[name] = out[num] / out[den]
    shape = np.broadcast_shapes(*(np.shape(v) for v in out.values()))
    return {k: np.array(np.broadcast_to(v, shape), float) for k, v in out.items()}


def _check_names(inputs: Mapping) -> None:
    unknown = sorted(set(inputs) - set(INPUTS) - {"integer_servers"})
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
    def of(cls, v: Value, dist: str = "triangular", scale: float = 1.0) -> "Uncertain | float":
        """From a catalog value: its range if it has one, else the plain number."""
        if not v.is_range:
            return v.si * scale
        return cls(v.si * scale, v.low_si * scale, v.high_si * scale, dist, v.cite())

    @classmethod
    def spanning(cls, value: float, low: float, high: float, dist: str = "triangular", source: str = "") -> "Uncertain":
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
    if vary in ("utilisation", "idle_power_fraction"):  # bounded to [0, 1]: step down
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


def as_stated(sheet: str = "as-stated-jia-2024", lpu_chips: float | None = None,
              tokens_per_s: float | None = None) -> dict:
    """The claim's own inputs (``data/prices/as-stated-jia-2024.toml``): ``lpu_chips`` cards
    at the card price and power, against one 8x H100 server, over three years at the rate its
    opex figures imply (all-in, PUE 1), no hosts. The claim assumes both deliver the same
    throughput: give ``tokens_per_s`` to set both sides to it (for per-token figures)."""
    s = load_prices(sheet)
    out = {
        "lpu_chips": float(lpu_chips if lpu_chips is not None else s["count.lpu_cards"].si),
        "lpu_card_price": s["price.card"].si, "lpu_host_price_per_card": 0.0,
        "lpu_card_power": s["power.card"].si, "lpu_host_power_per_card": 0.0,
        "gpu_servers": s["count.gpu_servers"].si, "gpu_server_price": s["price.server"].si,
        "gpu_network_price_per_server": 0.0, "gpu_server_power": s["power.server"].si,
        "energy_price": s["tariff.implied"].si, "pue": 1.0, "facility_rate": 0.0,
        "lifetime": s["time.lifetime"].si, "utilisation": 1.0, "idle_power_fraction": 1.0,
    }
    if tokens_per_s is not None:
        out["gpu_tokens_per_s"] = float(tokens_per_s)
        out["lpu_tokens_per_s"] = float(tokens_per_s) * out["gpu_servers"]
    return out


def as_stated_table(sheet: str = "as-stated-jia-2024", chip_counts=(572, 305, 576)) -> pd.DataFrame:
    """The claim's arithmetic for several card counts at once (one vectorised call): capex,
    power and opex of both sides and their ratios, one row per count."""
    n = np.asarray(chip_counts, float)
    o = run({**as_stated(sheet), "lpu_chips": n})
    cols = ["lpu_capex", "gpu_capex", "capex_ratio", "lpu_power", "gpu_power", "lpu_opex", "gpu_opex", "opex_ratio"]
    return pd.DataFrame({"lpu_cards": n.astype(int), **{c: o[c] for c in cols}})


OPEX_BASES = ("electricity", "colocation", "all-in")


CARD_PRICE_BASES = ("market", "bom")


def best_estimate(lpu_sheet: str = "groq-card", gpu_sheet: str = "nvidia-dgx-h100", site_sheet: str = "us-2023",
                  opex_basis: str = "electricity", years: float = 3.0, dist: str = "triangular",
                  card_price_basis: str = "market", all_in_sheet: str = "as-stated-jia-2024") -> dict:
    """Sourced inputs from ``data/prices``: card and host price and power (LPU sheet), server
    price, network and typical power (GPU sheet), electricity and PUE (site sheet); each with
    a range becomes an :class:`Uncertain` drawn from ``dist``. One GPU server, as the claim.

    ``opex_basis``: ``electricity`` (IT power x PUE x price), ``colocation`` (that plus the
    site's rent per kW), or ``all-in`` (the claim's $200/kW/month, PUE 1). ``card_price_basis``:
    ``market`` (what a buyer pays: the card's price range) or ``bom`` (the card's estimated
    build cost: what Groq pays to serve its own cloud). Chip counts, throughputs,
    utilisation and idle power are the caller's (the notebook's parameters)."""
    if opex_basis not in OPEX_BASES:
        raise CostError(f"opex_basis {opex_basis!r} is not one of {', '.join(OPEX_BASES)}")
    if card_price_basis not in CARD_PRICE_BASES:
        raise CostError(f"card_price_basis {card_price_basis!r} is not one of {', '.join(CARD_PRICE_BASES)}")
    L, G, S = load_prices(lpu_sheet), load_prices(gpu_sheet), load_prices(site_sheet)
    u = lambda v: Uncertain.of(v, dist)  # noqa: E731
    out = {
        "lpu_card_price": u(L["price.unit" if card_price_basis == "market" else "price.unit_bom"]),
        "lpu_host_price_per_card": u(L["price.host_per_unit"]),
        "lpu_card_power": u(L["power.unit"]), "lpu_host_power_per_card": u(L["power.host_per_unit"]),
        "gpu_servers": 1.0, "gpu_server_price": u(G["price.unit"]),
        "gpu_network_price_per_server": u(G["price.network_per_unit"]) if "price.network_per_unit" in G else 0.0,
        "gpu_server_power": u(G["power.unit"]),
        "lifetime": float(years) * YEAR, "utilisation": 1.0, "idle_power_fraction": 1.0,
    }
    if opex_basis == "all-in":
        out.update(energy_price=load_prices(all_in_sheet)["tariff.implied_monthly"].si, pue=1.0, facility_rate=0.0)
    else:
        out.update(energy_price=u(S["tariff.electricity"]), pue=u(S["factor.pue"]),
                   facility_rate=S["tariff.colocation"].si if opex_basis == "colocation" else 0.0)
    return out


def chips(source: str, value: float, *, model: str = "llama-2-70b", device: str = "groq-lpu-v1",
          precision: str = "int8", kv_precision: str = "bf16", batch: float = 1, context: int | None = None,
          unit: int = 8) -> float:
    """The LPU card count: ``value`` when ``source == "parameter"``; with ``"placement"``,
    the fewest cards that hold ``model``'s weights and the KV cache of ``batch`` sequences of
    ``context`` tokens (the model's window by default), in whole nodes of ``unit`` cards
    (:func:`lpulab.placement.need`)."""
    if source == "parameter":
        return float(value)
    if source == "placement":
        from . import placement
        from .workload import Precision

        n = placement.need(catalog.load_model(model), catalog.load_device(device), batch, context,
                           precision=Precision(precision, precision, kv_precision), unit=unit)
        deployed = float(np.asarray(n.deployed))
        if not np.isfinite(deployed):
            raise CostError(f"{model} at batch {batch} does not fit on any number of {device} chips")
        return deployed
    raise CostError(f"chips_source {source!r} is not one of parameter, placement")


def throughput(source: str, value: float, *, row: str = "mlperf40-h100x8-llama2-70b-server-output_tok_s_aggregate",
               mlperf_prompt: int = 300) -> float:
    """A GPU server's aggregate tokens/s: ``value`` when ``source == "parameter"``; with
    ``"perf"``, what the calibrated speed model (:mod:`lpulab.speed`, default calibration)
    predicts at the operating point of measurement ``row`` (its concurrency, prompt and
    output). The prediction is of a row the default calibration fits, so it restates the
    measurement through the model; other rows show how far the model carries."""
    if source == "parameter":
        return float(value)
    if source == "perf":
        from . import speed

        t = speed.targets(catalog.load_measurements("speed"), mlperf_prompt=mlperf_prompt)
        if row not in set(t.id):
            raise CostError(f"no predictable measurement {row!r}; choose from: {', '.join(t.id)}")
        platforms = {"lpu": speed.Platform("groq-lpu-v1", "int8", 8, 576), "gpu": speed.Platform("nvidia-h100-sxm", "fp8", 8, 8)}
        cal = speed.calibrate(t, platforms, speed.DEFAULT_FIT)
        r = t[t.id == row].iloc[0]
        return speed.predict(cal.values, r, platforms)
    raise CostError(f"throughput_source {source!r} is not one of parameter, perf")


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
