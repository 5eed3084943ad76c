"""The tier plan: which tiers a request may try, in what order, as a pure value.

Computed once per request from the policy, the complexity score, the key's
allow-list, tier health and budget headroom. The pipeline walks it; nothing
here calls back into the core or does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rationer.errors import Internal, RationerError, ResourceExhausted, Unavailable
from services.router.policy import TierPolicy
from services.router.ports import ModelBackend
from services.router.substitute import hide_addresses
from services.router.types import TierPlan

# Errors after which the next tier may succeed. Anything else (bad input,
# deadline, cancel) is the caller's and is returned as is.
FALLBACK_ERRORS: tuple[type[RationerError], ...] = (Unavailable, ResourceExhausted, Internal)


def healthy_tiers(policy: TierPolicy, backends: Mapping[str, ModelBackend]) -> frozenset[str]:
    return frozenset(t.name for t in policy.tiers if backends[t.name].healthy(t.model))


def plan_tiers(
    policy: TierPolicy,
    score: float,
    *,
    allowed_tiers: Sequence[str],
    requested: str,
    healthy: frozenset[str],
    remaining_fraction: float,
    downgrade_on_exhaustion: bool,
    substitute: bool = True,
) -> TierPlan:
    """The chosen tier and its fallbacks, and the tiers a budget denial may downgrade to.

    Without ``substitute`` (the key's policy, substitute.py), a named tier is
    the whole plan: no fallback, no downgrade; UNAVAILABLE when it is not ready.
    """
    named = policy.resolve(requested)
    if named is not None and not substitute:
        policy.check_access(requested, allowed_tiers)
        if named.name not in healthy:
            raise Unavailable(_named_down(named.name, requested, "is not ready (its backend cannot be reached)"))
        return TierPlan(tiers=(named,), complexity=score, named=named.name)
    decision = policy.decide(
        score,
        allowed_tiers=allowed_tiers,
        requested=requested,
        healthy=healthy,
        remaining_fraction=remaining_fraction,
    )
    usable = tuple(t for t in policy.allowed(allowed_tiers) if t.name in healthy)
    return TierPlan(
        tiers=(decision.tier, *decision.fallbacks),
        downgrades=usable if downgrade_on_exhaustion else (),
        complexity=score,
        downgraded=decision.downgraded,
    )


def exhausted(last: RationerError | None, named: str = "", requested: str = "") -> RationerError:
    """The error a request gets once no tier of its plan is left (``named``: the plan was that tier alone)."""
    if last is None:
        return Unavailable("no tier could serve the request")
    if isinstance(last, ResourceExhausted):
        return last
    if named:
        return Unavailable(_named_down(named, requested or named, f"failed: {hide_addresses(last.message)}"))
    return Unavailable(f"every allowed tier failed; last error: {hide_addresses(last.message)}")


def _named_down(tier: str, requested: str, why: str) -> str:
    asked = f"tier {tier!r}" if requested == tier else f"model {requested!r} (tier {tier!r})"
    return (f"{asked} is unavailable: it {why}. It was named, so no other tier was used in its place; "
            "retry later, name another tier, or send model 'auto'")  # fmt: skip
