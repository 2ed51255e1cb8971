"""Workflows: one file per workflow, each reading as the story it runs."""
