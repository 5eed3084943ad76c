"""Shared fixtures for integration and end-to-end tests."""

from __future__ import annotations

import os

# Nothing may reach a model hub during tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
