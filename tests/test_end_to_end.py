"""`docextract run sample_docs` with tiny-random through the real CLI, Prefect flow, processor,
generate() with constrained decoding, and the database: SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont
from sqlalchemy import func, select

from pipeline.errors import StoreError
from pipeline.prompts import PROMPT_VERSION
from pipeline.store.db import open_database, session_factory
from pipeline.store.models import Document, Extraction, ExtractionEvent
from schemas import get_schema
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


def run_samples(
    db_url: str, env: dict[str, str], inbox: Path = SAMPLES, *options: str
) -> list[dict[str, object]]:
    result = docextract(
        "run",
        str(inbox),
        "--model",
        "tiny-random",
        "--schema",
        "invoice",
        "--db",
        db_url,
        "--json",
        *options,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_sample_docs_end_to_end_then_rerun_does_no_work(
    sqlite_url: str, cli_env: dict[str, str]
) -> None:
    db_url = sqlite_url
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
            assert extraction.provenance["prompt_version"] == PROMPT_VERSION
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
    assert (
        provenance["model_id"] == "tiny-random-v1"
        and provenance["schema_version"] == Invoice.schema_version
    )

    status = docextract("status", "--db", db_url, "--json", env=cli_env)
    counts = json.loads(status.stdout)["counts"]
    assert sum(counts.values()) == len(SAMPLE_FILES)


def test_postgresql_with_routing_then_rerun_does_no_work(
    postgres_url: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """The production database, and `--schema auto`: each document is routed once, extracted
    with the chosen schema, and a second run neither routes nor extracts again."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    chosen = ["invoice-born-digital.pdf", "form-supplier-registration.pdf", "chart-revenue-bar.png"]
    for name in chosen:
        shutil.copy(SAMPLES / name, inbox / name)
    first = run_samples(postgres_url, cli_env, inbox, "--schema", "auto")
    assert len(first) == len(chosen) and all(r["did_work"] for r in first)
    assert {r["schema"] for r in first} <= {"invoice", "form", "table", "chart"}, first
    assert {r["status"] for r in first} <= {"succeeded", "needs_review"}, first
    factory = session_factory(open_database(postgres_url, create=False))
    with factory() as session:
        extractions = session.scalars(select(Extraction)).all()
        assert len(extractions) == len(chosen)
        for extraction in extractions:
            route = extraction.provenance["route"]
            assert route["schema"] == extraction.schema_name
            assert 0 < route["probability"] <= 1
            get_schema(extraction.schema_name).model_validate(extraction.record)
    second = run_samples(postgres_url, cli_env, inbox, "--schema", "auto")
    assert not any(r["did_work"] for r in second)
    assert sorted(r["schema"] for r in second) == sorted(r["schema"] for r in first)


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


def test_kill_9_mid_run_then_run_again_loses_and_duplicates_nothing(
    sqlite_url: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """SIGKILL the whole `docextract run` (CLI, Prefect, render workers) over 20 documents
    mid-run, then run again: each document ends with exactly one final extraction."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for number in range(20):
        image = Image.new("RGB", (800, 1000), "white")
        # print of a real size (10 pt at 200 DPI): a 4-pt line alone is below the blank floor
        font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 28)
        ImageDraw.Draw(image).text((50, 50), f"INVOICE {number}", fill="black", font=font)
        image.save(inbox / f"doc-{number:02d}.png")
    command = [
        sys.executable,
        "-m",
        "pipeline",
        "run",
        str(inbox),
        "--model",
        "tiny-random",
        "--schema",
        "invoice",
        "--db",
        sqlite_url,
        "--json",
    ]
    victim = subprocess.Popen(
        command,
        cwd=REPO,
        env=cli_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_final_extractions(sqlite_url, at_least=3, process=victim)
    finally:
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
    factory = session_factory(open_database(sqlite_url, create=False))
    with factory() as session:
        done_before = session.scalar(
            select(func.count()).select_from(Extraction).where(Extraction.status != "running")
        )
    assert done_before is not None and done_before < 20, "the run ended before it was killed"

    rows = run_samples(sqlite_url, cli_env, inbox)
    assert len(rows) == 20 and {r["status"] for r in rows} <= {"succeeded", "needs_review"}
    with factory() as session:
        extractions = session.scalars(select(Extraction)).all()
        assert session.scalar(select(func.count()).select_from(Document)) == 20
    assert len(extractions) == 20
    assert all(e.status in ("succeeded", "needs_review") and e.record for e in extractions)
    assert sum(1 for r in rows if r["did_work"]) == 20 - done_before


def wait_for_final_extractions(
    db_url: str, at_least: int, process: subprocess.Popen[bytes], timeout: float = 300
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before it was killed"
        try:
            factory = session_factory(open_database(db_url, create=False))
            with factory() as session:
                done = session.scalar(
                    select(func.count())
                    .select_from(Extraction)
                    .where(Extraction.status.in_(["succeeded", "needs_review", "failed"]))
                )
        except StoreError:  # the run has not created the schema yet
            done = 0
        if (done or 0) >= at_least:
            return
        time.sleep(0.2)
    raise AssertionError(f"fewer than {at_least} documents done within {timeout} s")
