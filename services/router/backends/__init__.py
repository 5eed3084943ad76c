"""The router's model backends, each a ``ModelBackend`` (``services.router.ports``).

- ``frontier``: an OpenAI-compatible HTTP endpoint (``FrontierClient``) and
  ``FrontierBackend``, its circuit-broken tier.
- ``local``: ``WorkerPool``, the slm_worker pool balanced client-side over
  ``services.slm_worker.client.WorkerClient``.
"""

from services.router.backends.frontier import FrontierBackend, FrontierClient, FrontierConfig
from services.router.backends.local import WorkerPool

__all__ = ["FrontierBackend", "FrontierClient", "FrontierConfig", "WorkerPool"]
