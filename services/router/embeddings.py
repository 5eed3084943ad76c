"""Billed embeddings for ``POST /v1/embeddings`` on the router's shared embedder.

Embeddings cost compute, so they are billed like completions, on the
ledger's reserved tier ``embeddings`` (priced per million input tokens):
the inputs are counted with the embedder's own tokenizer, Authorize holds
their exact cost and consumes the rate limits (1 request, the tokens), and
only then does the model run; the commit is journaled like any other. A
budget or rate denial is therefore a 429 before any compute, and every call
is an ``embedding`` event in the chargeback. The wire format is the HTTP
door's (``http/embeddings.py``).
"""

from __future__ import annotations

import asyncio
import time

from rationer.errors import ResourceExhausted
from services.ledger.calls import CommitCall
from services.router import access
from services.router.auth import resolve_project
from services.router.ports import EmbedderPort, LedgerPort
from services.router.recorder import NULL_RECORDER, Recorder
from services.router.request_ids import reused
from services.router.settlement import TRANSIENT, Settler, best_effort
from services.router.types import EmbeddingsResult, Principal, Reservation

MODEL_ID = "all-MiniLM-L6-v2"
EMBEDDINGS_TIER = "embeddings"  # the ledger's reserved tier (services/ledger/models.py)


class Embeddings:
    def __init__(
        self, ledger: LedgerPort, settler: Settler, embedder: EmbedderPort, recorder: Recorder = NULL_RECORDER
    ) -> None:
        self._ledger, self._settler, self._embedder, self._recorder = ledger, settler, embedder, recorder

    async def run(self, principal: Principal, texts: list[str], *, request_id: str, project: str) -> EmbeddingsResult:
        """Hold, embed, commit; raises before any compute if the ledger says no."""
        started = time.perf_counter()
        tokens = await asyncio.to_thread(self._count, texts)
        res = await self._reserve(principal, tokens, request_id, project)
        try:
            # ONNX Runtime releases the GIL: run it off the event loop.
            vectors = await asyncio.to_thread(self._embedder.embed, texts)
        except BaseException:
            release = self._ledger.release(reservation_id=res.reservation_id, key_id=principal.key_id,
                                           reason="the embedding failed or the caller went away")  # fmt: skip
            await asyncio.shield(best_effort(release, "release"))  # else it expires on its own
            raise
        call = CommitCall(
            reservation_id=res.reservation_id, key_id=principal.key_id, prompt_tokens=tokens, completion_tokens=0,
            model=MODEL_ID, tier=EMBEDDINGS_TIER, latency_ms=int((time.perf_counter() - started) * 1000),
            fallbacks=0, bill_late=True, status_code=200,
        )  # fmt: skip
        try:
            charge = await self._settler.settle(call)
        except TRANSIENT:
            # journaled: it lands when the ledger is back
            self._recorder.embedded(principal, tokens, None)
            access.billed(EMBEDDINGS_TIER, MODEL_ID, tokens, 0)
            return EmbeddingsResult(vectors, tokens, 0, settlement_pending=True)
        self._recorder.embedded(principal, tokens, charge)
        access.billed(EMBEDDINGS_TIER, MODEL_ID, tokens, int(charge.cost_nano_usd))
        return EmbeddingsResult(vectors, tokens, int(charge.cost_nano_usd), settlement_pending=False)

    def _count(self, texts: list[str]) -> int:
        return sum(self._embedder.count_tokens(t) for t in texts)

    async def _reserve(self, principal: Principal, tokens: int, request_id: str, project: str) -> Reservation:
        try:
            res = await self._ledger.authorize(
                key_id=principal.key_id, tier=EMBEDDINGS_TIER, model=MODEL_ID, prompt_tokens=tokens,
                max_completion_tokens=0, project=resolve_project(principal, project), request_id=request_id,
            )  # fmt: skip
        except ResourceExhausted as exc:
            self._recorder.denied(principal, EMBEDDINGS_TIER, exc.limit_id)
            raise
        if res.replayed:  # as for a chat: another call already used this id
            raise reused(request_id)
        return res
