"""Pure-numpy kernels: transformer ops with FLOP/byte counts, a small Llama-like decoder,
sharded execution over simulated SRAM-budgeted chips, and a host bandwidth/compute bench.

Quantised weights (int8, fp8 e4m3, block int4) are multiplied tile by tile
(:mod:`lpulab.kernels.tiled`): read once as stored, expanded into a cache-sized float
buffer, multiplied by BLAS, with exact integer accumulators. :mod:`lpulab.kernels.cache`
keeps notebook 05's slow measurements keyed on what they depend on.

Notebook 05's runs are in :mod:`lpulab.kernels.runs`; :mod:`lpulab.kernels.compare` sets
executed counts and traffic against :mod:`lpulab.workload` and :mod:`lpulab.perf`;
:mod:`lpulab.kernels.profile` places timed operators on the host's roofline.

Optional parts import lazily: :mod:`lpulab.kernels.gguf_model` needs ``gguf``, and
:mod:`lpulab.kernels.llamacpp_ref` needs ``llama-cpp-python`` (the independent reference).
"""

from .model import Decoder, DecoderConfig, Generation, KVCache, Numerics, Step, init_weights, quantize_weights
from .ops import Fp8Weight, Int4Weight, Int8Weight, OpCount, by_op, total
from .sharded import (
    DEFAULT_DEVICE,
    Chip,
    OwnershipError,
    Plan,
    PlanError,
    Shard,
    ShardedDecoder,
    ShardedStep,
    SramBudgetError,
    Tolerance,
    Transfer,
    build_plan,
    chip_sram_bytes,
    plan_from_placement,
    simulated_device,
)

__all__ = [
    "Decoder", "DecoderConfig", "Generation", "KVCache", "Numerics", "Step", "init_weights", "quantize_weights",
    "Int8Weight", "Fp8Weight", "Int4Weight", "OpCount", "by_op", "total",
    "DEFAULT_DEVICE", "Chip", "OwnershipError", "Plan", "PlanError", "Shard", "ShardedDecoder", "ShardedStep",
    "SramBudgetError", "Tolerance", "Transfer", "build_plan", "chip_sram_bytes", "plan_from_placement", "simulated_device",
]
