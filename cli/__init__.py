"""The `frontier-review` command line (also `python starter.py`)."""
