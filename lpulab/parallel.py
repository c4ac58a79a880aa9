"""The one parallelism record: how a deployment's chips share a model.

A deployment runs ``replicas`` copies of the model (data parallel). One copy is
``pipeline`` stages, each holding a contiguous run of whole layers. A stage is
``tensor x expert`` chips: attention and dense tensors are cut over ``tensor`` chips (and
repeated over the ``expert`` groups, i.e. attention is data parallel across them), and a
mixture-of-experts layer's routed experts are spread over the ``expert`` groups (each
holding ``experts / expert`` of them, each cut over ``tensor`` chips)::

    chips = replicas * pipeline * tensor * expert

Placement, the serving model, cost and the sharded numpy decoder all take this record.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

FIELDS = ("replicas", "tensor", "pipeline", "expert")


class LayoutError(ValueError):
    """A layout that is not whole numbers >= 1, or chips that do not split into it."""


@dataclass(frozen=True)
class Layout:
    """``replicas x (pipeline stages of tensor x expert chips)``."""

    replicas: int = 1
    tensor: int = 1
    pipeline: int = 1
    expert: int = 1

    def __post_init__(self) -> None:
        for name in FIELDS:
            v = getattr(self, name)
            if isinstance(v, bool) or (not isinstance(v, int) and not (hasattr(v, "__index__") and int(v) == v)):
                raise LayoutError(f"Layout.{name} must be a whole number >= 1, got {v!r}")
            if int(v) < 1:
                raise LayoutError(f"Layout.{name} must be a whole number >= 1, got {v!r}")
            object.__setattr__(self, name, int(v))

    @property
    def stage_chips(self) -> int:
        """Chips in one pipeline stage: ``tensor * expert``."""
        return self.tensor * self.expert

    @property
    def chips_per_replica(self) -> int:
        return self.pipeline * self.stage_chips

    @property
    def chips(self) -> int:
        return self.replicas * self.chips_per_replica

    @classmethod
    def of_chips(cls, chips: int, tensor: int = 1, pipeline: int = 1, expert: int = 1) -> Layout:
        """As many replicas of ``pipeline x tensor x expert`` as ``chips`` hold; the chips must divide evenly."""
        per = int(tensor) * int(pipeline) * int(expert)
        if int(chips) != chips or chips < 1 or per < 1 or int(chips) % per:
            raise LayoutError(f"{chips!r} chips do not split into replicas of pipeline {pipeline} x tensor {tensor}"
                              f" x expert {expert} = {per} chips; choose chips as a multiple of {per}")
        return cls(int(chips) // per, int(tensor), int(pipeline), int(expert))

    def with_(self, **changes) -> Layout:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, int]:
        return {"replicas": self.replicas, "tensor": self.tensor, "pipeline": self.pipeline, "expert": self.expert,
                "chips": self.chips}

    def label(self) -> str:
        """``4 x (TP2 x PP1)``; ``x EP8`` when experts are spread."""
        ep = f" x EP{self.expert}" if self.expert > 1 else ""
        return f"{self.replicas} x (TP{self.tensor} x PP{self.pipeline}{ep})"

    def __str__(self) -> str:
        return self.label()
