"""The Prometheus recorder's label bounds and hold bookkeeping, and the access line's fields (no text)."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry

from services.router import access
from services.router.policy import TierSpec
from services.router.recorder import NULL_RECORDER
from services.router.telemetry import PrometheusRecorder, TeamLabels, denial_kind
from services.router.types import (
    Charge,
    CompletionRequest,
    GenParams,
    Message,
    Prepared,
    Principal,
    Reservation,
    RouteResult,
)

PROMPT = "a very particular prompt about the quince orchard"
TIER = TierSpec(name="local-small", kind="local", rank=0, model="m", threshold=0.0)


def _prep(team: str = "acme/eng") -> Prepared:
    principal = Principal(org_id="acme", team_id=team, user_id="u", key_id="k_1", tenant="acme")
    req = CompletionRequest(messages=(Message("user", PROMPT),), params=GenParams(max_tokens=8), model="auto")
    result = RouteResult(request_id="r1", tier="local-small", model="m", prompt_tokens=5, completion_tokens=7,
                         cost_nano_usd=1_500, savings_nano_usd=9_000)  # fmt: skip
    return Prepared(principal=principal, request=req, request_id="r1", started=0.0, deadline=None, text=PROMPT,
                    vector=np.zeros(0, dtype=np.float32), cache_context={}, cacheable=True, result=result)  # fmt: skip


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_team_labels_are_capped_and_tiers_bounded() -> None:
    teams = TeamLabels(2)
    assert [teams(t) for t in ("a", "b", "c", "a", "")] == ["a", "b", "other", "a", "none"]
    assert TeamLabels(0)("a") == "all"
    registry = CollectorRegistry()
    rec = PrometheusRecorder(registry, ["local-small"], max_teams=1)
    rec.settled(_prep("t1"), TIER, Charge(cost_nano_usd=2_000_000_000, counterfactual_nano_usd=3_000_000_000))
    rec.settled(_prep("t2"), TierSpec(name="gone", kind="local", rank=1, model="m"), None)
    assert _value(registry, "rationer_router_cost_usd_total", tier="local-small", team="t1") == 2.0
    assert (
        _value(registry, "rationer_router_savings_usd_total", tier="local-small", team="t1", mechanism="routing") == 1.0
    )
    # A pending commit counts tokens, not cost; an unknown tier and a team past the cap collapse.
    assert _value(registry, "rationer_router_input_tokens_total", tier="other", team="other") == 5
    assert _value(registry, "rationer_router_cost_usd_total", tier="other", team="other") == 0


def test_a_hold_is_outstanding_until_closed_once() -> None:
    registry = CollectorRegistry()
    rec = PrometheusRecorder(registry, ["local-small"])
    res = Reservation(reservation_id="h1", held_nano_usd=10)
    rec.hold_placed(_prep(), TIER, res)
    assert _value(registry, "rationer_router_holds_outstanding", tier="local-small", team="acme/eng") == 1
    rec.hold_closed(res)
    rec.hold_closed(res)  # a second close (commit after a release attempt) is ignored
    assert _value(registry, "rationer_router_holds_outstanding", tier="local-small", team="acme/eng") == 0


def test_denials_are_classified_by_limit_id() -> None:
    assert denial_kind("budget:key:k_1:usd:monthly") == "budget"
    assert denial_kind("rpm:key:k_1") == denial_kind("tpm:team:acme/eng") == "rate_limit"
    assert denial_kind("queue") == "other"
    NULL_RECORDER.denied(_prep().principal, "x", "rpm:key:k")  # the default records nothing, and never fails


def test_the_access_line_has_ids_and_numbers_never_text() -> None:
    with access.request("http", "r0") as entry:
        access.attach(_prep())
    fields = access.line_fields(entry, "POST", 200)
    assert fields["request_id"] == "r1" and fields["key_id"] == "k_1" and fields["team_id"] == "acme/eng"
    assert (fields["tier"], fields["tokens_in"], fields["tokens_out"], fields["cost_nano_usd"]) == ("local-small", 5, 7,
                                                                                                    1_500)  # fmt: skip
    assert fields["cache"] == "miss" and "latency_ms" in fields
    assert all(PROMPT not in str(v) for v in fields.values())
    access.attach(_prep())  # outside a request: nothing to note, no error
