"""Gatewayz failover proxy: an OpenAI-compatible sidecar that fails over between providers."""

__version__ = "0.1.0"
