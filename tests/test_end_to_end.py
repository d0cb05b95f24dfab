"""`docextract run sample_docs` with tiny-random through the real CLI, Prefect flow, processor,
generate() with constrained decoding, and the database: SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from pipeline.store.db import open_database, session_factory
from pipeline.store.models import Document, Extraction, ExtractionEvent
from schemas.invoice import Invoice

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "sample_docs"
SAMPLE_FILES = sorted(p.name for p in SAMPLES.iterdir() if p.suffix in (".pdf", ".png"))

pytestmark = pytest.mark.slow


def docextract(
    *args: str, env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def cli_env(prefect_api_url: str, shared_cache_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PREFECT_API_URL=prefect_api_url,
        DOCEXTRACT_CACHE_DIR=str(shared_cache_dir),
        HF_HUB_OFFLINE="1",
        DOCEXTRACT_WORKERS="2",
    )
    env.pop("DOCEXTRACT_DB_URL", None)
    return env


def run_samples(db_url: str, env: dict[str, str]) -> list[dict[str, object]]:
    result = docextract(
        "run", str(SAMPLES), "--model", "tiny-random", "--db", db_url, "--json", env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_sample_docs_end_to_end_then_rerun_does_no_work(
    db_url: str, cli_env: dict[str, str]
) -> None:
    first = run_samples(db_url, cli_env)
    assert sorted(Path(str(r["path"])).name for r in first) == SAMPLE_FILES
    assert all(r["did_work"] for r in first)
    assert {r["status"] for r in first} <= {"succeeded", "needs_review"}, [
        (Path(str(r["path"])).name, r["status"], r["reason"]) for r in first
    ]

    factory = session_factory(open_database(db_url, create=False))
    with factory() as session:
        extractions = session.scalars(select(Extraction)).all()
        assert len(extractions) == len(SAMPLE_FILES)
        for extraction in extractions:
            assert extraction.record is not None
            Invoice.model_validate(extraction.record)  # the stored record is schema-valid
            assert extraction.model_id == "tiny-random-v1"
            assert extraction.raw_outputs and extraction.raw_outputs[0]["text"]
            assert extraction.image_tokens > 0 and extraction.output_tokens > 0
            assert extraction.provenance["prompt_version"] == "1"
        events_before = session.scalar(select(func.count()).select_from(ExtractionEvent))

    second = run_samples(db_url, cli_env)
    assert not any(r["did_work"] for r in second)
    assert [r["status"] for r in second] == [r["status"] for r in first]
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Extraction)) == len(SAMPLE_FILES)
        assert session.scalar(select(func.count()).select_from(Document)) == len(SAMPLE_FILES)
        assert session.scalar(select(func.count()).select_from(ExtractionEvent)) == events_before

    shown = docextract("show", "invoice-two-page.pdf", "--db", db_url, env=cli_env)
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert document["page_count"] == 2
    provenance = document["extractions"][0]["provenance"]
    assert provenance["model_id"] == "tiny-random-v1" and provenance["schema_version"] == "1.0"

    status = docextract("status", "--db", db_url, "--json", env=cli_env)
    counts = json.loads(status.stdout)["counts"]
    assert sum(counts.values()) == len(SAMPLE_FILES)


def test_unreachable_database_stops_the_run_before_work(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    result = docextract(
        "run",
        str(SAMPLES),
        "--model",
        "tiny-random",
        "--db",
        "postgresql://user:s3cret@127.0.0.1:1/nowhere",
        env=cli_env,
    )
    assert result.returncode == 3
    assert "Cannot connect" in result.stderr and "s3cret" not in result.stderr + result.stdout


def test_unknown_schema_is_a_configuration_error(cli_env: dict[str, str], sqlite_url: str) -> None:
    result = docextract("run", str(SAMPLES), "--schema", "receipt", "--db", sqlite_url, env=cli_env)
    assert result.returncode == 2
    assert "Unknown schema 'receipt'" in result.stderr and "invoice" in result.stderr
