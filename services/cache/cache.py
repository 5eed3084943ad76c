"""The semantic cache: exact fast path, vector search per (tenant, context)
namespace on a backend (``services.cache.backend``: embedded FAISS or shared
pgvector), false-hit guard, TTL, per-tenant LRU capacity.

No gRPC here; the servicer converts messages and delegates. Every method runs
on the event loop thread; ONNX inference runs on the batcher's worker thread.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import structlog
from prometheus_client import Counter

from rationer.embedding.batcher import MicroBatcher
from rationer.errors import InvalidArgument, NotFound, Unavailable
from rationer.platform.clock import SYSTEM_CLOCK, Clock
from services.cache import guard, keys, validation
from services.cache.backend import VectorBackend
from services.cache.faiss_backend import EmbeddedFaissBackend
from services.cache.feedback import FeedbackBook
from services.cache.index import IndexConfig
from services.cache.pair_features import HARD_RULES
from services.cache.store import Entry, NewEntry
from services.cache.types import (
    CacheStats,
    EntryMetadata,
    LookupQuery,
    LookupResult,
    StoreCommand,
    StoreResult,
    WrongHitResult,
)
from services.cache.verifier import Verifier

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class CachePolicy:
    min_similarity: float = 0.5
    reworded_similarity: float = 0.6
    guard: bool = True
    candidates: int = 4
    default_ttl_s: float = 24 * 3600.0
    max_ttl_s: float = 30 * 24 * 3600.0
    capacity_per_tenant: int = 100_000
    max_text_bytes: int = 64 * 1024
    max_answer_bytes: int = 256 * 1024


@dataclass
class _Counters:
    hits: int = 0
    misses: int = 0
    guard_rejections: int = 0
    evictions: int = 0
    wrong_hits: int = 0


WRONG_HITS = Counter("rationer_cache_wrong_hits_total", "cached answers reported wrong by the caller", ["tenant"])


class SemanticCache:
    def __init__(
        self,
        batcher: MicroBatcher,
        *,
        data_dir: Path | None = None,
        policy: CachePolicy | None = None,
        index_config: IndexConfig | None = None,
        clock: Clock = SYSTEM_CLOCK,
        verifier: Verifier | None = None,
        feedback: FeedbackBook | None = None,
        backend: VectorBackend | None = None,
    ) -> None:
        self._batcher = batcher
        # None: the lexical guard and the two thresholds decide (the legacy path).
        self._verifier = verifier
        self._policy = policy or CachePolicy()
        self._clock = clock
        if data_dir is not None:
            data_dir.mkdir(parents=True, exist_ok=True)
        # Entries and vectors: embedded FAISS unless a shared backend is given.
        self._backend: VectorBackend = backend or EmbeddedFaissBackend(data_dir, index_config)
        # Receipts persist beside the entries (so feedback survives a restart),
        # or in the shared backend (so any replica accepts the report).
        receipts = data_dir / "receipts.sqlite3" if data_dir else None
        self._feedback = feedback or FeedbackBook(clock, path=receipts, log=self._backend.receipt_log())
        self._counters: defaultdict[str, _Counters] = defaultdict(_Counters)
        # Tenants seen to have stored something: a backend never forgets a
        # tenant, so a positive answer may be kept (a lookup for any other
        # tenant is NOT_FOUND, which the router treats as a plain miss).
        self._known: set[str] = set()
        self.ready = False

    @property
    def policy(self) -> CachePolicy:
        return self._policy

    @property
    def verifier(self) -> Verifier | None:
        return self._verifier

    @property
    def backend(self) -> VectorBackend:
        return self._backend

    @property
    def loaded_from(self) -> str:
        """ "snapshot" | "rebuild" | "empty" (embedded) or "shared", for logs and tests."""
        return self._backend.loaded_from

    # ---- start / stop -------------------------------------------------------

    async def start(self) -> None:
        """Load the indexes (snapshot or rebuild) or connect, off the event loop."""
        await self._backend.start()
        self.ready = True

    def save_snapshot(self) -> None:
        self._backend.checkpoint()

    def close(self, *, save: bool = True) -> None:
        self._backend.close(save=save and self.ready)
        self._feedback.close()

    def _require_ready(self) -> None:
        if not self.ready:
            raise Unavailable("the cache index is still loading; retry shortly")

    # ---- lookup -------------------------------------------------------------

    async def lookup(self, q: LookupQuery) -> LookupResult:
        self._require_ready()
        tenant = validation.tenant(q.tenant)
        text = validation.text(q.text, self._policy.max_text_bytes)
        vector = validation.vector(q.vector)
        threshold = validation.similarity(q.min_similarity) or self._policy.min_similarity
        ctx = q.context.key
        await self._require_known(tenant)
        now = self._clock.time()
        entry = await self._backend.exact(tenant, ctx, keys.exact_key(ctx, text), now)
        if entry is not None:
            return await self._served(q, await self._hit(entry, 1.0, "exact", now))
        if q.exact_only:
            return LookupResult(hit=False)  # the caller follows up with a full lookup
        if vector is None:
            vector = await self._batcher.embed(text)
        candidates = await self._backend.search(tenant, ctx, vector, self._policy.candidates, now)
        result = await self._semantic(candidates, (tenant, ctx), text, threshold, q.disable_guard, now)
        if result.hit:
            return await self._served(q, result)
        counters = self._counters[tenant]
        counters.misses += 1  # also an unknown context: a miss, not an error
        if result.guard_rejection:
            counters.guard_rejections += 1
        return result

    async def _semantic(
        self,
        candidates: list[tuple[Entry, float]],
        namespace: tuple[str, str],
        text: str,
        threshold: float,
        disable_guard: bool,
        now: float,
    ) -> LookupResult:
        """The guard or verifier, here on every backend's candidates alike."""
        reworded_threshold = max(threshold, self._policy.reworded_similarity)
        use_guard = self._policy.guard and not disable_guard
        rejection, best = "", 0.0
        for entry, sim in candidates:
            best = max(best, sim)
            if sim < threshold:
                break  # results are sorted best first
            if entry.expires_at <= now or (entry.tenant, entry.ctx) != namespace:
                # A backend must never return these; isolation must not rest on it.
                log.error("backend returned an entry outside the namespace or expired; skipped",
                          entry_id=entry.entry_id)  # fmt: skip
                continue
            if not use_guard:
                return await self._hit(entry, sim, "semantic", now)
            if self._verifier is not None:
                score, verdict = self._verifier.score(entry.text, text, sim)
                if self._verifier.accepts(score):
                    return await self._hit(entry, sim, "semantic", now)
                # The guard's hard rule when one fired (the field's meaning
                # since before the verifier), else "verifier": the score was too low.
                vetoed = verdict.reason in HARD_RULES
                rejection = rejection or (verdict.reason if vetoed else "verifier")
                continue
            verdict = guard.check(entry.text, text)
            if verdict.ok and (not verdict.reworded or sim >= reworded_threshold):
                return await self._hit(entry, sim, "semantic", now)
            rejection = rejection or (verdict.reason or "reworded")
        return LookupResult(hit=False, similarity=best, guard_rejection=rejection)

    async def _served(self, q: LookupQuery, result: LookupResult) -> LookupResult:
        await self._feedback.record(q.tenant, q.request_id, q.key_id, result.entry_id)
        return result

    async def _hit(self, entry: Entry, similarity: float, kind: str, now: float) -> LookupResult:
        await self._backend.touch(entry, now)
        self._counters[entry.tenant].hits += 1
        meta = EntryMetadata(
            model=entry.model,
            tier=entry.tier,
            created_at=entry.created_at,
            saved_nano_usd=entry.saved_nano_usd,
            prompt_tokens=entry.prompt_tokens,
            completion_tokens=entry.completion_tokens,
        )
        return LookupResult(
            hit=True,
            entry_id=entry.entry_id,
            answer=entry.answer,
            metadata=meta,
            similarity=min(similarity, 1.0),
            match_kind="exact" if kind == "exact" else "semantic",
        )

    # ---- store / invalidate -------------------------------------------------

    async def store(self, cmd: StoreCommand) -> StoreResult:
        self._require_ready()
        policy = self._policy
        tenant = validation.tenant(cmd.tenant)
        self._known.add(tenant)  # as before backends: even a store refused below makes the tenant known here
        text = validation.text(cmd.text, policy.max_text_bytes)
        answer = validation.answer(cmd.answer, policy.max_answer_bytes)
        ttl_s = validation.ttl(cmd.ttl_s, policy.default_ttl_s, policy.max_ttl_s)
        vector = validation.vector(cmd.vector)
        if vector is None:
            vector = await self._batcher.embed(text)
        ctx = cmd.context.key
        now = self._clock.time()
        meta = cmd.metadata
        new = NewEntry(
            entry_id=uuid.uuid4().hex, tenant=tenant, ctx=ctx, exact=keys.exact_key(ctx, text), text=text,
            vector=vector, answer=answer, model=meta.model, tier=meta.tier, created_at=now,
            saved_nano_usd=max(meta.saved_nano_usd, 0), prompt_tokens=max(meta.prompt_tokens, 0),
            completion_tokens=max(meta.completion_tokens, 0), expires_at=now + ttl_s,
        )  # fmt: skip
        await self._backend.insert(new)
        await self._backend.remove_expired(now, tenant)
        evicted = await self._backend.evict_lru(tenant, policy.capacity_per_tenant)
        self._counters[tenant].evictions += evicted
        return StoreResult(entry_id=new.entry_id, evicted=evicted)

    async def wait_for_rebuilds(self) -> None:
        await self._backend.wait_for_rebuilds()

    async def invalidate(self, *, tenant: str = "", entry_id: str = "", everything: bool = False) -> int:
        """Remove one entry (needs its tenant), a whole tenant, or everything."""
        self._require_ready()
        if everything:
            if tenant or entry_id:
                raise InvalidArgument(
                    "all=true removes every tenant's entries; do not combine it with tenant or entry_id"
                )
            return await self._backend.remove_tenant(None)
        if entry_id:
            validation.tenant(tenant)
            entry = await self._backend.by_entry_id(entry_id)
            if entry is None or entry.tenant != tenant:
                # Same answer for "absent" and "another tenant's": no probing across tenants.
                raise NotFound(f"no cache entry {entry_id!r} for tenant {tenant!r}")
            return await self._backend.remove([entry])
        if tenant:
            return await self._backend.remove_tenant(tenant)
        raise InvalidArgument("say what to invalidate: entry_id with tenant, tenant alone, or all=true")

    async def sweep_expired(self) -> int:
        """Delete expired entries of every tenant (lookups already skip them)."""
        return await self._backend.remove_expired(self._clock.time())

    async def _require_known(self, tenant: str) -> None:
        if tenant in self._known:
            return
        if not await self._backend.has_tenant(tenant):
            raise NotFound(f"tenant {tenant!r} has stored nothing in this cache yet; a lookup for it is a miss")
        self._known.add(tenant)

    async def report_wrong_hit(self, tenant: str, key_id: str, request_id: str) -> WrongHitResult:
        """The caller says the answer served for ``request_id`` was wrong:
        evict the entry (so no one else gets it) and count the report once."""
        self._require_ready()
        tenant = validation.tenant(tenant)
        report = await self._feedback.report(tenant, key_id, request_id)
        entry = await self._backend.by_entry_id(report.entry_id)
        evicted = entry is not None and entry.tenant == tenant and await self._backend.remove([entry]) == 1
        if not report.already_reported:
            self._counters[tenant].wrong_hits += 1
            WRONG_HITS.labels(tenant).inc()
            log.info("cached answer reported wrong; entry evicted", tenant=tenant, entry_id=report.entry_id,
                     evicted=evicted)  # fmt: skip
        return WrongHitResult(entry_id=report.entry_id, evicted=evicted, already_reported=report.already_reported)

    async def stats(self, tenant: str = "") -> CacheStats:
        if tenant:
            await self._require_known(validation.tenant(tenant))
            n = await self._backend.count(tenant)
            return CacheStats(entries=n, tenants=1 if n else 0, **asdict(self._counters.get(tenant, _Counters())))
        total = _Counters()
        for c in self._counters.values():
            for name, value in asdict(c).items():
                setattr(total, name, getattr(total, name) + value)
        entries, tenants = await self._backend.count(), await self._backend.tenant_count()
        return CacheStats(entries=entries, tenants=tenants, **asdict(total))
