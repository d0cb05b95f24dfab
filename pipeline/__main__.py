"""`python -m pipeline` is the `docextract` command."""

from pipeline.cli import main

main()
