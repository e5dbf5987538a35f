"""Prometheus metrics and OTLP spans for Letta agent servers."""

__version__ = "0.1.0"
