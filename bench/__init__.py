"""The benchmark harness: run it as `python -m bench.bench` from the project root."""
