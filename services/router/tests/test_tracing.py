"""The router's GenAI span (services/router/tracing.py) on the fake ports: attributes, errors, and nothing when off."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from rationer.errors import Unauthenticated
from rationer.platform.tracing import configure_tracing
from services.router.tests.fakes import KEY, Fakes, hit, request

Finished = Callable[[], Sequence[ReadableSpan]]


@pytest.fixture
def spans() -> Iterator[Finished]:
    exporter = InMemorySpanExporter()
    handle = configure_tracing("router", "127.0.0.1:1", exporter=exporter)
    assert handle is not None

    def finished() -> Sequence[ReadableSpan]:
        assert handle.force_flush()
        return exporter.get_finished_spans()

    try:
        yield finished
    finally:
        handle.shutdown()


async def test_a_miss_has_the_genai_and_gateway_attributes(spans: Finished) -> None:
    _, res = await Fakes().core().complete(KEY, request("a secret prompt", max_tokens=8), request_id="r1")
    (span,) = spans()
    attrs = dict(span.attributes or {})
    assert span.name == "chat auto"
    want = {
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "auto", "gen_ai.request.max_tokens": 8,
        "gen_ai.response.model": res.model, "gen_ai.response.id": "r1",
        "gen_ai.usage.input_tokens": res.prompt_tokens, "gen_ai.usage.output_tokens": res.completion_tokens,
        "rationer.tier": res.tier, "rationer.cache": "miss", "rationer.streamed": False,
        "rationer.cost_usd": res.cost_nano_usd / 1e9,
    }  # fmt: skip
    assert {k: attrs.get(k) for k in want} == want
    assert not any("secret prompt" in str(v) for v in attrs.values())


async def test_a_hit_and_a_stream(spans: Finished) -> None:
    fakes = Fakes()
    fakes.cache.hit = hit()
    await fakes.core().complete(KEY, request())
    events = [e async for e in fakes.core().stream(KEY, request(no_cache=True))]
    first, second = spans()
    assert first.attributes is not None and first.attributes["rationer.cache"] == "hit"
    final = events[-1].final
    assert final is not None and second.attributes is not None
    assert second.attributes["rationer.streamed"] is True and second.attributes["rationer.cache"] == "miss"
    assert second.attributes["gen_ai.usage.output_tokens"] == final.completion_tokens


async def test_a_failure_names_its_type_not_its_message(spans: Finished) -> None:
    fakes = Fakes()
    with pytest.raises(Unauthenticated):
        await fakes.core().complete("rk-wrong", request())
    (span,) = spans()
    assert span.status.status_code is StatusCode.ERROR and span.attributes is not None
    assert span.attributes["error.type"] == "UNAUTHENTICATED" and not span.events


async def test_off_the_stream_is_the_pipelines_own_generator() -> None:
    core = Fakes().core()
    events = core.stream(KEY, request())
    assert getattr(events, "__qualname__", "") == "RouterCore.stream"  # no wrapper generator while off
    assert [e async for e in events][-1].final is not None
