"""Rationer: an enterprise AI gateway that rations LLM tokens."""

__version__ = "0.1.0"
