"""docextract's engine: plain Python stages, no Prefect, and no torch until a backend loads."""

__version__ = "0.1.0"
