"""Shared fixtures: databases (SQLite and the PostgreSQL every machine runs), settings, pages."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from pipeline.settings import Settings
from pipeline.store.db import dispose_engines
from pipeline.types import PageImage

REPO = Path(__file__).resolve().parent.parent
# ../shared beside the repo; DOCEXTRACT_TEST_SHARED points elsewhere (a git worktree's checkout)
SHARED = Path(os.environ.get("DOCEXTRACT_TEST_SHARED") or REPO.parent / "shared")
PG_ADMIN_URL = os.environ.get(
    "DOCEXTRACT_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Commands run by tests never start the background Prefect server (tests/test_local_server.py
# starts its own in a temporary home); they get a session server through PREFECT_API_URL.
os.environ.setdefault("DOCEXTRACT_PREFECT__SERVER", "ephemeral")


@pytest.fixture(autouse=True)
def _no_cached_engines() -> Iterator[None]:
    yield
    dispose_engines()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'docextract.db'}"


def _postgres_database() -> Iterator[str]:
    """A fresh database on the local PostgreSQL server, dropped afterwards."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"docextract_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        if os.environ.get("DOCEXTRACT_TEST_SKIP_PG") == "1":
            pytest.skip(f"PostgreSQL unreachable and DOCEXTRACT_TEST_SKIP_PG=1: {exc}")
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_ADMIN_URL} ({exc}). Start it, point "
            "DOCEXTRACT_TEST_PG_URL at one, or set DOCEXTRACT_TEST_SKIP_PG=1 to skip."
        )
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        dispose_engines()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from _postgres_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test using this runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'docextract.db'}"
    else:
        yield from _postgres_database()


@pytest.fixture
def settings(tmp_path: Path, sqlite_url: str) -> Settings:
    return Settings(
        db_url=sqlite_url,
        cache_dir=tmp_path / "cache",
        workers=1,
        model={"batch_size": 4, "max_new_tokens": 256},
    )


def make_page(
    directory: Path,
    number: int,
    size: tuple[int, int] = (850, 1100),
    label: str = "INVOICE",
    background: str = "white",
) -> PageImage:
    """A rendered page PNG on disk (one line of text), as the rasterizer would leave it.
    Scripted tests mark pages by `background`, which survives any tiling or resizing."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"p{number:04d}.png"
    image = Image.new("RGB", size, background)
    ImageDraw.Draw(image).text((40, 40), f"{label} page {number}", fill="black")
    image.save(path)
    return PageImage(number=number, path=path, width=size[0], height=size[1], dpi=100)


def is_red(image: Image.Image) -> bool:
    """Whether an image (a page or any tile of it) comes from a page made with a red background."""
    r, g, b = image.convert("RGB").resize((1, 1)).getpixel((0, 0))  # type: ignore[misc]
    return r > 180 and g < 120 and b < 120


@pytest.fixture(scope="session")
def prefect_api_url() -> Iterator[str]:
    """One temporary Prefect server for the whole session; subprocesses get its URL."""
    from flows.prefect_env import apply_quiet_defaults

    apply_quiet_defaults()
    import prefect.settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield str(prefect.settings.PREFECT_API_URL.value())


@pytest.fixture(scope="session")
def shared_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder shared by the session's runs (tiny-random is built once into it)."""
    return tmp_path_factory.mktemp("docextract-cache")
