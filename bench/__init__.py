"""The benchmark suite (`python -m bench`); docs/benchmarks.md describes it."""
