"""Claim C2: is LPU inference "10x faster" than GPUs, and in which metric?

Each measured row of ``data/measurements/speed.csv`` becomes an operating point that
:mod:`lpulab.perf` can predict: a platform (LPU or GPU deployment), a model, a concurrency
(streams in flight), prompt and output lengths, and a metric. Calibration fits a few
unpublished knobs (collective latency per step, achieved compute fraction) on a declared
subset of rows and reports the error on every row, fitted or not.

Concurrency behind a row: LLMPerf sets it (5); a vendor's single-stream figure is 1; an
MLPerf Server run holds ``aggregate x TPOT`` streams in flight on average (Little's law); an
MLPerf Offline run is modelled at the largest concurrency whose KV cache fits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import catalog, claims, perf, workload
from .roofline import Efficiency

METRIC_COLUMN = {"output_tok_s_per_user": "per_user_tok_s", "output_tok_s_aggregate": "aggregate_tok_s",
                 "tpot_s": "tpot_s", "ttft_s": "ttft_s"}


@dataclass(frozen=True)
class Platform:
    """A deployment recipe: which device, at which precision, split how."""

    device: str
    precision: str                 # weights = activations = KV precision (1 byte: int8 or fp8)
    tensor: int = 8                # chips per pipeline stage
    chips: int | None = None       # None: the fewest multiples of `tensor` that hold the weights
    link: str | None = None

    def chips_for(self, model) -> int:
        if self.chips is not None:
            return self.chips
        dev = catalog.load_device(self.device)
        w = workload.weight_bytes(model, workload.Precision.of(self.precision).weights)
        return int(math.ceil(w / dev.capacity() / self.tensor) * self.tensor)

    def deployment(self, model, hop_latency_s: float, efficiency: Efficiency, step_overhead_s: float = 0.0) -> perf.Deployment:
        dev = catalog.load_device(self.device)
        chips = self.chips_for(model)
        tensor = min(self.tensor, chips)
        return perf.Deployment(dev, chips, pipeline=chips // tensor, tensor=tensor, precision=self.precision,
                               link=self.link, hop_latency_s=hop_latency_s, step_overhead_s=step_overhead_s,
                               efficiency=efficiency)


def targets(measurements: pd.DataFrame, lpu_hardware=("groq-lpu-v1",), gpu_hardware=("nvidia-h100-sxm", "nvidia-h200"),
            vendor_prompt: int = 128, vendor_output: int = 256, mlperf_prompt: int = 300) -> pd.DataFrame:
    """The measured rows lpulab can predict, with the operating point each implies.

    ``vendor_prompt``/``vendor_output``: lengths assumed for a vendor's single-stream figure
    (unstated by the vendor). ``mlperf_prompt``: mean prompt length assumed for MLPerf's
    llama2-70b set (not stated in the result files read).
    """
    df = measurements
    rows = []
    for r in df.itertuples():
        if r.hardware not in lpu_hardware + gpu_hardware or r.metric not in METRIC_COLUMN:
            continue
        platform = "lpu" if r.hardware in lpu_hardware else "gpu"
        conc, prompt, output = r.concurrency, r.input_tokens, r.output_tokens
        if r.scenario == "Server":
            pair = df[(df.source_url.str.replace("/Server/", "/") == r.source_url.replace("/Server/", "/"))
                      & (df.scenario == "Server")]
            agg = pair[pair.metric == "output_tok_s_aggregate"].value
            tpot = pair[pair.metric == "tpot_s"].value
            if agg.empty or tpot.empty:
                continue
            conc = float(agg.iloc[0]) * float(tpot.iloc[0])  # Little's law
            prompt = mlperf_prompt
        elif r.scenario == "Offline":
            conc = np.nan  # the largest concurrency that fits, decided per deployment
            prompt = mlperf_prompt
        elif not conc == conc:  # vendor single-stream figure
            conc, prompt, output = 1.0, vendor_prompt, vendor_output
        rows.append({"id": r.id, "platform": platform, "hardware": r.hardware, "model": r.model,
                     "scenario": r.scenario, "metric": r.metric, "concurrency": conc, "prompt": int(prompt),
                     "output": int(round(output)), "value": float(r.value_si), "confidence": r.confidence,
                     "source": r.source_title})
    return pd.DataFrame(rows)


def predict(params: dict, row, platforms: dict, memory_efficiency: float = 1.0) -> float:
    """Predict one target row. ``params`` holds the calibrated knobs: ``lpu_alpha``,
    ``gpu_alpha`` (latency per collective step or hop, s) and ``gpu_compute`` (achieved
    fraction of the GPU's peak; the LPU's statically scheduled compute is taken at 1.0)."""
    model = catalog.load_model(row.model)
    base = platforms[row.platform]
    plat = Platform(row.hardware, base.precision, base.tensor, base.chips if row.model == "llama-2-70b" or row.hardware != base.device else None, base.link)
    if row.platform == "lpu":
        eff = Efficiency(compute=1.0, memory=memory_efficiency)
        dep = plat.deployment(model, params["lpu_alpha"], eff)
    else:
        eff = Efficiency(compute=min(params["gpu_compute"], 1.0), memory=memory_efficiency)
        dep = plat.deployment(model, params["gpu_alpha"], eff)
    conc = row.concurrency
    if not conc == conc:
        conc = max(perf.max_concurrency(model, dep, row.prompt + row.output, plat.precision), 1)
    out = perf.operating_points(model, dep, float(conc), row.prompt, row.output, plat.precision, as_frame=False)
    return float(np.asarray(out[METRIC_COLUMN[row.metric]]))


def as_stated_ratio(measurements: pd.DataFrame, model: str = "llama-2-70b") -> dict:
    """The claim's arithmetic from published numbers: Groq's stated single-stream speed over
    the median per-user speed of the GPU API providers that LLMPerf measured the same month."""
    df = measurements[(measurements.model == model) & (measurements.metric == "output_tok_s_per_user")]
    groq = df[df.id.str.startswith("groq-stated")].value
    gpus = df[df.hardware.str.startswith("unknown GPU")].value
    if groq.empty or gpus.empty:
        raise ValueError(f"no Groq-stated and LLMPerf GPU rows for {model} in the measurements")
    return {"groq_stated": float(groq.iloc[0]), "gpu_median": float(gpus.median()),
            "gpu_min": float(gpus.min()), "gpu_max": float(gpus.max()),
            "ratio": float(groq.iloc[0] / gpus.median())}


def judge_c2(as_stated: float, lpu_speed: float, gpu_speed_at_batch, provider_concurrency_index: int,
             assumptions: dict) -> claims.Verdict:
    """C2's verdict on per-user decode speed: the LPU at one stream against the GPU at the
    concurrency a provider runs (best estimate); the band spans the GPU from one stream to
    its busiest operating point."""
    ratios = lpu_speed / np.asarray(gpu_speed_at_batch, float)
    return claims.judge("C2", as_stated=as_stated, estimate=float(ratios[provider_concurrency_index]),
                        low=float(ratios.min()), high=float(ratios.max()), assumptions=assumptions)


#: The rows the default calibration fits: Groq's stated single stream, MLPerf H100 Server and Offline.
DEFAULT_FIT = ("groq-stated-2024-02-llama-2-70b", "mlperf40-h100x8-llama2-70b-server-tpot_s",
               "mlperf40-h100x8-llama2-70b-offline-output_tok_s_aggregate")

#: Calibrated knobs: start value and bounds (s for latencies, a fraction for compute).
KNOBS = {"lpu_alpha": (1e-6, (1e-9, 1e-3)), "gpu_alpha": (5e-6, (1e-9, 1e-2)), "gpu_compute": (0.5, (0.01, 1.0))}


def calibrate(target_rows: pd.DataFrame, platforms: dict, fit_ids, memory_efficiency: float = 1.0) -> perf.Calibration:
    """Fit the knobs in :data:`KNOBS` on the rows whose id is in ``fit_ids``; report all rows."""
    missing = sorted(set(fit_ids) - set(target_rows.id))
    if missing:
        raise ValueError(f"rows to fit not among the predictable measurements: {', '.join(missing)}; "
                         f"choose from: {', '.join(target_rows.id)}")
    mask = target_rows.id.isin(list(fit_ids)).to_numpy()
    need = {"lpu_alpha"} if (target_rows[mask].platform == "lpu").any() else set()
    need |= {"gpu_alpha", "gpu_compute"} if (target_rows[mask].platform == "gpu").any() else set()
    x0 = {k: v[0] for k, v in KNOBS.items() if k in need}
    fixed = {k: v[0] for k, v in KNOBS.items() if k not in need}
    cal = perf.calibrate(target_rows, lambda p, r: predict({**fixed, **p}, r, platforms, memory_efficiency),
                         x0, {k: KNOBS[k][1] for k in x0}, fit_mask=mask)
    cal.values = {**fixed, **cal.values}
    return cal


def frontier(platform: Platform, model, knobs: dict, concurrency, prompt: int, output: int, side: str,
             memory_efficiency: float = 1.0) -> pd.DataFrame:
    """The latency-throughput frontier of one platform with calibrated knobs (``side`` is
    "lpu" or "gpu"), over an array of concurrencies, in one call."""
    if side == "lpu":
        dep = platform.deployment(model, knobs["lpu_alpha"], Efficiency(compute=1.0, memory=memory_efficiency))
    else:
        dep = platform.deployment(model, knobs["gpu_alpha"],
                                  Efficiency(compute=min(knobs["gpu_compute"], 1.0), memory=memory_efficiency))
    df = perf.operating_points(model, dep, np.asarray(concurrency, float), prompt, output, platform.precision)
    df["chips"] = dep.chips
    df["aggregate_per_chip"] = df["aggregate_tok_s"] / dep.chips
    return df
