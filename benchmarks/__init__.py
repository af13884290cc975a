"""
Side-by-side measurements of tunnypy against the standard library, pebble and
two hand-written floors. Not tests: run them with ``python -m benchmarks``
(``make bench``); ``tests/test_benchmarks.py`` runs a smoke pass so they
cannot rot.
"""
