"""Benchmarks, installed as `o1.benchmarks` and run as `o1 bench NAME [args ...]`: each module
NAME has `main(argv)`, prints one table and appends it to BENCHMARKS.md (see `report`)."""
