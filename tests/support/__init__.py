"""Helpers shared by the test directories (and bench/): process starters, PKI, nodes, samples, wrappers.

conftest.py files define fixtures from these; no test module imports another test module or a conftest.
"""
