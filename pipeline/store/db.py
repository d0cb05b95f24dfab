"""Engines, sessions and the schema version check (Alembic).

`open_database` is the single way in: it connects, creates the schema in an empty database, and
refuses an out-of-date one with the command that fixes it. Errors never show the password.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Engine, create_engine, event, inspect
from sqlalchemy.exc import NoSuchModuleError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from pipeline.errors import ConfigError, StoreError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def safe_url(url: str) -> str:
    """The URL with any password masked, for messages and logs."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (SQLAlchemyError, ValueError):  # ValueError: a port that is not a number
        return "<unparseable database URL>"


SUPPORTED_DATABASES = (
    "SQLite (sqlite:///path/to/docextract.db) or PostgreSQL (postgresql://user@host/db)"
)


def parse_url(url: str) -> URL:
    """`url` parsed and checked to name a supported database. Raises ConfigError (never
    showing the password) for an unparsable URL, a port that is not a number, `postgres://`,
    or another database than SQLite and PostgreSQL."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except (SQLAlchemyError, ValueError) as exc:  # ValueError: a port that is not a number
        reason = "the port is not a number" if isinstance(exc, ValueError) else str(exc)
        raise ConfigError(f"Cannot parse the database URL: {reason}.") from None
    backend = parsed.get_backend_name()
    if backend == "postgres":
        raise ConfigError(
            f"Database URL {safe_url(url)!r}: SQLAlchemy does not accept 'postgres://'; "
            "write 'postgresql://' instead."
        )
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"Database URL {safe_url(url)!r} names {backend!r}; docextract supports "
            f"{SUPPORTED_DATABASES}."
        )
    if parsed.drivername == "postgresql":  # psycopg 3 is what we install
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def make_engine(url: str) -> Engine:
    """An Engine for `url`; SQLite gets WAL, a busy timeout and foreign keys. Raises
    ConfigError for an unsupported URL or a database driver that is not installed."""
    parsed = parse_url(url)
    try:
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(parsed, connect_args={"timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
            event.listen(engine, "begin", _sqlite_begin_immediate)
            return engine
        return create_engine(parsed, pool_pre_ping=True)
    except (ImportError, NoSuchModuleError) as exc:
        raise ConfigError(
            f"Database URL {safe_url(url)!r}: its driver is not installed ({exc}); use "
            "postgresql:// (psycopg 3, installed) or sqlite:///."
        ) from None


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    # Let SQLAlchemy, not the sqlite3 module, emit BEGIN (see _sqlite_begin_immediate).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cursor.execute("PRAGMA busy_timeout=30000")  # two workers on one file wait instead of failing
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin_immediate(connection) -> None:  # type: ignore[no-untyped-def]
    # Take the write lock at BEGIN: a deferred transaction that reads, then writes, fails at
    # once with "database is locked" when another worker wrote meanwhile, instead of waiting.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def head_revision(engine: Engine) -> str:
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    assert head is not None, "the package ships no migrations"
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Create or upgrade the schema to the newest revision. Returns (before, after)."""
    before = current_revision(engine)
    command.upgrade(alembic_config(engine), "head")
    return before, head_revision(engine)


class EmptyDatabase(StoreError):
    """A reading command met a database without docextract's tables: nothing extracted yet."""


def open_database(url: str, *, create: bool = True) -> Engine:
    """Connect and check the schema version.

    An empty database gets the schema when `create` is set (commands that write). Without
    `create` (commands that only read) nothing is created: a SQLite file that does not exist
    raises StoreError, an empty database EmptyDatabase. A database at an older revision
    raises StoreError naming `docextract db upgrade`; an unreachable one raises StoreError.
    """
    if not create:
        _require_sqlite_file(url)
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            tables = set(inspect(connection).get_table_names())
        if not tables and create:
            log.info("empty database %s: creating the schema", safe_url(url))
            upgrade(engine)
            return engine
        if not tables:
            raise EmptyDatabase(
                f"The database {safe_url(url)!r} is empty: nothing has been extracted into it "
                "yet (`docextract run` creates its tables). Check --db or DOCEXTRACT_DB_URL if "
                "you expected results there."
            )
        current, head = current_revision(engine), head_revision(engine)
    except OperationalError as exc:
        raise StoreError(
            f"Cannot connect to the database {safe_url(url)!r}: {_first_line(exc)}. "
            "Check that the server is running and the URL (--db or DOCEXTRACT_DB_URL) is right."
        ) from None
    if current != head:
        raise StoreError(
            f"The database {safe_url(url)!r} is at schema revision {current!r}, this docextract "
            f"needs {head!r}. Run `docextract db upgrade --db URL` (back it up first)."
        )
    return engine


def _require_sqlite_file(url: str) -> None:
    """Raise StoreError when `url` is a SQLite file that does not exist (connecting would
    create it, empty, at what is most likely a mistyped path)."""
    parsed = parse_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    path = Path(parsed.database).expanduser()
    if not path.is_file():
        raise StoreError(
            f"The SQLite database {str(path)!r} does not exist (nothing was created). Check "
            "--db or DOCEXTRACT_DB_URL; `docextract run` creates a new one."
        )


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", exc) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def shared_engine(url: str) -> Engine:
    """`open_database(url)`, once per process: tasks of one run share the engine and its pool."""
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = open_database(url)
        return engine


def dispose_engines() -> None:
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
