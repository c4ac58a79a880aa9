"""Cost and energy per token against per-user speed: for every platform, the configuration
that serves a model cheapest at each per-user speed target; where the cheapest SRAM
deployment becomes cheaper than the cheapest GPU deployment (the crossover); and the odds
that the SRAM side wins, from a joint Monte Carlo of prices and the speed model.

Platforms and configurations
----------------------------
A *platform* is a device at one precision it runs (by default the narrowest 8-bit format
it lists, else 16-bit: :func:`lpulab.speed.default_precision`), priced by its own system
price sheet (``deployment.prices``). Its *configurations* come from the device's
``[deployment]`` rules only:

- tensor widths: :func:`lpulab.placement.allowed_tensors` (the file's ``tensor_split`` rule
  up to its scale-up domain), thinned to a ladder whose steps grow by ``tensor_step`` (a
  domain of ten thousand chips is not tried width by width), with the width of the fewest
  chips that hold the model always kept;
- pipelines: for each width, the fewest stages that hold the weights and one stream's
  cache (:func:`lpulab.placement.need`), and ``pipeline_steps`` multiples of it, while a
  replica stays within ``max_chips``;
- replicas: the number (up to ``max_replicas``) that wastes the fewest bought chips when
  the deployment is rounded up to the device's deployment unit and priced in its sheet's
  units (``count.chips_per_unit``);
- expert widths (a mixture-of-experts model only, :func:`expert_widths`): the powers of two
  that divide its routed experts, up to the device's scale-up domain, each with the tensor
  widths of the ladder whose stage (``tensor x expert`` chips) stays within that domain, at
  ``expert_pipeline_steps`` multiples of its fewest stages (default: the fewest and twice
  that; the expert widths multiply the layouts, and the time to build them, several times
  over);
- speculative decoding, off or on (:func:`speculation_options`): on with the model's own
  multi-token-prediction heads where its file has them, and with a draft model where
  ``drafts={target: draft}`` names one, each at the sourced defaults of
  ``data/serving.toml`` (k, alpha); a draft that needs chips of its own has them counted;
- concurrency: a log-spaced array of whole streams per replica, up to what the chips' memory
  could hold; the serving model's ``fits`` says which really fit.

Each layout is one knob-free :func:`lpulab.perf.serving_profile` over its concurrency array,
built once; evaluating it with the calibrated knobs (or arrays of drawn knobs) costs a few
array operations.

Cost and energy per token
-------------------------
A configuration bought as ``N`` units of its price sheet serves ``X`` tokens/s (aggregate,
all replicas) at per-user speed ``v`` and time to first token ``tau``. One unit costs over
a lifetime ``T`` at utilisation ``u`` (as :mod:`lpulab.cost` counts it)::

    TCO_u = p_unit + p_host + p_net + Pbar_u T (PUE e + r),  Pbar_u = (w_unit + w_host)(i + (1 - i) u)

so that::

    USD per token    = (N / X) * TCO_u / (u T)
    joules per token = (N / X) * Pbar_u PUE / u

The first factor depends on the configuration and the speed model only, the second on the
platform's prices and the site only. For a target ``s`` (and a TTFT limit ``L``) each
platform's cheapest configuration minimises ``N / X`` over the configurations that fit, with
``v >= s`` and ``tau <= L``: one sort of the platform's points by speed and a running
minimum answer every target at once (a ``searchsorted``).

Crossover and odds
------------------
The crossover is the per-user speed at which the cheapest SRAM deployment becomes cheaper
per token than the cheapest GPU deployment (its first win after the GPU side was the
cheaper; sides by :func:`lpulab.speed.side_of`: where the weights sit, never the vendor),
found on a fine log grid between the lowest and the highest target, with the windows of
speed over which the SRAM side is the cheaper (it may be only where no GPU configuration
is fast enough, or only in a band). The energy crossover is the same for joules per token.
Within a platform both objectives pick the same configuration (each is units per token/s
times a platform constant); across platforms they differ. Its interval, and the map of the
probability that the SRAM side is cheaper, come from a joint Monte Carlo: every uncertain
price-sheet and site input drawn as in :func:`lpulab.cost.sample_inputs`, the speed model's
fitted knobs drawn from their fitted covariance (``knob_rows`` draws per side, each
evaluated exactly; every Monte Carlo draw takes one of them at random), and its residual
scatter drawn as one factor per side and draw that scales every speed of that side's
platforms (as :func:`lpulab.calibration.interval` adds ``sigma^2``; a TTFT limit is checked at the
knob draw's TTFT, unscaled). All draws are seeded; they run in chunks of :data:`CHUNK`.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import calibration, catalog, cost, perf, placement, speculative, speed, units, workload
from .catalog import CatalogError, Device
from .parallel import Layout
from .workload import Precision

OBJECTIVES = ("usd_per_mtok", "joules_per_token")
SIDES = ("sram", "hbm")
AXES = ("model", "card_price", "electricity", "utilisation")
#: The unit each map axis is given in.
AXIS_UNITS = {"model": "", "card_price": "USD per chip", "electricity": "USD/kWh", "utilisation": "fraction"}

CHUNK = 8192          # Monte Carlo draws evaluated at once
_ROW = 100.0          # key offset between the rows of a ladder (-log speeds stay well inside it)
_NONE = 60.0          # the key of a point that meets no target (does not fit, or TTFT too long)


class FrontierError(ValueError):
    """An input the frontier search cannot use; the message says what and what is allowed."""


# --------------------------------------------------------------------------- platforms


@dataclass(frozen=True)
class Platform:
    """A device at one precision, priced by its system price sheet."""

    device: Device
    precision: Precision
    sheet: str
    chips_per_unit: int          # chips in one priced unit (count.chips_per_unit)
    unit_chips: int              # chips in the unit a deployment is rounded up to (deployment.unit)

    @property
    def side(self) -> str:
        return speed.side_of(self.device)

    @property
    def precision_name(self) -> str:
        p = self.precision
        return p.weights if p.weights == p.activations == p.kv else p.label()

    @property
    def label(self) -> str:
        return f"{self.device.id} {self.precision_name}"

    def to_dict(self) -> dict:
        return {"platform": self.label, "device": self.device.id, "precision": self.precision_name, "side": self.side,
                "price_sheet": self.sheet, "chips_per_unit": self.chips_per_unit, "unit_chips": self.unit_chips}


def priced_devices() -> list[str]:
    """Every device in the catalog with a system price sheet (``deployment.prices``)."""
    out = []
    for d in catalog.device_ids():
        try:
            dev = catalog.load_device(d)
            if dev.deployment_rules is not None and dev.deployment.prices:
                out.append(d)
        except (CatalogError, KeyError):
            continue
    return out


def platform(device: str | Device, precision=None) -> Platform:
    """One platform: ``device`` at ``precision`` (default: its own 8-bit format, else 16-bit).
    A device without a price sheet, or a precision it does not run, is a clear error."""
    dev = catalog.load_device(device) if isinstance(device, str) else device
    prec = speed.default_precision(dev) if precision in (None, "") else Precision.of(precision)
    try:
        perf.compute_format(dev, prec)
    except perf.PerfError as exc:
        raise FrontierError(str(exc)) from None
    sheet = dev.price_sheet_id()
    S = catalog.load_prices(sheet)
    if S.category != "system":
        raise FrontierError(f"{dev.id}: deployment.prices names {sheet!r}, a {S.category!r} sheet; a platform needs a "
                            "system sheet")
    return Platform(dev, prec, sheet, int(S["count.chips_per_unit"].si), int(dev.deployment.unit_chips))


def platforms(devices: Sequence[str] | None = None, precisions: Mapping[str, Sequence[str]] | None = None,
              ) -> tuple[list[Platform], list[tuple[str, str]]]:
    """Platforms of ``devices`` (default: every priced device) at their own precision, plus
    ``precisions[device]`` more of each. Returns (platforms, skipped) with skipped as
    (device, why): a device without a price sheet is skipped, not an error."""
    devices = list(priced_devices() if devices is None else devices)
    extra = dict(precisions or {})
    unknown = sorted(set(extra) - set(devices))
    if unknown:
        raise FrontierError(f"precisions names device(s) {', '.join(unknown)} that are not among the devices "
                            f"({', '.join(devices)})")
    known = catalog.device_ids()
    out, skipped, seen = [], [], set()
    for d in devices:
        if d not in known:
            raise FrontierError(f"unknown device {d!r}; known: {', '.join(known)}")
        wanted = [None] + list(extra.get(d, []))
        if isinstance(extra.get(d, []), str):
            raise FrontierError(f"precisions[{d!r}] must be a list of precisions, got {extra[d]!r}")
        for p in wanted:
            try:
                pl = platform(d, p)
            except (CatalogError, workload.WorkloadError) as exc:
                if p is None:
                    skipped.append((d, str(exc).splitlines()[0]))
                    break
                raise FrontierError(f"precisions[{d!r}]: {exc}") from None
            if pl.label not in seen:
                seen.add(pl.label)
                out.append(pl)
    if not out:
        raise FrontierError("no platform to compare: " + "; ".join(f"{d}: {w}" for d, w in skipped))
    return out, skipped


# --------------------------------------------------------------------------- configurations


def _ladder_widths(widths: Sequence[int], step: float, keep: Sequence[int] = ()) -> list[int]:
    """``widths`` thinned so that each kept width is at least ``step`` times the one before
    (the first and ``keep`` always kept)."""
    ws = sorted({int(w) for w in widths})
    if step <= 1 or len(ws) <= 12:
        return ws
    out, nxt = [], 0.0
    for w in ws:
        if w >= nxt:
            out.append(w)
            nxt = w * step
    return sorted(set(out) | {int(k) for k in keep if k in ws})


def best_replicas(chips_per_replica: int, unit_chips: int, chips_per_unit: int, max_replicas: int) -> tuple[int, int, int]:
    """Replicas (1 to ``max_replicas``) that waste the fewest bought chips: the fewest units
    per replica once the chips are rounded up to whole deployment units and priced in whole
    price-sheet units (ties: fewer replicas). Returns (replicas, chips deployed, units)."""
    r = np.arange(1, int(max_replicas) + 1)
    deployed = np.ceil(r * chips_per_replica / unit_chips) * unit_chips
    units_ = np.ceil(deployed / chips_per_unit)
    i = int(np.argmin(units_ / r))
    return int(r[i]), int(deployed[i]), int(units_[i])


def concurrency_grid(top: float, points: int) -> np.ndarray:
    """Whole streams from 1 to ``top``, log-spaced (``points`` at most)."""
    top = max(int(top), 1)
    return np.unique(np.round(np.geomspace(1, top, max(int(points), 2)))).astype(float)


@dataclass(frozen=True)
class Layouts:
    """The layouts of one platform: profiles built, and the ones dropped with why."""

    platform: Platform
    layouts: tuple[Layout, ...]            # each with its best replica count
    chips_deployed: tuple[int, ...]
    units: tuple[int, ...]
    profiles: tuple[perf.ServingProfile | speculative.SpeculativeProfile, ...] = field(repr=False)
    dropped: tuple[str, ...] = ()
    speculative: tuple[str, ...] = ()      # per layout: "off", "mtp k=1", "draft llama-3.1-8b k=4"
    chips: tuple[int, ...] = ()            # per layout: chips in use, a draft's own chips included

    def option(self, j: int) -> str:
        """The speculative decoding of layout ``j`` (``off`` when none)."""
        return self.speculative[j] if self.speculative else "off"

    def chips_of(self, j: int) -> int:
        """Chips layout ``j`` uses (its replicas', a draft's own chips included)."""
        return self.chips[j] if self.chips else self.layouts[j].chips


def _concurrency(prof) -> np.ndarray:
    """The concurrency array of a plain or a speculative serving profile."""
    return prof.base.concurrency if isinstance(prof, speculative.SpeculativeProfile) else prof.concurrency


def expert_widths(model, dev: Device) -> list[int]:
    """The expert-parallel widths searched for ``model`` on ``dev``: 1 for a dense model;
    for a mixture of experts also the powers of two from 2 that divide its routed experts,
    up to the device's scale-up domain (``deployment.scale_up``): a stage of ``tensor x
    expert`` chips is kept within that domain (:func:`platform_layouts`), so its all-to-all
    crosses the scale-up link."""
    if not model.is_moe:
        return [1]
    top = min(int(model.experts), int(dev.deployment.max_tensor))
    out, e = [1], 2
    while e <= top:
        if model.experts % e == 0:
            out.append(e)
        e *= 2
    return out


def speculation_options(model, drafts: Mapping[str, str] | None = None) -> list[tuple[str, speculative.Speculation | None]]:
    """The speculative decoding searched for ``model``: off always; its own MTP heads where
    its file has them (``mtp_layers``), and a draft model where ``drafts`` names one for it
    (``{target: draft}``), each at the sourced defaults of ``data/serving.toml`` (k, alpha).
    Returns (label, :class:`~lpulab.speculative.Speculation` or None for off)."""
    out: list[tuple[str, speculative.Speculation | None]] = [("off", None)]
    if model.mtp_layers:
        k, a = speculative.default("mtp")
        out.append((f"mtp k={k}", speculative.Speculation(k, a)))
    d = dict(drafts or {}).get(model.id)
    if d is not None:
        k, a = speculative.default("draft")
        spec = speculative.Speculation(k, a, draft=catalog.load_model(d))
        try:
            spec.check(model)
        except speculative.SpeculationError as exc:
            raise FrontierError(f"drafts[{model.id!r}] = {d!r}: {exc}") from None
        out.append((f"draft {d} k={k}", spec))
    return out


def check_drafts(drafts) -> dict[str, str]:
    """``drafts`` as ``{target model id: draft model id}``, every id a catalog model's; a
    clear error otherwise."""
    if drafts is None:
        return {}
    if not isinstance(drafts, Mapping):
        raise FrontierError(f"drafts must map a target model id to a draft model id, got {drafts!r}")
    known = catalog.model_ids()
    for k, v in drafts.items():
        for role, m in (("target", k), ("draft", v)):
            if not isinstance(m, str) or m not in known:
                raise FrontierError(f"drafts: unknown {role} model {m!r} (in {k!r}: {v!r}); known models: "
                                    f"{', '.join(known)}")
    return {str(k): str(v) for k, v in drafts.items()}


#: The layout search's defaults (:func:`platform_layouts`).
LAYOUT_DEFAULTS = {"max_chips": 8192, "tensor_step": 2.0, "pipeline_steps": [1, 2, 4], "max_replicas": 16,
                   "concurrency_points": 40, "expert_pipeline_steps": [1, 2]}


def platform_layouts(model, pl: Platform, prompt: int, output: int, *, max_chips: int = 8192,
                     tensor_step: float = 2.0, pipeline_steps: Sequence[int] = (1, 2, 4), max_replicas: int = 16,
                     concurrency_points: int = 40, expert_pipeline_steps: Sequence[int] = (1, 2),
                     drafts: Mapping[str, str] | None = None) -> Layouts:
    """Every layout of ``pl`` serving ``model`` (see the module doc), each as one serving
    profile of a single replica over its concurrency array; for a mixture of experts also
    at each expert width of :func:`expert_widths`, and each with every speculative option
    of :func:`speculation_options` (``drafts``: ``{target: draft}``). An expert-parallel
    layout takes ``expert_pipeline_steps`` multiples of its fewest stages (default: the
    fewest and twice that, not four times: the expert widths multiply the layouts, and with
    them the time to build)."""
    for name, v in (("max_chips", max_chips), ("max_replicas", max_replicas), ("concurrency_points", concurrency_points)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise FrontierError(f"{name} must be a whole number >= 1, got {v!r}")
    if not (tensor_step >= 1):
        raise FrontierError(f"tensor_step must be a number >= 1, got {tensor_step!r}")
    for name, steps in (("pipeline_steps", pipeline_steps), ("expert_pipeline_steps", expert_pipeline_steps)):
        if not steps or any(isinstance(m, bool) or int(m) != m or m < 1 for m in steps):
            raise FrontierError(f"{name} must be whole numbers >= 1, got {steps!r}")
    options = speculation_options(model, check_drafts(drafts))
    dev, prec = pl.device, pl.precision
    ctx = int(prompt) + int(output)
    w_bytes = workload.weight_bytes(model, prec)
    kv_seq = float(workload.kv_bytes(model, 1, ctx, prec.kv))
    cap = dev.capacity(dev.main_tier)
    widths: Sequence[int]
    try:
        widths = placement.allowed_tensors(model, dev)
    except (CatalogError, placement.PlacementError) as exc:
        return Layouts(pl, (), (), (), (), (str(exc).splitlines()[0],))
    fewest = placement.need(model, dev, 1, ctx, precision=prec)
    keep = [int(fewest.tensor)] if np.isfinite(float(fewest.chips)) else []
    widths = [w for w in _ladder_widths(widths, tensor_step, keep) if w <= max_chips]
    items = placement.items_count(model)
    domain = int(dev.deployment.max_tensor)
    triples: list[tuple[int, int, int]] = []
    dropped: list[str] = []
    for e in expert_widths(model, dev):
        for t in widths:
            if e > 1 and t * e > domain:     # an expert-parallel stage stays within the scale-up domain
                continue
            try:
                n = placement.need(model, dev, 1, ctx, precision=prec, tensor_choices=(t,), expert=e)
            except placement.PlacementError as exc:
                msg = str(exc).splitlines()[0]
                if msg not in dropped:
                    dropped.append(msg)
                continue
            if not np.isfinite(float(n.chips)):
                continue
            p0 = int(n.pipeline)
            for m in (pipeline_steps if e == 1 else expert_pipeline_steps):
                p = p0 * int(m)
                if p <= items and t * p * e <= max_chips and (t, p, e) not in triples:
                    triples.append((t, p, e))
    layouts, deployed, units_, profiles, labels, chips = [], [], [], [], [], []
    if not triples:
        dropped.append(f"{model.id} does not fit any layout of at most {max_chips} chips")
    for t, p, e in triples:
        try:
            dep = perf.Deployment(dev, Layout(1, t, p, e), prec)
            top = (t * p * e * cap - w_bytes) / kv_seq if kv_seq > 0 else 1.0
            c = concurrency_grid(min(max(top, 1.0), 1 << 16), concurrency_points)
            plain = perf.serving_profile(model, dep, c, prompt, output)
        except (perf.PerfError, placement.PlacementError, CatalogError, KeyError) as exc:
            msg = str(exc).splitlines()[0]
            if msg not in dropped:
                dropped.append(msg)
            continue
        if not np.any(plain.fits):
            continue
        for label, spec in options:
            prof: perf.ServingProfile | speculative.SpeculativeProfile
            per = t * p * e                  # chips of one replica
            if spec is None:
                prof = plain
            else:
                try:
                    prof = speculative.speculative_profile(model, dep, spec, c, prompt, output, base=plain)
                except (perf.PerfError, placement.PlacementError, CatalogError, KeyError) as exc:
                    msg = f"{label}: {str(exc).splitlines()[0]}"
                    if msg not in dropped:
                        dropped.append(msg)
                    continue
                if not np.any(prof.fits):
                    continue
                per = int(prof.chips)         # a draft's own chips included
            r, dep_chips, u = best_replicas(per, pl.unit_chips, pl.chips_per_unit, max_replicas)
            layouts.append(Layout(r, t, p, e))
            deployed.append(dep_chips)
            units_.append(u)
            profiles.append(prof)
            labels.append(label)
            chips.append(r * per)
    return Layouts(pl, tuple(layouts), tuple(deployed), tuple(units_), tuple(profiles), tuple(dropped), tuple(labels),
                   tuple(chips))


@dataclass(frozen=True)
class Points:
    """Every configuration (layout x concurrency) of every platform, flat, with their speeds
    under ``rows`` sets of knobs (row 0: the calibrated values): arrays ``(rows, points)``."""

    platform: np.ndarray         # (P,) index into the platform list
    layout: np.ndarray           # (P,) index into the configs table
    concurrency: np.ndarray      # (P,) streams over the whole deployment
    units: np.ndarray            # (P,)
    fits: np.ndarray             # (P,)
    per_user: np.ndarray         # (rows, P) tokens/s per user
    aggregate: np.ndarray        # (rows, P) tokens/s, whole deployment
    ttft: np.ndarray             # (rows, P) s

    @property
    def units_per_tps(self) -> np.ndarray:
        """``N / X``: units bought per token/s served (rows, P)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.aggregate > 0, self.units / self.aggregate, np.inf)


