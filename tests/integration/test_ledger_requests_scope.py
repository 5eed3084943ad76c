"""Property: the Requests RPC never returns an event outside the caller's scope, and pages lose none.

Random events (many sharing a timestamp, so paging must break ties by id)
go in through ``record_event``; random callers (every role, on keys of two
orgs and three teams) ask with random filters and page sizes over real
gRPC, on SQLite and PostgreSQL. Every row must be in the caller's scope and
match the filters, the pages together must be exactly the matching events
(none twice, none lost), and a filter outside the scope must be refused.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rationer.errors import NotFound, PermissionDenied
from services.ledger.admin_client import LedgerAdminClient
from services.ledger.models import UsageEvent
from services.ledger.sql.rollups import record_event
from testsupport.ledger import RunningLedger, make_key, running_ledger, settings_for

T0 = 1_900_000_000_000_000
KINDS = ["charge", "embedding", "cache_hit", "denied", "soft_alert", "wrong_hit"]
SHOWN = {"charge", "embedding", "cache_hit", "denied"}
_ids = itertools.count()


@dataclass
class World:
    loop: asyncio.AbstractEventLoop
    led: RunningLedger
    owners: list[tuple[str, str, str, str]]  # key, org, team, user of the keys events belong to
    callers: dict[str, tuple[str, str, str, str]]  # name -> secret, role, org, team
    events: list[UsageEvent] = field(default_factory=list)


async def _setup(led: RunningLedger) -> tuple[list[tuple[str, str, str, str]], dict[str, tuple[str, str, str, str]]]:
    owners, callers = [], {}
    for org, team, email in (("o1", "t1", "a@x"), ("o1", "t2", "b@x"), ("o2", "t1", "c@x")):
        k = await make_key(led.admin, org=org, team=team, email=email)
        owners.append((k.key_id, k.org_id, k.team_id, k.user_id))
        for role in ("viewer", "member", "finops", "admin"):
            c = await led.admin.create_key(user_id=k.user_id, role=role)
            callers[f"{role}@{k.team_id}"] = (c.secret, role, k.org_id, k.team_id)
    return owners, callers


@pytest.fixture(params=["sqlite", "postgres"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    dsn = request.getfixturevalue("pg_dsn") if request.param == "postgres" else ""
    loop = asyncio.new_event_loop()
    stack = AsyncExitStack()
    led = loop.run_until_complete(stack.enter_async_context(running_ledger(settings_for(request.param, tmp_path, dsn))))
    owners, callers = loop.run_until_complete(_setup(led))
    yield World(loop, led, owners, callers)
    loop.run_until_complete(stack.aclose())
    loop.close()


event_st = st.tuples(st.integers(0, 2), st.sampled_from(KINDS), st.integers(0, 15), st.sampled_from(["s", "f"]),
                     st.booleans(), st.sampled_from([200, 499, 429]))  # fmt: skip
filter_st = st.fixed_dictionaries({}, optional={
    "team_id": st.sampled_from(["o1/t1", "o1/t2", "o2/t1"]), "org_id": st.sampled_from(["o1", "o2"]),
    "key": st.integers(0, 2), "tier": st.sampled_from(["s", "f"]), "cache": st.sampled_from(["hit", "miss"]),
    "status": st.sampled_from([200, 429, 499]),
})  # fmt: skip


def _event(w: World, spec: tuple[int, str, int, str, bool, int]) -> UsageEvent:
    owner, kind, t, tier, hit, status = spec
    key, org, team, user = w.owners[owner]
    n = next(_ids)
    return UsageEvent(f"e_p{n:06d}", T0 + t, kind, f"rq{n}", org, team, user, key, "", tier, "m", 1, 1, 1, 2,
                      hit, 5, 1, status=status)  # fmt: skip


def _in_scope(role: str, org: str, team: str, ev: UsageEvent) -> bool:
    return role in ("admin", "finops") or (ev.org_id == org if role == "member" else ev.team_id == team)


def _matches(f: dict[str, object], key_id: str, ev: UsageEvent) -> bool:
    return (ev.kind in SHOWN and ev.team_id == f.get("team_id", ev.team_id) and ev.org_id == f.get("org_id", ev.org_id)
            and ev.key_id == (key_id or ev.key_id) and ev.tier == f.get("tier", ev.tier)
            and ev.status == f.get("status", ev.status)
            and ("cache" not in f or ev.cache_hit == (f["cache"] == "hit")))  # fmt: skip


def _refused(role: str, org: str, team: str, f: dict[str, object]) -> bool:
    if role in ("admin", "finops"):
        return False
    if role == "member":
        return f.get("org_id", org) != org or str(f.get("team_id", org)).split("/")[0] != org
    return f.get("team_id", team) != team or f.get("org_id", org) != org


async def _pages(c: LedgerAdminClient, size: int, filters: dict[str, object], total: int) -> list[str]:
    seen, cursor = [], ""
    for _ in range(total // size + 2):  # more pages than that would repeat rows
        page = await c.list_requests(page_size=size, cursor=cursor, **filters)  # type: ignore[arg-type]
        assert len(page.requests) <= size
        seen += [r.event.event_id for r in page.requests]
        cursor = page.next_cursor
        if not cursor:
            return seen
    raise AssertionError("paging did not end")


async def _ask(w: World, caller: str, f: dict[str, object], size: int) -> None:
    secret, role, org, team = w.callers[caller]
    key_id = w.owners[int(f["key"])][0] if "key" in f else ""  # type: ignore[call-overload]
    filters = {k: v for k, v in f.items() if k != "key"} | ({"key_id": key_id} if key_id else {})
    key_owner = next((o for o in w.owners if o[0] == key_id), None)
    async with LedgerAdminClient(w.led.target, secret) as c:
        if _refused(role, org, team, f):
            with pytest.raises(PermissionDenied):
                await c.list_requests(**filters)  # type: ignore[arg-type]
            return
        if key_owner is not None and role in ("member", "viewer") and not _in_scope(role, org, team, UsageEvent(
                "", 0, "", "", key_owner[1], key_owner[2], "", "", "", "", "", 0, 0, 0, 0, False, 0, 0)):  # fmt: skip
            with pytest.raises(NotFound):
                await c.list_requests(**filters)  # type: ignore[arg-type]
            return
        got = await _pages(c, size, filters, len(w.events))
    by_id = {e.event_id: e for e in w.events}
    assert all(_in_scope(role, org, team, by_id[i]) for i in got), "an event outside the caller's scope"
    want = sorted((e for e in w.events if _in_scope(role, org, team, e) and _matches(f, key_id, e)),
                  key=lambda e: (e.time_us, e.event_id), reverse=True)  # fmt: skip
    assert got == [e.event_id for e in want]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(specs=st.lists(event_st, max_size=12), caller=st.sampled_from(
    [f"{r}@{t}" for r in ("viewer", "member", "finops", "admin") for t in ("o1/t1", "o1/t2", "o2/t1")]),
    f=filter_st, size=st.integers(1, 7))  # fmt: skip
def test_requests_never_leave_the_callers_scope(
    world: World, specs: list[tuple[int, str, int, str, bool, int]], caller: str, f: dict[str, object], size: int
) -> None:  # fmt: skip
    evs = [_event(world, s) for s in specs]

    def op():  # type: ignore[no-untyped-def]
        for ev in evs:
            yield from record_event(ev, None, "", ev.event_id if ev.kind == "cache_hit" else None)

    world.loop.run_until_complete(world.led.deps.ledger.store.write(op))
    world.events += evs
    world.loop.run_until_complete(_ask(world, caller, f, size))
