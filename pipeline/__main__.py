"""`python -m pipeline` is the `docextract` command."""

from pipeline.cli import app

app(prog_name="docextract")
