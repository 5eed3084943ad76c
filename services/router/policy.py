"""Tier choice: complexity score + allow-list + health + budget pressure -> tier.

Tiers are ordered by cost (``rank``). Each tier above the cheapest has an entry
threshold on the classifier's P(needs a strong model): a prompt goes to the
most expensive tier whose threshold its score reaches.

Budget pressure is the heart of token rationing. Instead of a hard wall at
100% spend, thresholds rise smoothly as the tightest budget on the caller's
path drains: with ``r`` the remaining fraction and ``start`` the point where
pressure begins, each threshold ``t`` becomes

    t' = t + (1 - t) * strength * p,   p = clamp((start - r) / start, 0, 1)

so at ``r >= start`` nothing changes, and as ``r -> 0`` thresholds approach
``t + (1 - t) * strength``; with strength 1 only near-certain hard prompts
still reach expensive tiers. Below ``floor_fraction`` the router allows only
the cheapest tier the key may use.

When the classifier ships its score distribution (a :class:`ScoreScale`,
share of traffic at or above each score), pressure works on traffic shares
instead of raw scores, because real scores sit in a narrow band: a tier that
receives share ``s`` of traffic receives ``s * (1 - strength * p)`` under
pressure ``p``, whatever the score's spread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from rationer.errors import NotFound, PermissionDenied, Unavailable


@dataclass(frozen=True)
class TierSpec:
    name: str
    kind: str  # "local" or "frontier"
    rank: int
    model: str
    # Minimum P(needs strong) for a prompt to be sent here; the cheapest tier
    # has 0.0.
    threshold: float = 0.0


class ScoreScale:
    """Monotone map between a score threshold and the share of traffic at or above it."""

    def __init__(self, share_to_threshold: dict[float, float]) -> None:
        points = sorted({0.0: 1.0, 1.0: 0.0, **share_to_threshold}.items())
        self._shares = [p[0] for p in points]
        self._thresholds = [p[1] for p in points]

    def threshold_for(self, share: float) -> float:
        return _interp(min(max(share, 0.0), 1.0), self._shares, self._thresholds)

    def share_at(self, threshold: float) -> float:
        # Thresholds fall as shares rise; interpolate on the reversed lists.
        return _interp(min(max(threshold, 0.0), 1.0), self._thresholds[::-1], self._shares[::-1])


def _interp(x: float, xs: Sequence[float], ys: Sequence[float]) -> float:
    for i in range(1, len(xs)):
        if x <= xs[i]:
            span = xs[i] - xs[i - 1]
            w = 0.0 if span == 0 else (x - xs[i - 1]) / span
            return ys[i - 1] + w * (ys[i] - ys[i - 1])
    return ys[-1]


@dataclass(frozen=True)
class PressureConfig:
    enabled: bool = True
    start_fraction: float = 0.5
    strength: float = 1.0
    floor_fraction: float = 0.05
    scale: ScoreScale | None = None


@dataclass(frozen=True)
class Decision:
    tier: TierSpec
    # Tiers to try after ``tier`` fails, cheapest-compatible order: first the
    # next cheaper ones (graceful degradation), then more expensive ones.
    fallbacks: tuple[TierSpec, ...]
    # The tier the score alone would have picked (before pressure).
    unpressured: TierSpec
    downgraded: bool
    pressure: float
    explicit: bool = False
    thresholds: dict[str, float] = field(default_factory=dict)


def pressure_of(remaining_fraction: float, cfg: PressureConfig) -> float:
    if not cfg.enabled or cfg.start_fraction <= 0:
        return 0.0
    p = (cfg.start_fraction - remaining_fraction) / cfg.start_fraction
    return min(max(p, 0.0), 1.0)


def shifted_threshold(
    threshold: float, pressure: float, strength: float, scale: ScoreScale | None = None
) -> float:
    if threshold <= 0.0:
        return 0.0
    if scale is not None:
        share = scale.share_at(threshold) * (1.0 - strength * pressure)
        return scale.threshold_for(share) if share > 0 else 1.0 + 1e-9
    return threshold + (1.0 - threshold) * strength * pressure


class TierPolicy:
    """Pure decision logic; no I/O, so every rule is unit-testable."""

    def __init__(self, tiers: Sequence[TierSpec], pressure: PressureConfig) -> None:
        if not tiers:
            raise ValueError("at least one tier must be configured")
        self.tiers = tuple(sorted(tiers, key=lambda t: t.rank))
        self.pressure = pressure
        self._by_name = {t.name: t for t in self.tiers}
        self._by_model = {t.model: t for t in self.tiers}

    def resolve(self, requested: str) -> TierSpec | None:
        """Map a requested tier or model name to a tier; None for "auto"."""
        if requested in ("", "auto"):
            return None
        tier = self._by_name.get(requested) or self._by_model.get(requested)
        if tier is None:
            names = ", ".join(t.name for t in self.tiers)
            raise NotFound(f"unknown tier or model {requested!r}; known tiers: {names} (or 'auto')")
        return tier

    def check_access(
        self, requested: str, allowed_tiers: Sequence[str] = ()
    ) -> tuple[tuple[TierSpec, ...], TierSpec | None]:
        """The key's tiers and the explicitly requested one; NOT_FOUND or PERMISSION_DENIED."""
        allowed = self.allowed(allowed_tiers)
        if not allowed:
            raise PermissionDenied("this API key is not allowed to use any configured tier")
        explicit = self.resolve(requested)
        if explicit is not None and explicit not in allowed:
            names = ", ".join(t.name for t in allowed)
            raise PermissionDenied(f"tier {explicit.name!r} is not allowed for this key; allowed: {names}")
        return allowed, explicit

    def allowed(self, allowed_tiers: Sequence[str]) -> tuple[TierSpec, ...]:
        if not allowed_tiers:
            return self.tiers
        return tuple(t for t in self.tiers if t.name in set(allowed_tiers))

    def decide(
        self,
        score: float,
        *,
        allowed_tiers: Sequence[str] = (),
        requested: str = "",
        healthy: frozenset[str] | None = None,
        remaining_fraction: float = 1.0,
    ) -> Decision:
        allowed, explicit = self.check_access(requested, allowed_tiers)
        usable = tuple(t for t in allowed if healthy is None or t.name in healthy)
        if not usable:
            raise Unavailable("no allowed tier is healthy right now; retry shortly")
        p = pressure_of(remaining_fraction, self.pressure)
        thresholds = {
            t.name: shifted_threshold(t.threshold, p, self.pressure.strength, self.pressure.scale) for t in usable
        }
        unpressured = _pick(usable, score, {t.name: t.threshold for t in usable})
        if explicit is not None and explicit in usable:
            chosen = explicit
        elif explicit is not None:
            chosen = _nearest_cheaper(usable, explicit)
        elif remaining_fraction < self.pressure.floor_fraction and self.pressure.enabled:
            chosen = usable[0]
        else:
            chosen = _pick(usable, score, thresholds)
        return Decision(
            tier=chosen,
            fallbacks=_fallbacks(usable, chosen),
            unpressured=unpressured,
            # An explicit tier that is down is served by a cheaper one: say so.
            downgraded=(chosen.rank < unpressured.rank) if explicit is None else chosen is not explicit,
            pressure=p,
            explicit=explicit is not None,
            thresholds=thresholds,
        )

    def cheaper_than(self, tier: TierSpec, allowed_tiers: Sequence[str] = ()) -> tuple[TierSpec, ...]:
        """Allowed tiers cheaper than ``tier``, most expensive first (downgrade order)."""
        return tuple(reversed([t for t in self.allowed(allowed_tiers) if t.rank < tier.rank]))


def _pick(tiers: Sequence[TierSpec], score: float, thresholds: dict[str, float]) -> TierSpec:
    chosen = tiers[0]
    for tier in tiers[1:]:
        if score >= thresholds[tier.name]:
            chosen = tier
    return chosen


def _nearest_cheaper(tiers: Sequence[TierSpec], target: TierSpec) -> TierSpec:
    cheaper = [t for t in tiers if t.rank <= target.rank]
    return cheaper[-1] if cheaper else tiers[0]


def _fallbacks(tiers: Sequence[TierSpec], chosen: TierSpec) -> tuple[TierSpec, ...]:
    # A failing tier first degrades to the next cheaper one (keeps cost down
    # and local tiers are the ones that overload), then to dearer ones.
    cheaper = [t for t in tiers if t.rank < chosen.rank][::-1]
    dearer = [t for t in tiers if t.rank > chosen.rank]
    return (*cheaper, *dearer)