@dataclass(frozen=True)
class Candidates:
    """All configurations of all platforms for one model, knob-free (the expensive part,
    built once): :meth:`points` evaluates them under any knobs in a few array operations."""

    model: str
    prompt: int
    output: int
    platforms: tuple[Platform, ...]
    layouts: tuple[Layouts, ...]
    configs: pd.DataFrame = field(repr=False)   # one row per layout: platform, replicas, tensor, pipeline, chips, ...
    skipped: tuple[tuple[str, str], ...] = ()   # (platform, why) for a platform with no layout at all

    def points(self, knobs: Mapping[str, perf.Knobs]) -> Points:
        """Every point under ``knobs`` (side -> :class:`~lpulab.perf.Knobs`, fields scalars or
        arrays of shape ``(rows, 1)``)."""
        plat, lay, conc, uts, fits, pu, agg, ttft = [], [], [], [], [], [], [], []
        j = 0
        for i, L in enumerate(self.layouts):
            k = knobs[L.platform.side]
            plain: dict[int, perf.Prediction] = {}      # a layout's plain prediction, for its speculative options
            for layout, u, prof in zip(L.layouts, L.units, L.profiles):
                if isinstance(prof, speculative.SpeculativeProfile):
                    pred = prof.evaluate(k, plain.get(id(prof.base)))
                else:
                    pred = plain[id(prof)] = prof.evaluate(k)
                c = _concurrency(prof)
                r = layout.replicas
                pu.append(np.atleast_2d(pred.per_user_tok_s))
                agg.append(np.atleast_2d(pred.aggregate_tok_s) * r)
                ttft.append(np.atleast_2d(pred.ttft_s))
                plat.append(np.full(c.shape, i))
                lay.append(np.full(c.shape, j))
                conc.append(c * r)
                uts.append(np.full(c.shape, float(u)))
                fits.append(np.asarray(prof.fits, bool))
                j += 1
        rows = max(a.shape[0] for a in pu) if pu else 1
        stack = lambda xs: np.concatenate([np.broadcast_to(x, (rows, x.shape[-1])) for x in xs], axis=1)  # noqa: E731
        return Points(np.concatenate(plat), np.concatenate(lay), np.concatenate(conc), np.concatenate(uts),
                      np.concatenate(fits), stack(pu), stack(agg), stack(ttft))


