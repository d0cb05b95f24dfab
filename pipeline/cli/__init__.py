"""The `docextract` command line: one Typer app, one module per command group.

- `common`: the app, shared options, the error-to-exit-code mapping, options -> settings
- `run`: run, status, show, db upgrade;  `ops`: rerun, export, serve
- `quality`: schemas, eval, ask;  `scale`: pool deploy / run;  `tiles`: what the model sees
- `review`: the review desk (`review`), the night's report (`report`), `eval --reviewed`
- `server`: the background local Prefect server (start, status, stop) and `connect_prefect`
- `output`: tables and JSON for the terminal
"""

import sys

from pipeline.cli import ops, quality, review, run, scale, server, tiles  # noqa: F401 (register)
from pipeline.cli.common import app

__all__ = ["app", "main"]


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())
