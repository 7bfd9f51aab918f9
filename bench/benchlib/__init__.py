"""co2's benchmark suite: figures measured against baselines in the same run (see bench/README.md)."""
