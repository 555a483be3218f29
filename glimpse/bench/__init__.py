"""``glimpse bench``: the benchmark suite (run.py) and its report (report.py)."""
