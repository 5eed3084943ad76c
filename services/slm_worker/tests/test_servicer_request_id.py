"""The request id in a GenerateRequest names the call in the worker's logs."""

from __future__ import annotations

import structlog

from rationer.api.worker.v1 import worker_pb2
from services.slm_worker.servicer import _checked


def test_request_id_field_is_bound_into_the_log_context() -> None:
    structlog.contextvars.clear_contextvars()
    try:
        structlog.contextvars.bind_contextvars(request_id="from-metadata")
        _checked(worker_pb2.GenerateRequest(model="m"))
        assert structlog.contextvars.get_contextvars()["request_id"] == "from-metadata"
        _checked(worker_pb2.GenerateRequest(model="m", request_id="from-message"))
        assert structlog.contextvars.get_contextvars()["request_id"] == "from-message"
    finally:
        structlog.contextvars.clear_contextvars()
