"""Benchmarks (not tests): each ``run_*.py`` prints our figure next to its ceiling or peer."""
