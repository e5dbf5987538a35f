"""The bench suite (`make bench`, `python -m bench.run`): ratios and values measured in one run."""
