"""Faithful fake servers on 127.0.0.1 used by `climb demo`, the tests and the benchmarks."""
