"""Pure-numpy kernels: transformer ops with FLOP/byte counts, a small Llama-like decoder,
sharded execution over simulated SRAM-budgeted chips, and a host bandwidth/compute bench.

Notebook 05's runs are in :mod:`lpulab.kernels.runs`; :mod:`lpulab.kernels.compare` sets
executed counts and traffic against :mod:`lpulab.workload` and :mod:`lpulab.perf`;
:mod:`lpulab.kernels.profile` places timed operators on the host's roofline.

Optional parts import lazily: :mod:`lpulab.kernels.gguf_model` needs ``gguf``, and
:mod:`lpulab.kernels.llamacpp_ref` needs ``llama-cpp-python`` (the independent reference).
"""

from .model import Decoder, DecoderConfig, Generation, KVCache, Numerics, Step, init_weights, quantize_weights
from .ops import Int8Weight, OpCount, by_op, total
from .sharded import (
    LPU_SRAM_BYTES,
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
    plan_from_placement,
    simulated_device,
)

__all__ = [
    "Decoder", "DecoderConfig", "Generation", "KVCache", "Numerics", "Step", "init_weights", "quantize_weights",
    "Int8Weight", "OpCount", "by_op", "total",
    "LPU_SRAM_BYTES", "Chip", "OwnershipError", "Plan", "PlanError", "Shard", "ShardedDecoder", "ShardedStep",
    "SramBudgetError", "Tolerance", "Transfer", "build_plan", "plan_from_placement", "simulated_device",
]