def candidates(model, plats: Sequence[Platform], prompt: int = 550, output: int = 150, **layout_kw) -> Candidates:
    """The layouts of every platform in ``plats`` for ``model`` (an id or a Model); keywords
    as :func:`platform_layouts` (``drafts={target: draft}`` among them)."""
    M = catalog.load_model(model) if isinstance(model, str) else model
    for name, v in (("prompt", prompt), ("output", output)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise FrontierError(f"{name} must be a whole number of tokens >= 1, got {v!r}")
    if prompt + output > M.max_context:
        raise FrontierError(f"prompt + output = {prompt + output} tokens exceed {M.id}'s context of {M.max_context}")
    if "drafts" in layout_kw:
        layout_kw = {**layout_kw, "drafts": check_drafts(layout_kw["drafts"])}
    lays, rows, skipped = [], [], []
    for pl in plats:
        L = platform_layouts(M, pl, int(prompt), int(output), **layout_kw)
        if not L.layouts:
            skipped.append((pl.label, "; ".join(L.dropped) or "no layout fits"))
            continue
        lays.append(L)
        for j, (layout, dep, u) in enumerate(zip(L.layouts, L.chips_deployed, L.units)):
            rows.append({"platform": pl.label, "device": pl.device.id, "precision": pl.precision_name, "side": pl.side,
                         "replicas": layout.replicas, "tensor": layout.tensor, "pipeline": layout.pipeline,
                         "expert": layout.expert, "layout": layout.label(), "speculative": L.option(j),
                         "chips": L.chips_of(j), "chips_deployed": dep, "units": u, "price_sheet": pl.sheet})
    if not lays:
        raise FrontierError(f"no platform can serve {M.id}: " + "; ".join(f"{p}: {w}" for p, w in skipped))
    kept = tuple(L.platform for L in lays)
    return Candidates(M.id, int(prompt), int(output), kept, tuple(lays), pd.DataFrame(rows), tuple(skipped))


# --------------------------------------------------------------------------- knobs


def knob_draws(cal: calibration.Calibration, side: str, draws: int, rng: np.random.Generator) -> perf.Knobs:
    """Knobs of one side as arrays of shape ``(1 + draws, 1)``: row 0 the calibrated values,
    then ``draws`` draws of the fitted knobs from their fitted covariance (in log space, kept
    within each knob's allowed range); knobs held at their priors stay there."""
    names = [n for n in cal.fitted if n.startswith(side + ".")]
    arrays = {}
    if names and draws > 0:
        idx = [cal.fitted.index(n) for n in names]
        cov = np.asarray(cal.covariance)[np.ix_(idx, idx)]
        z = rng.multivariate_normal(np.zeros(len(names)), cov, size=int(draws), method="eigh")
        specs = {k.name: k for k in calibration.knob_specs(names)}
        for j, n in enumerate(names):
            v = float(cal.values[n]) * np.exp(z[:, j])
            arrays[n] = np.concatenate([[float(cal.values[n])], np.clip(v, specs[n].low, specs[n].high)])[:, None]
    k = calibration.knobs_for(side, cal.values, arrays)
    return k


def _rng(seed: int, *what) -> np.random.Generator:
    return np.random.default_rng([int(seed)] + [zlib.crc32(str(w).encode()) for w in what])


# --------------------------------------------------------------------------- the search


@dataclass(frozen=True)
class Ladder:
    """One platform's points sorted by per-user speed (fastest first) in every knob row,
    with the running minimum of units per token/s: the cheapest configuration at or above
    every speed, answered for any targets by one ``searchsorted``."""

    keys: np.ndarray      # (rows * P,) -log(speed) + row offset, ascending
    best: np.ndarray      # (rows * P,) running minimum of units per token/s
    arg: np.ndarray       # (rows * P,) index (into all points) of the configuration reaching it
    size: int             # points of this platform (P)
    rows: int

    def query(self, row, speed_target) -> tuple[np.ndarray, np.ndarray]:
        """Units per token/s of the cheapest configuration with per-user speed >= the target
        (inf where none), and its point index (-1 where none); ``row`` and ``speed_target``
        broadcast."""
        s = np.asarray(speed_target, float)
        with np.errstate(divide="ignore"):
            nl = np.where(s > 0, -np.log(np.where(s > 0, s, 1.0)), _NONE)
        return self.query_log(row, nl)

    def query_log(self, row, neg_log_speed, clipped: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`query` with the targets given as ``-log(speed)`` (cheaper on large arrays;
        ``clipped``: the caller keeps them within +-50 already)."""
        nl = np.asarray(neg_log_speed, float) if clipped else np.clip(neg_log_speed, -_NONE + 5, _NONE)
        row = np.asarray(row, np.int64)
        q = nl + _ROW * row
        pos = np.searchsorted(self.keys, q.ravel(), side="right").reshape(q.shape)
        ok = pos > row * self.size
        i = pos - 1
        i[~ok] = 0
        best = self.best[i]
        best[~ok] = np.inf
        arg = self.arg[i]
        arg[~ok] = -1
        return best, arg


def ladder(pts: Points, which: int, ttft_limit: float | None = None) -> Ladder:
    """The :class:`Ladder` of platform ``which``: its points that fit (and meet the TTFT
    limit) sorted by speed in each knob row."""
    sel = np.flatnonzero(pts.platform == which)
    pu = pts.per_user[:, sel]
    a = pts.units_per_tps[:, sel]
    ok = pts.fits[sel][None, :] & (pu > 0) & np.isfinite(a)
    if ttft_limit is not None:
        ok = ok & (pts.ttft[:, sel] <= ttft_limit)
    rows, P = pu.shape
    with np.errstate(divide="ignore"):
        key = np.where(ok, -np.log(np.where(pu > 0, pu, 1.0)), _NONE)
    order = np.argsort(key, axis=1, kind="stable")
    k = np.take_along_axis(key, order, 1) + _ROW * np.arange(rows)[:, None]
    a = np.take_along_axis(np.where(ok, a, np.inf), order, 1)
    best = np.minimum.accumulate(a, axis=1)
    pos = np.arange(P)[None, :]
    new = np.concatenate([np.ones((rows, 1), bool), best[:, 1:] < best[:, :-1]], axis=1)
    at = np.maximum.accumulate(np.where(new, pos, 0), axis=1)
    arg = sel[np.take_along_axis(order, at, 1)]
    return Ladder(k.ravel(), best.ravel(), arg.ravel(), P, rows)


def price_inputs(plats: Sequence[Platform], *, site: str = "us-2023", opex_basis: str = "electricity",
                 years: float = 3.0, utilisation: float = 1.0, distribution: str = "triangular") -> dict:
    """Every price input the platforms need, named ``<sheet>.<input>`` and ``site.<input>``
    (each an :class:`~lpulab.cost.Uncertain` where its sheet gives a range): the sheets'
    unit price, host and network shares, unit and host power and idle fraction, and the
    site's electricity, PUE, rent, lifetime and utilisation (:func:`lpulab.cost.side_inputs`,
    :func:`lpulab.cost.site_inputs`)."""
    if not (0 < float(utilisation) <= 1):
        raise FrontierError(f"utilisation must lie in (0, 1], got {utilisation!r}")
    out = {}
    for sheet in dict.fromkeys(p.sheet for p in plats):
        for k, v in cost.side_inputs("lpu", sheet, 1, dist=distribution).items():
            if k != "lpu_units":
                out[f"{sheet}.{k[4:]}"] = v
    for k, v in cost.site_inputs(site, opex_basis, years, distribution).items():
        out[f"site.{k}"] = v
    out["site.utilisation"] = float(utilisation)
    return out


def price_factors(plats: Sequence[Platform], values: Mapping) -> tuple[np.ndarray, np.ndarray]:
    """Per platform, what one unit costs per token/s served (USD per token, times units per
    token/s gives USD per token) and draws in power per token/s (joules per token, likewise):
    arrays ``(platforms, ...)`` broadcast over array inputs in ``values``."""
    v = {k: np.asarray(x.value if isinstance(x, cost.Uncertain) else x, float) for k, x in values.items()}
    T, u = v["site.lifetime"], v["site.utilisation"]
    e, pue, r = v["site.energy_price"], v["site.pue"], v["site.facility_rate"]
    B, E = [], []
    for p in plats:
        s = p.sheet
        capex = cost.capex(1.0, v[f"{s}.unit_price"], v[f"{s}.host_price_per_unit"] + v[f"{s}.network_price_per_unit"])
        pbar = cost.average_power(v[f"{s}.unit_power"] + v[f"{s}.host_power_per_unit"], u, v[f"{s}.idle_power_fraction"])
        tco = capex + cost.opex(pbar, T, e, pue, r)
        B.append(cost.cost_per_token(tco, 1.0, T, u))
        E.append(cost.energy_per_token(pbar, 1.0, u, pue))
    shape = np.broadcast_shapes(*(np.shape(x) for x in B + E))
    return (np.stack([np.broadcast_to(x, shape) for x in B]), np.stack([np.broadcast_to(x, shape) for x in E]))


def speed_targets(low: float, high: float, n: int = 50) -> np.ndarray:
    """``n`` per-user speed targets (tokens/s per user), log-spaced from ``low`` to ``high``."""
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
        raise FrontierError(f"speed targets need 0 < low <= high, got low {low!r}, high {high!r}")
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise FrontierError(f"the number of speed targets must be a whole number >= 1, got {n!r}")
    return np.geomspace(float(low), float(high), int(n)) if n > 1 else np.array([float(low)])


def _check_targets(targets) -> np.ndarray:
    t = np.asarray(targets, float).ravel()
    if t.size == 0 or np.any(~np.isfinite(t)) or np.any(t <= 0):
        raise FrontierError(f"speed targets must be finite numbers of tokens/s per user > 0, got {targets!r}")
    return np.sort(t)


def search(cands: Candidates, targets, *, knobs: Mapping[str, perf.Knobs], inputs: Mapping,
           ttft_limit: float | None = None) -> pd.DataFrame:
    """Each platform's cheapest configuration (cost per million output tokens, and separately
    energy per token) at every speed target: one row per objective x platform x target with
    the configuration (layout, precision, concurrency, chips, units) and what it achieves
    (per-user speed, aggregate, TTFT, USD per Mtok, J per token). ``feasible`` is False
    where no configuration fits and meets the target; those rows hold NaN."""
    targets = _check_targets(targets)
    if ttft_limit is not None and not (ttft_limit > 0):
        raise FrontierError(f"the time-to-first-token limit must be > 0 seconds, got {ttft_limit!r}")
    pts = cands.points(knobs)
    B, E = price_factors(cands.platforms, inputs)
    return _rows(cands, pts, targets, B.reshape(len(cands.platforms)), E.reshape(len(cands.platforms)), ttft_limit)


def _rows(cands: Candidates, pts: Points, targets, B, E, ttft_limit) -> pd.DataFrame:
    cfg = cands.configs
    a = pts.units_per_tps[0]
    cols = ["objective", "platform", "device", "precision", "side", "target_tok_s", "feasible", "replicas", "tensor",
            "pipeline", "expert", "layout", "speculative", "concurrency", "chips", "chips_deployed", "units",
            "price_sheet", "per_user_tok_s", "aggregate_tok_s", "ttft_s", "usd_per_mtok", "joules_per_token"]
    frames = []
    for i, pl in enumerate(cands.platforms):
        # both objectives are (units per token/s) x a platform constant: one ladder answers both
        _, arg = ladder(_row0(pts), i, ttft_limit).query(0, targets)
        ok = arg >= 0
        j = np.where(ok, arg, 0)
        c = cfg.iloc[pts.layout[j]].reset_index(drop=True)
        f = pd.DataFrame({"platform": pl.label, "device": pl.device.id, "precision": pl.precision_name, "side": pl.side,
                          "target_tok_s": np.asarray(targets, float), "feasible": ok})
        for k in ("replicas", "tensor", "pipeline", "expert", "layout", "speculative", "chips", "chips_deployed",
                  "units", "price_sheet"):
            f[k] = c[k].to_numpy()
        f["concurrency"] = pts.concurrency[j].astype(int)
        f["per_user_tok_s"] = pts.per_user[0, j]
        f["aggregate_tok_s"] = pts.aggregate[0, j]
        f["ttft_s"] = pts.ttft[0, j]
        f["usd_per_mtok"] = a[j] * B[i] * 1e6
        f["joules_per_token"] = a[j] * E[i]
        f = f.astype({k: object for k in cols[7:] if k in f})
        f.loc[~ok, cols[7:]] = None
        for obj in OBJECTIVES:
            frames.append(f.assign(objective=obj))
    out = pd.concat(frames, ignore_index=True)[cols]
    out = out.sort_values(["objective", "platform", "target_tok_s"], key=lambda x: x.map(
        {o: k for k, o in enumerate(OBJECTIVES)}) if x.name == "objective" else x, kind="stable").reset_index(drop=True)
    for k in ("replicas", "tensor", "pipeline", "expert", "concurrency", "chips", "chips_deployed", "units"):
        out[k] = pd.array(out[k], dtype="Int64")  # type: ignore[call-overload]  # pandas-stubs: no Series overload
    for k in ("per_user_tok_s", "aggregate_tok_s", "ttft_s", "usd_per_mtok", "joules_per_token"):
        out[k] = out[k].astype(float)
    return out


def _row0(pts: Points) -> Points:
    return Points(pts.platform, pts.layout, pts.concurrency, pts.units, pts.fits, pts.per_user[:1],
                  pts.aggregate[:1], pts.ttft[:1])


def configurations(cands: Candidates, pts: Points, B, E) -> pd.DataFrame:
    """Every configuration (layout x concurrency) at the calibrated knobs and point prices:
    platform, layout, concurrency, chips, chips deployed, units bought, fits, per-user
    speed, aggregate, TTFT, USD per Mtok and J per token."""
    cfg = cands.configs.iloc[pts.layout].reset_index(drop=True)
    a = pts.units_per_tps[0]
    df = cfg.assign(concurrency=pts.concurrency.astype(int), fits=pts.fits, per_user_tok_s=pts.per_user[0],
                    aggregate_tok_s=pts.aggregate[0], ttft_s=pts.ttft[0])
    df["usd_per_mtok"] = a * np.asarray(B)[pts.platform] * 1e6
    df["joules_per_token"] = a * np.asarray(E)[pts.platform]
    return df


# --------------------------------------------------------------------------- crossover


def crossover_index(sram, gpu) -> np.ndarray:
    """Along the last axis (speeds, ascending): the index at which the SRAM side becomes
    cheaper, i.e. its first win after the GPU side was the cheaper (where a side cannot
    serve a speed its cost is inf; speeds neither side serves are skipped). ``0``: the
    SRAM side is cheaper from the first speed either side serves; ``n`` (the length): it
    is never cheaper. Where it is cheaper only in a window (the GPU side wins again
    faster, or alone serves the fastest speeds), :func:`windows` says where."""
    sram, gpu = np.broadcast_arrays(np.asarray(sram, float), np.asarray(gpu, float))
    n = sram.shape[-1]
    defined = np.isfinite(sram) | np.isfinite(gpu)
    win = defined & (sram < gpu)
    idx = np.arange(n)
    first_win = np.where(win, idx, n).min(axis=-1)
    first_defined = np.where(defined, idx, n).min(axis=-1)
    return np.where((first_win == first_defined) & (first_win < n), 0, first_win)


def windows(sram, gpu, grid) -> list[list[float]]:
    """The speed ranges ``[from, to]`` (grid speeds) over which the SRAM side is cheaper,
    for one pair of curves (speeds neither side serves are skipped)."""
    sram, gpu, grid = (np.asarray(x, float).ravel() for x in (sram, gpu, grid))
    defined = np.isfinite(sram) | np.isfinite(gpu)
    out: list[list[float]] = []
    start: float | None = None
    last = 0.0                     # set with start
    for i in np.flatnonzero(defined):
        if sram[i] < gpu[i]:
            start = grid[i] if start is None else start
            last = grid[i]
        elif start is not None:
            out.append([float(start), float(last)])
            start = None
    if start is not None:
        out.append([float(start), float(last)])
    return out


@dataclass(frozen=True)
class Crossover:
    """The per-user speed above which the cheapest SRAM deployment stays cheaper (per
    million tokens, or per joule) than the cheapest GPU deployment, with its Monte Carlo
    interval. ``value`` is None when there is no crossover within the speed range
    (``status`` says which way); ``low``/``high`` are None where that percentile lies
    beyond the range (``above``: the share of draws with no crossover within it; ``below``:
    the share where the SRAM side is cheaper at every speed of the range)."""

    metric: str
    value: float | None
    status: str
    low: float | None
    high: float | None
    quantiles: tuple[float, float]
    below: float
    above: float
    draws: int
    speed_range: tuple[float, float]
    sram_platform: str = ""      # the cheapest of each side at the crossover ("": none serves that speed)
    gpu_platform: str = ""
    resolution: float = float("nan")
    median: float | None = None
    quartiles: tuple = (None, None)
    windows: tuple = ()           # point: speed ranges [from, to] over which the SRAM side is cheaper
    reach: float | None = None    # point: the fastest speed of the range either side serves

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["quantiles"] = list(self.quantiles)
        d["speed_range"] = list(self.speed_range)
        d["quartiles"] = list(self.quartiles)
        d["windows"] = [list(w) for w in self.windows]
        return d

    def where(self) -> str:
        """Where the SRAM side is cheaper at the point, in words: ``above 166 tok/s per user``,
        ``from 80 to 240 tok/s per user``, ``nowhere in the range``."""
        from .report import fmt

        if not self.windows:
            return "nowhere in the range"
        top = self.reach if self.reach is not None else self.speed_range[1]
        parts = [(f"from {fmt.number(a)} tok/s per user up to the fastest either side serves ({fmt.number(b)})"
                  if b >= top * 0.999 else f"at {fmt.number(a)} tok/s per user" if a == b else
                  f"from {fmt.number(a)} to {fmt.number(b)} tok/s per user") for a, b in self.windows]
        return " and ".join(parts)

    def text(self) -> str:
        """One line for people."""
        from .report import fmt

        what = "cheaper per token" if self.metric == "usd_per_mtok" else "lower in energy per token"
        if self.value is None and self.status == "sram cheaper throughout":
            head = f"the SRAM side is {what} from the slowest speed of the range ({self.where()})"
        elif self.value is None:
            head = (f"the SRAM side is never {what} between {fmt.number(self.speed_range[0])} and "
                    f"{fmt.number(self.speed_range[1])} tok/s per user")
        else:
            head = f"the SRAM side becomes {what} at {fmt.number(self.value)} tok/s per user ({self.where()})"
        if not self.draws:
            return head
        lo = fmt.number(self.low) if self.low is not None else f"below {fmt.number(self.speed_range[0])}"
        hi = fmt.number(self.high) if self.high is not None else f"above {fmt.number(self.speed_range[1])}"
        med = (fmt.number(self.median) if self.median is not None else
               f"{'below' if self.below >= 0.5 else 'above'} the range")
        q = f"P{self.quantiles[0]:g}-P{self.quantiles[1]:g}"
        return f"{head}; over {self.draws} joint draws the median is {med}, {q} {lo} to {hi}"


def _status(idx: int, n: int) -> str:
    return "sram cheaper throughout" if idx == 0 else ("gpu cheaper throughout" if idx >= n else "crosses")


# --------------------------------------------------------------------------- Monte Carlo


@dataclass(frozen=True)
class Draws:
    """One joint Monte Carlo: per platform, each draw's price factors and speed draw."""

    n: int
    seed: int
    values: Mapping = field(repr=False)           # sampled price inputs
    row: Mapping[str, np.ndarray] = field(repr=False)      # side -> (n,) knob row of each draw (1..K)
    scale: Mapping[str, np.ndarray] = field(repr=False)    # side -> (n,) residual speed factor
    knobs: Mapping[str, perf.Knobs] = field(repr=False)    # side -> knobs with rows (1 + K, 1)

    def take(self, start: int, stop: int) -> Draws:
        """Draws ``start`` to ``stop`` (a chunk: the Monte Carlo runs in chunks of
        :data:`CHUNK` draws so that its memory stays bounded)."""
        cut = lambda v: v[start:stop] if isinstance(v, np.ndarray) and v.ndim and v.shape[0] == self.n else v  # noqa: E731
        m = len(range(self.n)[start:stop])
        return Draws(m, self.seed, {k: cut(v) for k, v in self.values.items()},
                     {k: v[start:stop] for k, v in self.row.items()}, {k: v[start:stop] for k, v in self.scale.items()},
                     self.knobs)


