"""The OpenAI-compatible HTTP front door: ``app`` (routes, middleware), ``schema``, ``errors``, ``input``,
``embeddings``, ``feedback``, ``openapi``. It talks to the core through ``RouterCore``'s façade only."""
