"""Prefect flows: thin compositions of tasks over `pipeline` functions."""