def draws(plats: Sequence[Platform], inputs: Mapping, cal: calibration.Calibration, n: int, seed: int,
          knob_rows: int = 64) -> Draws:
    """``n`` seeded joint draws: the price inputs (:func:`lpulab.cost.sample_inputs`), for
    each side ``knob_rows`` draws of its fitted knobs (each Monte Carlo draw takes one at
    random), and one residual factor ``exp(sigma z)`` per side and draw (the model's own
    error on machines like the fitted ones: shared by the platforms of a side)."""
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise FrontierError(f"the number of Monte Carlo draws must be a whole number >= 1, got {n!r}")
    if isinstance(knob_rows, bool) or int(knob_rows) != knob_rows or knob_rows < 1:
        raise FrontierError(f"knob draws must be a whole number >= 1, got {knob_rows!r}")
    n, k = int(n), int(knob_rows)
    vals = cost.sample_inputs(inputs, n, seed)
    knobs, row, scale = {}, {}, {}
    for side in SIDES:
        knobs[side] = knob_draws(cal, side, k, _rng(seed, "knobs", side))
        row[side] = _rng(seed, "knob-row", side).integers(1, k + 1, n)
        scale[side] = np.exp(cal.sigma * _rng(seed, "residual", side).standard_normal(n))
    return Draws(n, int(seed), vals, row, scale, knobs)


