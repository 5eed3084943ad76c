"""Helpers for tests and benches: real servers on loopback, shared constants and fakes.

Not shipped: the wheel leaves this package out, and no code under
``rationer/`` or ``services/`` (outside their tests) imports it.
"""
