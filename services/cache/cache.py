"""The semantic cache: exact fast path, FAISS search per (tenant, context)
namespace, false-hit guard, TTL, per-tenant LRU capacity and persistence.

No gRPC here; the servicer converts messages and delegates. Every method runs
on the event loop thread; ONNX inference runs on the batcher's worker thread.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import structlog
from prometheus_client import Counter

from rationer.embedding.batcher import MicroBatcher
from rationer.errors import InvalidArgument, NotFound, Unavailable
from rationer.platform.clock import SYSTEM_CLOCK, Clock
from services.cache import guard, keys, persistence, validation
from services.cache.feedback import FeedbackBook
from services.cache.index import IndexConfig, NamespaceIndex
from services.cache.pair_features import HARD_RULES
from services.cache.persistence import Namespace
from services.cache.rebuilds import Rebuilder
from services.cache.store import Entry, EntryStore, NewEntry
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
    ) -> None:
        self._batcher = batcher
        # None: the lexical guard and the two thresholds decide (the legacy path).
        self._verifier = verifier
        self._policy = policy or CachePolicy()
        self._index_config = index_config or IndexConfig()
        self._clock = clock
        self._data_dir = data_dir
        if data_dir is not None:
            data_dir.mkdir(parents=True, exist_ok=True)
        # Receipts persist beside the entries, so feedback survives a restart.
        self._feedback = feedback or FeedbackBook(clock, path=data_dir / "receipts.sqlite3" if data_dir else None)
        self._store = EntryStore(data_dir / "cache.sqlite3" if data_dir is not None else None)
        self._indexes: dict[Namespace, NamespaceIndex] = {}
        self._rebuilder = Rebuilder()  # index rebuilds, never on the event loop
        self._counters: defaultdict[str, _Counters] = defaultdict(_Counters)
        # Tenants that have stored something (since the data was created):
        # a lookup for any other tenant is NOT_FOUND, which the router
        # treats as a plain miss.
        self._tenants: set[str] = set()
        self.ready = False
        self.loaded_from = ""  # "snapshot" | "rebuild" | "empty", for logs and tests

    @property
    def policy(self) -> CachePolicy:
        return self._policy

    @property
    def verifier(self) -> Verifier | None:
        return self._verifier

    # ---- start / stop -------------------------------------------------------

    async def start(self) -> None:
        """Load the indexes (snapshot or rebuild) off the event loop."""
        await asyncio.get_running_loop().run_in_executor(None, self._load)
        self.ready = True

    def _snapshot_path(self) -> Path | None:
        return self._data_dir / "index.snapshot" if self._data_dir is not None else None

    def _load(self) -> None:
        loaded = persistence.load_indexes(self._store, self._snapshot_path(), self._index_config)
        self._indexes, self.loaded_from = loaded.indexes, loaded.source
        self._tenants |= loaded.tenants

    def save_snapshot(self) -> None:
        path = self._snapshot_path()
        if path is not None:
            persistence.save_snapshot(path, self._store, self._indexes)

    def close(self, *, save: bool = True) -> None:
        if save and self.ready:
            self.save_snapshot()
        self._rebuilder.close()
        self._store.close()
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
        self._require_known(tenant)
        now = self._clock.time()
        counters = self._counters[tenant]
        entry = self._store.exact(tenant, ctx, keys.exact_key(ctx, text), now)
        if entry is not None:
            return self._served(q, self._hit(entry, 1.0, "exact", now))
        if q.exact_only:
            return LookupResult(hit=False)  # the caller follows up with a full lookup
        index = self._indexes.get((tenant, ctx))
        if index is None or not len(index):
            counters.misses += 1  # unknown tenant or context: a miss, not an error
            return LookupResult(hit=False)
        if vector is None:
            vector = await self._batcher.embed(text)
        result = self._semantic(index, (tenant, ctx), text, vector, threshold, q.disable_guard, now)
        if result.hit:
            return self._served(q, result)
        counters.misses += 1
        if result.guard_rejection:
            counters.guard_rejections += 1
        return result

    def _semantic(
        self,
        index: NamespaceIndex,
        namespace: tuple[str, str],
        text: str,
        vector: npt.NDArray[np.float32],
        threshold: float,
        disable_guard: bool,
        now: float,
    ) -> LookupResult:
        reworded_threshold = max(threshold, self._policy.reworded_similarity)
        use_guard = self._policy.guard and not disable_guard
        rejection, best = "", 0.0
        for row_id, sim in index.search(vector.reshape(1, -1), self._policy.candidates)[0]:
            best = max(best, sim)
            if sim < threshold:
                break  # results are sorted best first
            entry = self._store.get(row_id)
            if entry is None or entry.expires_at <= now:
                continue
            if (entry.tenant, entry.ctx) != namespace:
                # Only a damaged snapshot could map a row into another
                # namespace's index; isolation must not rest on it.
                log.error("index row outside its namespace; skipped", row_id=row_id)
                continue
            if not use_guard:
                return self._hit(entry, sim, "semantic", now)
            if self._verifier is not None:
                score, verdict = self._verifier.score(entry.text, text, sim)
                if self._verifier.accepts(score):
                    return self._hit(entry, sim, "semantic", now)
                # The guard's hard rule when one fired (the field's meaning
                # since before the verifier), else "verifier": the score was too low.
                vetoed = verdict.reason in HARD_RULES
                rejection = rejection or (verdict.reason if vetoed else "verifier")
                continue
            verdict = guard.check(entry.text, text)
            if verdict.ok and (not verdict.reworded or sim >= reworded_threshold):
                return self._hit(entry, sim, "semantic", now)
            rejection = rejection or (verdict.reason or "reworded")
        return LookupResult(hit=False, similarity=best, guard_rejection=rejection)

    def _served(self, q: LookupQuery, result: LookupResult) -> LookupResult:
        self._feedback.record(q.tenant, q.request_id, q.key_id, result.entry_id)
        return result

    def _hit(self, entry: Entry, similarity: float, kind: str, now: float) -> LookupResult:
        self._store.touch(entry.row_id, now)
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
        self._tenants.add(tenant)
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
        row_id, replaced = self._store.insert(new)
        if replaced is not None:
            self._unindex(replaced)
        index = self._indexes.get((tenant, ctx))
        if index is None:
            index = self._indexes[(tenant, ctx)] = NamespaceIndex(self._index_config)
        index.add(np.array([row_id], dtype=np.int64), vector.reshape(1, -1))
        self._schedule_rebuild(index)
        self._remove_rows(self._store.expired(now, tenant))
        evicted = self._remove_rows(self._store.lru_victims(tenant, policy.capacity_per_tenant))
        self._counters[tenant].evictions += evicted
        return StoreResult(entry_id=new.entry_id, evicted=evicted)

    def _unindex(self, entry: Entry) -> None:
        ns = (entry.tenant, entry.ctx)
        index = self._indexes.get(ns)
        if index is not None:
            index.remove(entry.row_id)
            if not len(index):
                del self._indexes[ns]
            else:
                self._schedule_rebuild(index)

    def _schedule_rebuild(self, index: NamespaceIndex) -> None:
        self._rebuilder.schedule(index)

    async def wait_for_rebuilds(self) -> None:
        await self._rebuilder.wait()

    def _remove_rows(self, row_ids: list[int]) -> int:
        removed = self._store.delete(row_ids)
        by_ns: dict[Namespace, list[Entry]] = defaultdict(list)
        for entry in removed:
            by_ns[(entry.tenant, entry.ctx)].append(entry)
        for ns, entries in by_ns.items():
            index = self._indexes.get(ns)
            if index is not None and len(entries) >= len(index):
                # The whole namespace goes: drop its index rather than remove
                # row by row, which would rebuild an HNSW index again and
                # again (each rebuild blocks the service).
                del self._indexes[ns]
                continue
            for entry in entries:
                self._unindex(entry)
        return len(removed)

    def invalidate(self, *, tenant: str = "", entry_id: str = "", everything: bool = False) -> int:
        """Remove one entry (needs its tenant), a whole tenant, or everything."""
        self._require_ready()
        if everything:
            if tenant or entry_id:
                raise InvalidArgument(
                    "all=true removes every tenant's entries; do not combine it with tenant or entry_id"
                )
            return self._remove_rows(self._store.tenant_rows(None))
        if entry_id:
            validation.tenant(tenant)
            entry = self._store.by_entry_id(entry_id)
            if entry is None or entry.tenant != tenant:
                # Same answer for "absent" and "another tenant's": no probing across tenants.
                raise NotFound(f"no cache entry {entry_id!r} for tenant {tenant!r}")
            return self._remove_rows([entry.row_id])
        if tenant:
            return self._remove_rows(self._store.tenant_rows(tenant))
        raise InvalidArgument("say what to invalidate: entry_id with tenant, tenant alone, or all=true")

    def sweep_expired(self) -> int:
        """Delete expired entries of every tenant (lookups already skip them)."""
        return self._remove_rows(self._store.expired(self._clock.time()))

    def _require_known(self, tenant: str) -> None:
        if tenant not in self._tenants:
            raise NotFound(f"tenant {tenant!r} has stored nothing in this cache yet; a lookup for it is a miss")

    def report_wrong_hit(self, tenant: str, key_id: str, request_id: str) -> WrongHitResult:
        """The caller says the answer served for ``request_id`` was wrong:
        evict the entry (so no one else gets it) and count the report once."""
        self._require_ready()
        tenant = validation.tenant(tenant)
        report = self._feedback.report(tenant, key_id, request_id)
        entry = self._store.by_entry_id(report.entry_id)
        evicted = entry is not None and entry.tenant == tenant and self._remove_rows([entry.row_id]) == 1
        if not report.already_reported:
            self._counters[tenant].wrong_hits += 1
            WRONG_HITS.labels(tenant).inc()
            log.info("cached answer reported wrong; entry evicted", tenant=tenant, entry_id=report.entry_id,
                     evicted=evicted)  # fmt: skip
        return WrongHitResult(entry_id=report.entry_id, evicted=evicted, already_reported=report.already_reported)

    def stats(self, tenant: str = "") -> CacheStats:
        if tenant:
            self._require_known(validation.tenant(tenant))
            n = self._store.count(tenant)
            return CacheStats(entries=n, tenants=1 if n else 0, **asdict(self._counters.get(tenant, _Counters())))
        total = _Counters()
        for c in self._counters.values():
            for name, value in asdict(c).items():
                setattr(total, name, getattr(total, name) + value)
        return CacheStats(entries=self._store.count(), tenants=self._store.tenant_count(), **asdict(total))