def sampled_costs(cands: Candidates, d: Draws, speeds, ttft_limit: float | None = None,
                  pts: Points | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per platform and draw, the cheapest configuration's units per token/s at each speed
    in ``speeds`` under that draw's knobs and residual factor (a factor ``phi`` on every
    speed: the cheapest point at ``s`` is the knob row's at ``s / phi``, its units per
    token/s divided by ``phi``). Returns (units per token/s with shape (platforms, n,
    speeds), each platform's side)."""
    pts = cands.points(d.knobs) if pts is None else pts
    s = np.asarray(speeds, float).ravel()
    if s.size == 0 or np.any(~(s > 0)):
        raise FrontierError(f"speeds must be > 0 tokens/s per user, got {speeds!r}")
    nl = np.clip(-np.log(s), -40.0, 40.0)
    out = np.empty((len(cands.platforms), d.n, s.size))
    for i, pl in enumerate(cands.platforms):
        lad = ladder(pts, i, ttft_limit)
        lphi = np.clip(np.log(d.scale[pl.side]), -5.0, 5.0)
        a, _ = lad.query_log(d.row[pl.side][:, None], nl[None, :] + lphi[:, None], clipped=True)
        a /= np.exp(lphi)[:, None]
        out[i] = a
    return out, np.array([p.side for p in cands.platforms])


def side_minimum(costs: np.ndarray, sides: np.ndarray, side: str) -> np.ndarray:
    """The cheapest platform of one side, per draw and speed (inf where none is feasible)."""
    sel = np.flatnonzero(np.asarray(sides) == side)
    if not sel.size:
        return np.full(costs.shape[1:], np.inf)
    out = np.array(costs[sel[0]], float)
    for i in sel[1:]:
        np.minimum(out, costs[i], out=out)
    return out


def _crossover(metric: str, grid: np.ndarray, point_idx: int, names: tuple[str, str], q,
               idx: np.ndarray | None = None, wins=(), reach: float | None = None) -> Crossover:
    """The :class:`Crossover` at ``grid[point_idx]`` with the percentiles of the draws'
    crossovers (``idx``: each draw's :func:`crossover_index` on ``grid``), if any."""
    n = grid.size
    fin = lambda x: x if math.isfinite(x) and x > grid[0] else None  # noqa: E731
    value = None if point_idx <= 0 or point_idx >= n else float(grid[point_idx])
    lo = q1 = med = q3 = hi = float("nan")
    below = above = float("nan")
    m = 0
    if idx is not None and len(idx):
        vals = np.where(idx <= 0, grid[0], np.where(idx >= n, np.inf, grid[np.clip(idx, 0, n - 1)]))
        with np.errstate(invalid="ignore"):
            lo, q1, med, q3, hi = (float(x) for x in np.percentile(vals, [q[0], 25, 50, 75, q[1]],
                                                                      method="inverted_cdf"))
        below, above, m = float(np.mean(idx <= 0)), float(np.mean(idx >= n)), int(len(idx))
    return Crossover(metric, value, _status(point_idx, n), fin(lo), fin(hi), (float(q[0]), float(q[1])), below, above,
                     m, (float(grid[0]), float(grid[-1])), names[0], names[1],
                     float(grid[1] / grid[0]) if n > 1 else float("nan"), fin(med), (fin(q1), fin(q3)),
                     tuple(tuple(w) for w in wins), reach)


@dataclass(frozen=True)
class Odds:
    """The probability that the cheapest SRAM deployment is cheaper per token than the
    cheapest GPU deployment, over speed targets x one more axis, among the draws in which
    either side meets the target (NaN where fewer than :data:`MIN_SERVED` of them do)."""

    axis: str
    axis_values: tuple            # model ids, or numbers in AXIS_UNITS[axis]
    targets: np.ndarray
    probability: np.ndarray       # (targets, axis values)
    draws: int
    seed: int

    def frame(self) -> pd.DataFrame:
        T, V = np.meshgrid(self.targets, np.arange(len(self.axis_values)), indexing="ij")
        return pd.DataFrame({"target_tok_s": T.ravel(), "axis_value": [self.axis_values[j] for j in V.ravel()],
                             "p_sram_cheaper": self.probability.ravel()})

    def to_dict(self) -> dict:
        return {"axis": self.axis, "axis_unit": AXIS_UNITS[self.axis], "axis_values": list(self.axis_values),
                "draws": self.draws, "seed": self.seed, "rows": self.frame().to_dict(orient="records")}


def _win_counts(sram: np.ndarray, gpu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Over draws (axis 0): how many have the SRAM side cheaper, and how many have either
    side able to serve at all."""
    defined = np.isfinite(sram) | np.isfinite(gpu)
    return ((sram < gpu) & defined).sum(axis=0), defined.sum(axis=0)


#: The least share of draws in which either side must serve a speed for the map to give odds there.
MIN_SERVED = 0.01


def _share(wins: np.ndarray, seen: np.ndarray, n: int) -> np.ndarray:
    """``wins / seen``; NaN where fewer than :data:`MIN_SERVED` of the ``n`` draws have
    either side serving (the odds of a handful of draws are not shown as odds)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(seen >= max(1.0, MIN_SERVED * n), wins / np.maximum(seen, 1), np.nan)


def axis_values(axis: str, low: float | None = None, high: float | None = None, points: int = 9,
                models: Sequence[str] = ()) -> tuple:
    """The values of a map axis: model ids (``model``), else ``points`` values from ``low``
    to ``high`` (log-spaced for prices, even for utilisation)."""
    if axis not in AXES:
        raise FrontierError(f"map axis {axis!r} is not one of {', '.join(AXES)}")
    if axis == "model":
        if not models:
            raise FrontierError("the model axis needs at least one model")
        known = catalog.model_ids()
        bad = [m for m in models if m not in known]
        if bad:
            raise FrontierError(f"unknown model(s) {', '.join(bad)}; known: {', '.join(known)}")
        return tuple(models)
    if low is None or high is None or not (0 < low <= high) or not math.isfinite(high):
        raise FrontierError(f"the {axis} axis needs 0 < low <= high, got {low!r} to {high!r}")
    if axis == "utilisation" and high > 1:
        raise FrontierError(f"utilisation is a fraction in (0, 1], got up to {high!r}")
    n = max(int(points), 1)
    v = np.linspace(low, high, n) if axis == "utilisation" else np.geomspace(low, high, n)
    return tuple(float(x) for x in v)


def default_axis(axis: str, plats: Sequence[Platform], point: Mapping, points: int = 9) -> tuple:
    """The map axis when none is given: the first SRAM platform's price per chip from a
    quarter to four times its sheet's value; electricity 0.02 to 0.40 USD/kWh; utilisation
    0.1 to 1."""
    if axis == "card_price":
        ref = next((p for p in plats if p.side == "sram"), None)
        if ref is None:
            raise FrontierError("the card_price axis needs at least one SRAM platform")
        chip = float(cost.point({"x": point[f"{ref.sheet}.unit_price"]})["x"]) / ref.chips_per_unit
        return axis_values(axis, chip / 4, chip * 4, points)
    if axis == "electricity":
        return axis_values(axis, 0.02, 0.40, points)
    if axis == "utilisation":
        return axis_values(axis, 0.1, 1.0, points)
    raise FrontierError(f"the {axis} axis has no default values")


def axis_inputs(axis: str, value: float, plats: Sequence[Platform], values: Mapping, point: Mapping) -> dict:
    """``values`` (sampled or point price inputs) with the map axis set to ``value``:
    ``electricity`` (USD/kWh) and ``utilisation`` replace the site's; ``card_price`` (USD
    per chip of the first SRAM platform) sets that platform's unit price, and moves every
    other SRAM platform's price by the same factor from its point value."""
    out = dict(values)
    if axis == "electricity":
        out["site.energy_price"] = units.to_si(float(value), "USD/kWh")
    elif axis == "utilisation":
        out["site.utilisation"] = float(value)
    elif axis == "card_price":
        sram = [p for p in plats if p.side == "sram"]
        if not sram:
            raise FrontierError("the card_price axis needs at least one SRAM platform")
        ref = sram[0]
        ref_chip = float(cost.point({"x": point[f"{ref.sheet}.unit_price"]})["x"]) / ref.chips_per_unit
        f = float(value) / ref_chip
        for s in dict.fromkeys(p.sheet for p in sram):
            out[f"{s}.unit_price"] = float(cost.point({"x": point[f"{s}.unit_price"]})["x"]) * f
    return out


# --------------------------------------------------------------------------- measured points


def measured(model: str, plats: Sequence[Platform], inputs: Mapping) -> pd.DataFrame:
    """Published runs of ``model`` on the platforms' devices that give a per-user speed
    (or TPOT) and an aggregate tokens/s (as :func:`lpulab.speed.measured_points` groups
    them), costed like a configuration: chips rounded up to the device's deployment unit,
    units of its price sheet at the point prices. Columns: label, device, chips, units,
    per_user, aggregate, usd_per_mtok, joules_per_token."""
    df = speed.measured_table()
    by_dev: dict[str, int] = {}
    for i, p in enumerate(plats):
        by_dev.setdefault(p.device.id, i)
    d = df[(df.model == model) & df.hardware.isin(list(by_dev))]
    B, E = price_factors(plats, inputs)
    rows = []
    for _url, g in d.groupby("source_url"):
        vals = dict(zip(g.metric, g.value_si))
        per_user = vals.get("output_tok_s_per_user") or (1.0 / vals["tpot_s"] if vals.get("tpot_s") else None)
        agg = vals.get("output_tok_s_aggregate")
        r = g.iloc[0]
        if not (per_user and agg) or not (r.chips == r.chips and r.chips >= 1):
            continue
        i = by_dev[r.hardware]
        pl = plats[i]
        deployed = math.ceil(float(r.chips) / pl.unit_chips) * pl.unit_chips
        u = math.ceil(deployed / pl.chips_per_unit)
        rows.append({"label": f"{r.scenario} {r.date} {r.hardware} x{int(r.chips)}", "device": r.hardware,
                     "chips": int(r.chips), "units": int(u), "per_user": float(per_user), "aggregate": float(agg),
                     "usd_per_mtok": float(u / agg * B[i] * 1e6), "joules_per_token": float(u / agg * E[i]),
                     "source": str(r.source_title)})
    cols = ["label", "device", "chips", "units", "per_user", "aggregate", "usd_per_mtok", "joules_per_token", "source"]
    return pd.DataFrame(rows, columns=cols).drop_duplicates(subset=["device", "per_user", "aggregate"])


# --------------------------------------------------------------------------- the whole analysis


@dataclass(frozen=True)
class Result:
    """What notebook 06 records: every platform's cheapest configuration per speed target
    (cost and energy), the crossovers with their intervals, the odds map, the measured
    points, one sentence per claim, and the options."""

    model: str
    prompt: int
    output: int
    targets: np.ndarray
    ttft_limit: float | None
    platforms: tuple[Platform, ...]
    frontier: pd.DataFrame = field(repr=False)
    configs: pd.DataFrame = field(repr=False)
    crossover: Crossover | None = None
    energy_crossover: Crossover | None = None
    odds: Odds | None = None
    measured: pd.DataFrame | None = field(default=None, repr=False)
    skipped: tuple = ()
    inputs: Mapping = field(default_factory=dict, repr=False)
    sentences: Mapping[str, str] = field(default_factory=dict)
    options: Mapping = field(default_factory=dict)
    calibrated: Mapping[str, bool] = field(default_factory=dict)

    def platform_table(self) -> pd.DataFrame:
        """One row per platform: side, price sheet, units, configurations searched, whether
        a measurement of its device calibrates the serving model."""
        n = self.configs.groupby("platform").layout.nunique()
        return pd.DataFrame([{**p.to_dict(), "layouts": int(n.get(p.label, 0)),
                              "configurations": int((self.configs.platform == p.label).sum()),
                              "calibrated_device": self.calibrated.get(p.label, False)} for p in self.platforms])

    def table(self, objective: str = "usd_per_mtok", every: int = 7) -> pd.DataFrame:
        """The cheapest configuration of each platform at every ``every``-th target (and the
        last): target, platform, layout, streams, chips, units, per-user speed, TTFT, USD per
        Mtok, J per token."""
        c = self.curve(objective)
        keep = set(self.targets[::every]) | {self.targets[-1]}
        c = c[c.target_tok_s.isin(keep)]
        return c[["target_tok_s", "platform", "layout", "speculative", "concurrency", "chips", "units",
                  "per_user_tok_s", "ttft_s", "usd_per_mtok", "joules_per_token"]].reset_index(drop=True)

    def curve(self, objective: str = "usd_per_mtok") -> pd.DataFrame:
        """The cheapest configuration of each platform at every target (feasible rows only)."""
        if objective not in OBJECTIVES:
            raise FrontierError(f"objective {objective!r} is not one of {', '.join(OBJECTIVES)}")
        f = self.frontier
        return f[(f.objective == objective) & f.feasible].reset_index(drop=True)

    def cheapest(self, objective: str = "usd_per_mtok") -> pd.DataFrame:
        """Per target, the cheapest platform of each side (target, side, platform, value)."""
        c = self.curve(objective)
        i = c.groupby(["target_tok_s", "side"])[objective].idxmin()
        return c.loc[i.to_numpy(), ["target_tok_s", "side", "platform", "layout", "speculative", "concurrency",
                                    objective]].reset_index(drop=True)

    @property
    def headline(self) -> str | None:
        """The name of the recorded number the index shows (the crossover), or None."""
        return "crossover_tok_s" if self.crossover is not None and self.crossover.value is not None else None

    def to_dict(self) -> dict:
        c, e = self.crossover, self.energy_crossover
        d = {"model": self.model, "prompt": self.prompt, "output": self.output,
             "targets_tok_s": [float(x) for x in self.targets], "ttft_limit_s": self.ttft_limit,
             "platforms": [p.to_dict() | {"calibrated_device": self.calibrated.get(p.label, False)}
                           for p in self.platforms],
             "skipped": [{"platform": p, "why": w} for p, w in self.skipped],
             "frontier": self.frontier.to_dict(orient="records"),
             "crossover": c.to_dict() if c else None, "energy_crossover": e.to_dict() if e else None,
             "odds": self.odds.to_dict() if self.odds else None,
             "measured": self.measured.to_dict(orient="records") if self.measured is not None else [],
             "claim_sentences": dict(self.sentences), "options": dict(self.options),
             "configurations_evaluated": int(len(self.configs))}
        if c is not None and c.value is not None:
            d["crossover_tok_s"] = c.value
        if c is not None and c.low is not None:
            d["crossover_low_tok_s"] = c.low
        if c is not None and c.high is not None:
            d["crossover_high_tok_s"] = c.high
        if e is not None and e.value is not None:
            d["energy_crossover_tok_s"] = e.value
        return d


def _cheapest(plats, costs, sides, side) -> str:
    """The label of the cheapest platform of ``side`` at one speed, or "" when none serves it."""
    c = np.where(sides == side, costs, np.inf)
    i = int(np.argmin(c))
    return plats[i].label if np.isfinite(c[i]) else ""


def point_knobs(cal: calibration.Calibration) -> dict[str, perf.Knobs]:
    """Each side's calibrated knobs."""
    return {side: calibration.knobs_for(side, cal.values) for side in SIDES}


def analyse(model: str, devices: Sequence[str] | None = None, *, precisions: Mapping | None = None,
            targets=(5.0, 1000.0, 50), ttft_limit: float | None = None, prompt: int = 550, output: int = 150,
            site: str = "us-2023", opex_basis: str = "electricity", years: float = 3.0, utilisation: float = 1.0,
            distribution: str = "triangular", samples: int = 10_000, knob_rows: int = 64, seed: int = 0,
            map_axis: str = "card_price", map_values: Sequence | None = None, map_range: Sequence | None = None,
            map_models: Sequence[str] = (), grid_points: int = 120, quantiles=(2.5, 97.5),
            cutoff: str = speed.DEFAULT_CUTOFF, layout_kw: Mapping | None = None, with_measured: bool = True,
            prebuilt: Candidates | None = None, drafts: Mapping[str, str] | None = None) -> Result:
    """The frontier of ``model`` on ``devices`` (default every priced device) at the speed
    targets (``(low, high, n)`` log-spaced, or an array), its crossovers with their
    Monte Carlo intervals (``quantiles`` of ``samples`` joint draws; ``samples=0``: the
    point only, no interval and no map), and the map of the probability that the SRAM side
    is cheaper over the targets x ``map_axis``: ``map_values`` (model ids for ``model``,
    numbers in :data:`AXIS_UNITS` otherwise), or ``map_models`` for the model axis and
    ``map_range = (low, high, points)`` for the others (default :func:`default_axis`).
    ``prebuilt``: the :class:`Candidates` of the same model and platforms, when built already.
    ``drafts``: ``{target model: draft model}``: a target named there is also searched with
    speculative decoding by that draft (k and alpha: the defaults of ``data/serving.toml``);
    a model with its own MTP heads is searched with them whether or not it is named."""
    if isinstance(targets, tuple) and len(targets) == 3:
        tg = speed_targets(*targets)
    else:
        tg = _check_targets(targets)
    if map_axis not in AXES:
        raise FrontierError(f"map axis {map_axis!r} is not one of {', '.join(AXES)}")
    if ttft_limit is not None and not (ttft_limit > 0 and math.isfinite(ttft_limit)):
        raise FrontierError(f"the time-to-first-token limit must be a finite number of seconds > 0 (or None), "
                            f"got {ttft_limit!r}")
    if len(quantiles) != 2 or not (0 <= quantiles[0] < quantiles[1] <= 100):
        raise FrontierError(f"quantiles must be two percentiles 0 <= low < high <= 100, got {quantiles!r}")
    if isinstance(samples, bool) or int(samples) != samples or samples < 0:
        raise FrontierError(f"samples must be a whole number >= 0, got {samples!r}")
    if map_values is None:
        if map_axis == "model" and map_models:
            map_values = axis_values("model", models=list(map_models))
        elif map_axis != "model" and map_range is not None:
            map_values = axis_values(map_axis, *map_range)
    cal, measured_devices, _ = speed.calibrate(cutoff)
    lk = dict(layout_kw or {})
    if drafts is not None:
        lk["drafts"] = check_drafts(drafts)
    if prebuilt is None:
        plats, skipped = platforms(devices, precisions)
        cands = candidates(model, plats, prompt, output, **lk)
    else:
        cands, skipped = prebuilt, []
    plats = list(cands.platforms)
    skipped = list(skipped) + list(cands.skipped)
    inputs = price_inputs(plats, site=site, opex_basis=opex_basis, years=years, utilisation=utilisation,
                          distribution=distribution)
    d = draws(plats, inputs, cal, samples, seed, knob_rows) if samples else None
    pts = cands.points(d.knobs if d else point_knobs(cal))
    B, E = price_factors(plats, inputs)
    B, E = B.reshape(len(plats)), E.reshape(len(plats))
    frontier = _rows(cands, pts, tg, B, E, ttft_limit)
    configs = configurations(cands, _row0(pts), B, E)
    grid = np.geomspace(tg[0], tg[-1], max(int(grid_points), 2)) if tg[-1] > tg[0] else tg
    sides = np.array([p.side for p in plats])
    cross = energy = odds = None
    if {"sram", "hbm"} <= set(sides):
        # the point: calibrated knobs (row 0), point prices
        a0 = np.stack([ladder(_row0(pts), i, ttft_limit).query(0, grid)[0] for i in range(len(plats))])
        metrics = ("usd_per_mtok", "joules_per_token")
        idx = {m: np.empty(d.n, np.int64) for m in metrics} if d is not None else {}
        for start in range(0, d.n if d is not None else 0, CHUNK):
            assert d is not None   # the loop runs only with draws
            dc = d.take(start, start + CHUNK)
            A, _ = sampled_costs(cands, dc, grid, ttft_limit, pts)
            for m, f in zip(metrics, price_factors(plats, dc.values)):
                cd = A * np.broadcast_to(f, (len(plats), dc.n))[:, :, None]
                idx[m][start:start + dc.n] = crossover_index(side_minimum(cd, sides, "sram"),
                                                             side_minimum(cd, sides, "hbm"))
        out = []
        for metric, f0 in zip(metrics, (B, E)):
            pc = a0 * f0[:, None]
            s0, g0 = side_minimum(pc, sides, "sram"), side_minimum(pc, sides, "hbm")
            i0 = int(crossover_index(s0, g0))
            served = np.flatnonzero(np.isfinite(s0) | np.isfinite(g0))
            at = min(i0, grid.size - 1)
            names = (_cheapest(plats, pc[:, at], sides, "sram"), _cheapest(plats, pc[:, at], sides, "hbm"))
            out.append(_crossover(metric, grid, i0, names, quantiles, idx.get(metric), windows(s0, g0, grid),
                                  float(grid[served[-1]]) if served.size else None))
        cross, energy = out
        if d is not None:
            odds = _odds(model, plats, cands, d, tg, inputs, map_axis, map_values, ttft_limit, prompt, output, lk, pts)
    meas = measured(cands.model, plats, inputs) if with_measured else None
    calibrated = {p.label: p.device.id in measured_devices for p in plats}
    opts = {"devices": list(dict.fromkeys(p.device.id for p in plats)), "precisions": dict(precisions or {}),
            "site": site, "opex_basis": opex_basis, "years": years, "utilisation": utilisation,
            "distribution": distribution, "samples": int(samples), "knob_draws": int(knob_rows), "seed": int(seed),
            "map_axis": map_axis, "grid_points": int(grid.size), "quantiles": list(quantiles),
            "calibration_cutoff": cal.cutoff, "calibration_sigma": float(cal.sigma),
            "layout_search": {**LAYOUT_DEFAULTS, **lk}}
    res = Result(cands.model, int(prompt), int(output), tg, ttft_limit, tuple(plats), frontier, configs, cross, energy,
                 odds, meas, tuple(skipped), inputs, {}, opts, calibrated)
    return _with_sentences(res)


def _odds(model, plats, cands, d: Draws, tg, inputs, axis, values, ttft_limit, prompt, output, lk,
          pts: Points | None = None) -> Odds:
    point = dict(inputs)
    sides = np.array([p.side for p in plats])
    if axis == "model":
        models = tuple(values) if values else (cands.model,)
        axis_values(axis, models=models)
        per_model = [cands if m == cands.model else candidates(m, plats, prompt, output, **lk) for m in models]
        knobbed = [pts if (cm is cands and pts is not None) else cm.points(d.knobs) for cm in per_model]
        wins = np.zeros((tg.size, len(models)))
        seen = np.zeros((tg.size, len(models)))
        for start in range(0, d.n, CHUNK):
            dc = d.take(start, start + CHUNK)
            Bd = np.broadcast_to(price_factors(plats, dc.values)[0], (len(plats), dc.n))
            for j, (cm, pts) in enumerate(zip(per_model, knobbed)):
                A, s_ = sampled_costs(cm, dc, tg, ttft_limit, pts)
                keep = [list(plats).index(p) for p in cm.platforms]
                c = A * Bd[keep][:, :, None]
                w_, n_ = _win_counts(side_minimum(c, s_, "sram"), side_minimum(c, s_, "hbm"))
                wins[:, j] += w_
                seen[:, j] += n_
        return Odds(axis, models, tg, _share(wins, seen, d.n), d.n, d.seed)
    vals = tuple(float(v) for v in values) if values is not None else default_axis(axis, plats, point)
    if not vals or any(not (math.isfinite(v) and v > 0) for v in vals):
        raise FrontierError(f"the {axis} axis needs numbers > 0, got {values!r}")
    pts = cands.points(d.knobs) if pts is None else pts
    wins = np.zeros((tg.size, len(vals)))
    seen = np.zeros((tg.size, len(vals)))
    for start in range(0, d.n, CHUNK):
        dc = d.take(start, start + CHUNK)
        A, _ = sampled_costs(cands, dc, tg, ttft_limit, pts)
        for j, v in enumerate(vals):
            Bd, _ = price_factors(plats, axis_inputs(axis, v, plats, dc.values, point))
            c = A * np.broadcast_to(Bd, (len(plats), dc.n))[:, :, None]
            w_, n_ = _win_counts(side_minimum(c, sides, "sram"), side_minimum(c, sides, "hbm"))
            wins[:, j] += w_
            seen[:, j] += n_
    return Odds(axis, vals, tg, _share(wins, seen, d.n), d.n, d.seed)


# --------------------------------------------------------------------------- claims, in one sentence each


def _where_ratio(x: np.ndarray, r: np.ndarray, level: float) -> float | None:
    """The first speed (log-interpolated) at which the ratio ``r`` crosses ``level``."""
    ok = np.isfinite(r) & (r > 0)
    x, r = x[ok], r[ok]
    if x.size < 2:
        return None
    s = np.sign(np.log(r) - math.log(level))
    for i in range(x.size - 1):
        if s[i] == 0:
            return float(x[i])
        if s[i] != s[i + 1]:
            t = (math.log(level) - math.log(r[i])) / (math.log(r[i + 1]) - math.log(r[i]))
            return float(math.exp(math.log(x[i]) + t * (math.log(x[i + 1]) - math.log(x[i]))))
    return None


def side_ratio(res: Result, per: str) -> pd.DataFrame:
    """Per target where both sides are feasible: the cheapest SRAM and GPU deployments and
    the ratio SRAM / GPU of ``per``: ``capex`` (hardware per token/s served, C3's terms),
    ``usd_per_mtok`` or ``joules_per_token`` (C4's terms: the energy, hence electricity,
    per token)."""
    c = res.curve("usd_per_mtok")
    if c.empty:
        return pd.DataFrame(columns=["target_tok_s", "sram", "gpu", "ratio"])
    if per == "capex":
        price = {p.label: float(cost.point({"x": res.inputs[f"{p.sheet}.unit_price"]})["x"])
                 + float(cost.point({"x": res.inputs[f"{p.sheet}.host_price_per_unit"]})["x"])
                 + float(cost.point({"x": res.inputs[f"{p.sheet}.network_price_per_unit"]})["x"]) for p in res.platforms}
        c = c.assign(capex=c.units * c.platform.map(price) / c.aggregate_tok_s)
        col = "capex"
    else:
        col = per
        if per == "joules_per_token":
            c = res.curve("joules_per_token")
    i = c.groupby(["target_tok_s", "side"])[col].idxmin()
    best = c.loc[i.to_numpy(), ["target_tok_s", "side", "platform", col]]
    w = best.pivot(index="target_tok_s", columns="side")
    if ("platform", "sram") not in w or ("platform", "hbm") not in w:
        return pd.DataFrame(columns=["target_tok_s", "sram", "gpu", "ratio"])
    w = w.dropna()
    return pd.DataFrame({"target_tok_s": w.index.to_numpy(float), "sram": w[("platform", "sram")].to_numpy(),
                         "gpu": w[("platform", "hbm")].to_numpy(),
                         "ratio": (w[(col, "sram")] / w[(col, "hbm")]).to_numpy(float)})


def _with_sentences(res: Result) -> Result:
    """One sentence per claim (C2, C3, C4) saying at which per-user speeds it holds on this
    frontier and where it does not; :class:`Result` with ``sentences`` filled."""
    from dataclasses import replace

    from .report import fmt

    claims_ = catalog.load_claims()
    out = {}
    c = res.curve("usd_per_mtok")
    if c.empty or not ({"sram", "hbm"} <= set(c.side)):
        return res
    ok = res.configs[res.configs.fits.astype(bool)]
    if res.ttft_limit is not None:
        ok = ok[ok.ttft_s <= res.ttft_limit]
    # each side's fastest configuration (the fewest chips among those within 1 % of the top speed)
    fast = {s: g[g.per_user_tok_s >= 0.99 * g.per_user_tok_s.max()].sort_values(["chips", "per_user_tok_s"],
                                                                               ascending=[True, False]).iloc[0]
            for s, g in ok.groupby("side")}
    if not {"sram", "hbm"} <= set(fast):
        return res
    fs, fg = fast["sram"], fast["hbm"]
    lay = lambda x: x.layout if x.speculative == "off" else f"{x.layout}, speculative {x.speculative}"  # noqa: E731
    k2 = claims_["C2"].claimed
    ratio = fs.per_user_tok_s / fg.per_user_tok_s
    below = fs.per_user_tok_s / k2
    s2 = (f"'{k2:g}x faster' holds only against GPU deployments run at or below {fmt.number(below)} tok/s per "
          f"user: the fastest {fs.platform} configuration ({lay(fs)}) reaches {fmt.number(fs.per_user_tok_s)} tok/s "
          f"per user, the fastest {fg.platform} one ({lay(fg)}) {fmt.number(fg.per_user_tok_s)}, "
          f"{fmt.ratio(ratio)} apart")
    if res.model == claims_["C2"].as_stated.get("model"):
        try:
            lfl = speed.like_for_like()
            pr = fs.per_user_tok_s / lfl["gpu_median"]
            s2 += (f"; against the {fmt.number(lfl['gpu_median'])} tok/s median of the GPU providers measured beside "
                   f"Groq it is {fmt.ratio(pr)}")
        except Exception:  # the measurement table lacks the claim's rows (a user data folder)
            pass
    out["C2"] = s2 + f" ({res.model}, calibrated serving model)."
    for cid, per, what, said in (("C3", "capex", "hardware cost per token/s served", "the hardware cost"),
                                 ("C4", "joules_per_token", "energy (so electricity) per token", "the operating cost")):
        r = side_ratio(res, per)
        k = claims_[cid].claimed
        if r.empty:
            continue
        at = _where_ratio(r.target_tok_s.to_numpy(), r.ratio.to_numpy(), k)
        lo, hi = float(r.ratio.min()), float(r.ratio.max())
        rng = (f"between {fmt.number(r.target_tok_s.iloc[0])} and {fmt.number(r.target_tok_s.iloc[-1])} tok/s per "
               f"user the SRAM side's {what} is {fmt.ratio(lo)} to {fmt.ratio(hi)} the GPU side's")
        if at is not None:
            s = f"'{fmt.ratio(k)} {said}' holds near {fmt.number(at)} tok/s per user, not at other speeds: {rng}"
        else:
            s = f"'{fmt.ratio(k)} {said}' holds at no per-user speed of the range: {rng}"
        x = res.crossover if cid == "C3" else res.energy_crossover
        if x is not None and x.windows:
            s += (f"; per token the SRAM side is the cheaper {x.where()}" if cid == "C3" else
                  f"; the SRAM side uses less energy per token {x.where()}")
        out[cid] = s + f" ({res.model}, each side's cheapest configuration at the same per-user speed)."
    return replace(res, sentences=out)
