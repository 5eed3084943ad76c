"""Anthropic Messages API: the wire format of the router's second door and of an Anthropic frontier tier."""
