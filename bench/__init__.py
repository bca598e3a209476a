"""Benchmarks that print JSON and judge against a floor measured in the same run (docs/performance.md)."""
