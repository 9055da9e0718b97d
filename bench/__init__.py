"""Benchmarks of the course library; run one with ``python -m bench.<name>`` from the repository root."""
