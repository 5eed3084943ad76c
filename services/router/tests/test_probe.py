"""The frontier readiness probe: the first probe decides, later ones need two misses in a row."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.router.backends.frontier import FrontierBackend


@dataclass
class Config:
    model: str = "gpt-x"


@dataclass
class ScriptedClient:
    answers: list[bool]
    config: Config = field(default_factory=Config)

    async def reachable(self, timeout_s: float = 3.0) -> bool:
        return self.answers.pop(0)

    async def aclose(self) -> None:
        return None


def backend(*answers: bool) -> FrontierBackend:
    return FrontierBackend(ScriptedClient(list(answers)))  # type: ignore[arg-type]


async def test_an_endpoint_down_at_start_is_not_ready_until_a_probe_reaches_it() -> None:
    b = backend(False, False, True)
    assert not await b.probe() and not b.healthy("gpt-x")
    assert not await b.probe()
    assert await b.probe() and b.healthy("gpt-x")


async def test_one_slow_probe_does_not_mark_a_working_endpoint_down() -> None:
    b = backend(True, False, True, False, False)
    assert await b.probe()
    assert await b.probe()  # one miss: still ready
    assert await b.probe()  # answered again: the miss is forgotten
    assert await b.probe()  # one miss
    assert not await b.probe() and not b.healthy("gpt-x")  # two in a row: down
