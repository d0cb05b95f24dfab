"""Alembic environment: runs migrations on the Engine handed over by `pipeline.store.db`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from pipeline.store.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = config.attributes["engine"]
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # Batch mode rebuilds a table (copy, drop, rename): with foreign keys on, dropping
            # `documents` would cascade-delete every extraction. Off outside the transaction
            # (SQLite ignores the pragma inside one), checked and on again after.
            _pragma(connection, "PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                context.configure(
                    connection=connection,
                    target_metadata=target_metadata,
                    render_as_batch=sqlite,  # SQLite cannot ALTER much
                    compare_type=True,
                )
                with context.begin_transaction():
                    context.run_migrations()
            if sqlite and _pragma(connection, "PRAGMA foreign_key_check"):
                raise RuntimeError("the migration left rows whose foreign keys point nowhere")
        finally:
            if sqlite:
                _pragma(connection, "PRAGMA foreign_keys=ON")


def _pragma(connection: Connection, statement: str) -> list[tuple[object, ...]]:
    """Run a pragma on the driver's connection, outside any transaction SQLAlchemy begins."""
    cursor = connection.connection.driver_connection.execute(statement)  # type: ignore[union-attr]
    return list(cursor.fetchall())


if context.is_offline_mode():
    raise SystemExit(
        "offline (SQL script) migrations are not supported; run `docextract db upgrade`"
    )
run_migrations_online()
