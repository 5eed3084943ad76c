"""Seed data for the console stack: orgs, teams, keys of every role, budgets, and usage over days.

All through the ledger's real RPCs (admin service; Authorize, Commit,
RecordCacheHit, RecordWrongHit as the router calls them), with the shared
FixedClock advanced between calls, so events land on the days they say.
Names a page must escape ride in on the free-text fields: a project tag and
a model name.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from rationer.platform.clock import FixedClock
from services.ledger.admin_client import LedgerAdminClient
from services.ledger.calls import CommitCall
from services.ledger.client import LedgerClient
from testsupport.ledger import TestKey, cache_hit

SCRIPT_PROJECT = "<script>alert('p')</script>"
IMG_MODEL = '"><img src=x onerror=alert(1)>'
DAYS = 12
DAY_S = 86_400.0

# nano-USD per million tokens (input, output); "frontier" is the savings reference.
PRICES: dict[str, tuple[str, int, int]] = {
    "local-small": ("smollm2", 10_000_000, 20_000_000),
    "frontier-mini": ("smollm2-mini", 150_000_000, 600_000_000),
    "frontier": ("smollm2-frontier", 2_500_000_000, 10_000_000_000),
}


@dataclass
class Seeded:
    keys: dict[str, TestKey]  # admin, finops, viewer, member (another org), bob, batch
    teams: dict[str, str]  # eng, fin, ops -> team id
    orgs: dict[str, str]  # acme, globex -> org id


async def _people(admin: LedgerAdminClient) -> Seeded:
    orgs = {n: (await admin.create_org(n)).id for n in ("acme", "globex")}
    teams = {"eng": (await admin.create_team(orgs["acme"], "eng")).id,
             "fin": (await admin.create_team(orgs["acme"], "fin")).id,
             "ops": (await admin.create_team(orgs["globex"], "ops")).id}  # fmt: skip
    keys: dict[str, TestKey] = {}
    for name, team, role in (("admin", "eng", "admin"), ("finops", "fin", "finops"), ("viewer", "eng", "viewer"),
                             ("bob", "eng", "member"), ("member", "ops", "member")):  # fmt: skip
        user = await admin.create_user(teams[team], f"{name}@{'globex' if team == 'ops' else 'acme'}.test")
        k = await admin.create_key(user_id=user.id, role=role, name=f"{name} key")
        keys[name] = TestKey(k.key.key_id, k.secret, orgs["globex" if team == "ops" else "acme"], teams[team], user.id)
    batch = await admin.create_key(team_id=teams["fin"], service_account="batch", name="nightly batch")
    keys["batch"] = TestKey(batch.key.key_id, batch.secret, orgs["acme"], teams["fin"], "")
    for tier, (model, inp, out) in PRICES.items():
        await admin.set_price(tier, model, inp, out, is_reference=tier == "frontier")
    await admin.set_budget("team", teams["eng"], unit="usd", period="monthly", hard_limit=50_000_000_000,
                           soft_fraction=0.8)  # fmt: skip
    await admin.set_budget("org", orgs["globex"], unit="usd", period="monthly", hard_limit=20_000_000_000)
    return Seeded(keys, teams, orgs)


async def _charge(data: LedgerClient, key: TestKey, tier: str, tokens: tuple[int, int], rid: str,
                  project: str = "", model: str = "") -> None:  # fmt: skip
    model = model or PRICES[tier][0]
    res = await data.authorize(key.key_id, tier, prompt_tokens=tokens[0], max_completion_tokens=tokens[1],
                               model=model, project=project, request_id=rid)  # fmt: skip
    # A plausible latency (local tiers answer faster than frontier ones), so the Requests page shows one.
    latency = (250 if tier.startswith("local") else 900) + tokens[1] // 4
    await data.commit(CommitCall(res.reservation_id, key.key_id, tokens[0], tokens[1], model=model, tier=tier,
                                 latency_ms=latency))  # fmt: skip


async def _day(data: LedgerClient, s: Seeded, day: int, clock: FixedClock) -> None:
    plan = [("bob", "local-small", "search"), ("bob", "frontier", ""), ("batch", "frontier-mini", SCRIPT_PROJECT),
            ("member", "local-small", "ops-bot"), ("admin", "frontier-mini", "search")]  # fmt: skip
    for i, (who, tier, project) in enumerate(plan):
        for n in range((3, 1, 1, 2, 1)[i] + (day + i) % 3):
            tokens = (8_000 + 1_480 * ((day * 5 + i * 3 + n) % 11), 2_000 + 520 * ((day + i + n) % 7))
            model = IMG_MODEL if (who, n, day % 4) == ("batch", 0, 1) else ""
            await _charge(data, s.keys[who], tier, tokens, f"d{day}-{i}-{n}", project, model)
            clock.advance(60)
    key = s.keys["bob"]
    for n in range(day % 3 + 1):
        rid = f"hit-{day}-{n}"
        hit = cache_hit(key.key_id, rid, project="search", tier="frontier", model=PRICES["frontier"][0],
                        prompt_tokens=12_000, completion_tokens=3_200)  # fmt: skip
        await data.record_cache_hit(replace(hit, latency_ms=6 + n))
        if (day, n) in ((2, 0), (7, 1)):
            await data.record_wrong_hit(key.key_id, rid)
        clock.advance(30)


async def seed(admin: LedgerAdminClient, data: LedgerClient, clock: FixedClock) -> Seeded:
    """People, prices, budgets, then DAYS days of usage; the clock ends on the last seeded day."""
    s = await _people(admin)
    for day in range(DAYS):
        await _day(data, s, day, clock)
        if day < DAYS - 1:
            clock.advance(DAY_S - clock.at % DAY_S + 9 * 3600)  # 09:00 the next day
    return s
