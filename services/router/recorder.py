"""What the pipeline tells its telemetry, as one small port with a no-op default.

The stages call these at the points where money and routing decisions are
final: a commit settled, a cache hit served, a ledger denial, a fallback, a
hold placed or closed, a wrong-hit report. ``RouterCore(recorder=...)``
takes one; the default records nothing, so the pipeline, its tests and its
fakes never see Prometheus (``telemetry.py`` is the exporter ``wiring``
injects).
"""

from __future__ import annotations

from typing import Protocol

from services.router.policy import TierSpec
from services.router.types import Charge, Prepared, Principal, Reservation


class Recorder(Protocol):
    def settled(self, prep: Prepared, tier: TierSpec, charge: Charge | None) -> None:
        """A model's answer was committed (``charge`` None: journaled, the ledger takes it later)."""

    def cache_hit(self, prep: Prepared) -> None:
        """A cached answer was served and recorded."""

    def denied(self, principal: Principal, tier: str, limit_id: str) -> None:
        """The ledger refused a hold or a hit record on ``limit_id`` (a budget, rate limit or queue)."""

    def embedded(self, principal: Principal, tokens: int, charge: Charge | None) -> None:
        """A billed ``/v1/embeddings`` call was committed (``charge`` None: journaled)."""

    def fallback(self, prep: Prepared, tier: TierSpec) -> None:
        """``tier`` failed and the request moves on to the next tier of its plan."""

    def hold_placed(self, prep: Prepared, tier: TierSpec, res: Reservation) -> None: ...

    def hold_closed(self, res: Reservation) -> None:
        """A hold was committed or released (called once per hold; a repeat is ignored)."""

    def wrong_hit(self, principal: Principal) -> None:
        """A key reported a cached answer as wrong (the first report of it)."""


class NullRecorder:
    """Records nothing: the default of ``RouterCore``."""

    def settled(self, prep: Prepared, tier: TierSpec, charge: Charge | None) -> None:
        pass

    def cache_hit(self, prep: Prepared) -> None:
        pass

    def denied(self, principal: Principal, tier: str, limit_id: str) -> None:
        pass

    def embedded(self, principal: Principal, tokens: int, charge: Charge | None) -> None:
        pass

    def fallback(self, prep: Prepared, tier: TierSpec) -> None:
        pass

    def hold_placed(self, prep: Prepared, tier: TierSpec, res: Reservation) -> None:
        pass

    def hold_closed(self, res: Reservation) -> None:
        pass

    def wrong_hit(self, principal: Principal) -> None:
        pass


NULL_RECORDER: Recorder = NullRecorder()
