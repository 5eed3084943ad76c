"""Rationer: an enterprise AI gateway that rations LLM tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from rationer.client import AsyncClient, Client

__all__ = ["AsyncClient", "Client", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy: `import rationer` must stay cheap for the CLI and the services.
    if name in ("Client", "AsyncClient"):
        from rationer import client

        return getattr(client, name)
    raise AttributeError(name)
