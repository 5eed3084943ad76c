"""A small replay through real services, its report checked against the ledger's own books.

Ledger (SQLite), cache, SLM worker (SmolLM2), router with its real embedder and
classifier, frontier tiers on a real llama_cpp.server: all on loopback.
"""

from __future__ import annotations

from pathlib import Path

from rationer.replay.analysis import Replay, policy_lines
from rationer.replay.report import write_report
from rationer.replay.runner import ReplayConfig, run_replay
from rationer.replay.summary import pricing_of, request_of, summarize
from rationer.replay.synth import SynthConfig, load_pools, synthesize
from rationer.replay.trace import Trace
from services.ledger.client import LedgerClient
from tests.integration.stack import running_stack
from testsupport.ledger import ADMIN_TOKEN


async def test_replay_report_matches_ledger_usage(tmp_path: Path, frontier_base_url: str) -> None:
    header, lines = synthesize(SynthConfig(requests=24, seed=5, repeat_rate=0.35, max_tokens=6), load_pools(None))
    trace = Trace(header, tuple(lines))
    async with running_stack(tmp_path, frontier_base_url=frontier_base_url, worker=True) as stack:
        cfg = ReplayConfig(address=stack.router_address, ledger=stack.ledger_address, concurrency=2,
                           admin_token=ADMIN_TOKEN, provision=True, keys_path=tmp_path / "keys.json")  # fmt: skip
        result = await run_replay(trace, cfg)
        org_ids = set(result["run"]["org_ids"].values())
        events = [e for e in await stack.ledger.admin.list_events() if e.org_id in org_ids]
        async with LedgerClient(stack.ledger_address, bearer=ADMIN_TOKEN) as client:
            usage = [row for org in org_ids for row in await client.usage(scope=("org", org))]

    records = result["records"]
    assert [r["id"] for r in records] == [ln.id for ln in lines]  # every request present, once
    ok = [r for r in records if r["status"] == "ok"]
    assert ok and all(r["status"] in ("ok", "denied") for r in records), [r["error"] for r in records]
    assert (tmp_path / "keys.json").stat().st_mode & 0o777 == 0o600

    # Each served request has exactly one usage event in the ledger, of the right kind and cost.
    usage_events = [e for e in events if e.kind in ("charge", "cache_hit")]
    assert len(usage_events) == len(ok)
    for r in ok:
        rid = r["request_id"]
        # A downgraded or fallen-back attempt carries the tier after the id ("<id>#<tier>").
        mine = [e for e in usage_events if request_of(e.request_id) == rid]
        assert len(mine) == 1
        assert (mine[0].kind == "cache_hit") == r["cache_hit"]
        assert (mine[0].cost.nano_usd, mine[0].tier) == (r["cost"], r["tier"])

    # The report's arithmetic against the ledger's Usage totals, to the nano-dollar (so to the cent).
    s = summarize(result)
    assert sum(row.requests for row in usage) == len(ok)
    assert s["policies"]["gateway"]["cost_nano_usd"] == sum(row.cost for row in usage)
    assert round(s["policies"]["gateway"]["cost_usd"], 2) == round(sum(row.cost for row in usage) / 1e9, 2)
    assert s["cache"]["hits"] == sum(row.cache_hits for row in usage)
    assert result["ledger"]["check"]["match"] is True
    # The all-frontier baseline of the served lines is the ledger's own counterfactual.
    rp = Replay(records, pricing_of(result))
    frontier = policy_lines(rp, "all_frontier")
    assert sum(frontier[i][0] for i, r in enumerate(rp.records) if r["status"] == "ok") == sum(
        row.counterfactual_cost for row in usage
    )
    assert s["driver_check"]["ratio"] > 1

    written = write_report(s, tmp_path / "report.md")
    text = Path(written["report"]).read_text()
    assert f"Ledger Usage: {len(ok)} requests" in text and "-> match" in text
