"""Benchmarks: each prints one JSON document of figures (see docs/DEVELOPING.md); nothing here passes or fails."""
