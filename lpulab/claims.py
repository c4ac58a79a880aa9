"""The claim ledger: what a claim's own assumptions give, the best estimate, its band, a verdict.

A claim in ``data/claims.toml`` has a claimed value, a comparison (``at-least`` for "over
20x", ``approximately`` for "38x") and a relative tolerance. A value *meets* the claim when

- at-least:       value >= claimed * (1 - tolerance)
- approximately:  |value / claimed - 1| <= tolerance

The verdict has two parts. ``reproduces``: the claim's own inputs give the claimed number.
``holds``: judged on the band [low, high] around the best estimate against the interval of
values that meet the claim (``[claimed (1 - tolerance), inf)`` for at-least,
``claimed (1 -/+ tolerance)`` for approximately): "holds" when the band lies inside it,
"does not hold" when the band and the interval do not overlap, and "depends on
assumptions" when they overlap in part.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .catalog import Claim, load_claims

HOLDS, FAILS, DEPENDS = "holds", "does not hold", "depends on assumptions"


def tolerance_interval(claim: Claim) -> tuple[float, float]:
    """The values that meet the claim: ``[claimed (1 - tol), inf)`` for at-least,
    ``[claimed (1 - tol), claimed (1 + tol)]`` for approximately."""
    lo = claim.claimed * (1.0 - claim.tolerance)
    return (lo, float("inf")) if claim.comparison == "at-least" else (lo, claim.claimed * (1.0 + claim.tolerance))


def meets(claim: Claim, value: float) -> bool:
    if claim.comparison == "at-least":
        return value >= claim.claimed * (1.0 - claim.tolerance)
    return abs(value / claim.claimed - 1.0) <= claim.tolerance


@dataclass(frozen=True)
class Verdict:
    claim: str
    metric: str
    claimed: float
    comparison: str
    tolerance: float
    as_stated: float
    estimate: float
    low: float
    high: float
    reproduces: bool
    holds: str
    assumptions: dict = field(default_factory=dict)
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def summary(self) -> str:
        rep = "reproduced" if self.reproduces else "not reproduced"
        return (f"{self.claim}: claimed {self.comparison} {self.claimed:g}x; as stated {self.as_stated:.3g}x "
                f"({rep}); best estimate {self.estimate:.3g}x [{self.low:.3g}, {self.high:.3g}] -> {self.holds}")


def judge(claim: Claim | str, as_stated: float, estimate: float, low: float, high: float,
          assumptions: dict | None = None, note: str = "") -> Verdict:
    """Judge a claim from its as-stated value, the best estimate and the band around it."""
    if isinstance(claim, str):
        claim = load_claims()[claim]
    as_stated, estimate, low, high = (float(x) for x in (as_stated, estimate, low, high))
    if not low <= estimate <= high:
        raise ValueError(f"{claim.id}: the estimate {estimate:g} lies outside its band [{low:g}, {high:g}]")
    lo_ok, hi_ok = tolerance_interval(claim)
    if lo_ok <= low and high <= hi_ok:
        holds = HOLDS
    elif high < lo_ok or low > hi_ok:
        holds = FAILS
    else:
        holds = DEPENDS
    return Verdict(
        claim=claim.id, metric=claim.metric, claimed=claim.claimed, comparison=claim.comparison,
        tolerance=claim.tolerance, as_stated=as_stated, estimate=estimate, low=low, high=high,
        reproduces=meets(claim, as_stated), holds=holds, assumptions=dict(assumptions or {}), note=note,
    )
