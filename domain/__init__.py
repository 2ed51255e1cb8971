"""Shared contracts: the one place that workflows, activities, workers and the CLI agree on.

Models, ids, task queues, search-attribute keys and the policy live here; nothing in
this package does I/O at import time, so workflow code can import it safely.
"""
