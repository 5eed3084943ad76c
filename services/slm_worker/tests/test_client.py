"""WorkerClient: errors name the worker they came from; calls carry the served call's request id."""

from __future__ import annotations

import pytest
import structlog

from rationer.errors import Unavailable
from rationer.platform.interceptor import PRINCIPAL_KEY, REQUEST_ID_KEY
from rationer.platform.net import free_port
from services.slm_worker.client import ChatMessage, WorkerClient


async def test_an_unreachable_worker_fails_with_its_label() -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens here
    async with WorkerClient(address, timeout_s=5.0, label=f"worker {address}") as client:
        with pytest.raises(Unavailable, match=rf"^worker {address}: "):
            await client.generate("m", [ChatMessage("user", "hi")])
    async with WorkerClient(address, timeout_s=5.0) as client:
        with pytest.raises(Unavailable, match=r"^slm_worker: "):
            await client.list_models()


async def test_metadata_forwards_the_served_call_and_an_explicit_request_id_wins() -> None:
    # async: the client's grpc.aio channel needs a running loop (a sync test depends on test order).
    structlog.contextvars.clear_contextvars()
    try:
        async with WorkerClient("127.0.0.1:1") as client:
            structlog.contextvars.bind_contextvars(request_id="served-1", principal="acme/k_1")
            assert dict(client._md()) == {REQUEST_ID_KEY: "served-1", PRINCIPAL_KEY: "acme/k_1"}
            assert dict(client._md("mine-2")) == {REQUEST_ID_KEY: "mine-2", PRINCIPAL_KEY: "acme/k_1"}
    finally:
        structlog.contextvars.clear_contextvars()
