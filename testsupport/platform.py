"""Shared test constants for real servers on loopback (services/*/testing.py)."""

from __future__ import annotations

# The service token every test server demands and every test client presents.
SERVICE_TOKEN = "test-service-token-0123456789"
