"""The health worker: probes offers, derives their health, and tells every proxy what changed."""
