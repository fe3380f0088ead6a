"""Benchmarks: the engine timed, and the per-agent Mesa reference model it is compared with."""
