"""Benchmarks of the failover proxy against its floor (bare forwarders) and its peer (LiteLLM).

`bench/run` sets up and runs everything; `python -m bench --help` lists the knobs. See README.md.
"""
