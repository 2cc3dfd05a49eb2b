"""The fake PhysioNet that `climb demo` serves on 127.0.0.1 (also used by the tests and the benchmarks).

The other fake servers are test doubles and live with the tests, in `tests/fakes/`; they are not part of the
installed package."""
