"""A served ledger process exports its spans to the collector its settings name, and flushes them on SIGTERM."""

from __future__ import annotations

import asyncio
import secrets
import signal
from pathlib import Path

import grpc
from test_platform_serve import _serve

from rationer.api.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from testsupport.otlp import running_otlp_receiver


async def test_served_ledger_exports_to_its_otlp_endpoint(tmp_path: Path) -> None:
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    with running_otlp_receiver() as receiver:
        proc, port, _ = await _serve(tmp_path, {"RATIONER_LEDGER__OTLP_ENDPOINT": f"http://{receiver.endpoint}"})
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                # ListPrices is open (no service token): the simplest traced call.
                await ledger_pb2_grpc.LedgerServiceStub(ch).ListPrices(
                    ledger_pb2.ListPricesRequest(), metadata=(("traceparent", f"00-{trace_id}-{parent}-01"),)
                )
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 60)
        assert proc.returncode == 0
        spans = [s for s in receiver.spans() if s.trace_id == trace_id]
    assert [(s.service, s.kind, s.name, s.parent_span_id) for s in spans] == [
        ("rationer-ledger", "SERVER", "rationer.ledger.v1.LedgerService/ListPrices", parent)
    ]
