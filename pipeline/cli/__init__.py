"""The `docextract` command line: one Typer app, one module per command group.

- `common`: the app, shared options, the error-to-exit-code mapping, options -> settings
- `run`: run, status, show, db upgrade;  `ops`: rerun, export, serve
- `quality`: schemas, eval, ask;  `scale`: pool deploy / run;  `tiles`: what the model sees
- `duplicates`: possible duplicate invoices, and marking a pair distinct
- `split`: how a file is split into documents (a bundle), and a person's correction
- `review`: the review desk (`review`), the night's report (`report`), `eval --reviewed`
- `server`: the background local Prefect server (start, status, stop) and `connect_prefect`
- `output`: tables and JSON for the terminal
"""

import gc

from pipeline.cli import (  # noqa: F401 (register)
    common,
    duplicates,
    ops,
    quality,
    review,
    run,
    scale,
    server,
    split,
    tiles,
)
from pipeline.cli.common import app

__all__ = ["app", "main"]


def main() -> None:  # pragma: no cover - console entry point (and `python -m pipeline`)
    """Run the `docextract` command named by the command line; exits with its code."""
    # The objects importing the CLI made live until exit, and a finished command's need no
    # collecting on the way out: frozen, the collector skips them (0.4-0.6 s of a no-op run).
    gc.freeze()
    common.ONE_COMMAND = True
    try:
        app(prog_name="docextract")
    finally:
        gc.freeze()
