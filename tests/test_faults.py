"""Fault injection: what each fault of the machine, the file system or the inbox leads to.

Each test injects one fault from issue 17 into real code (real render workers, real SQLite and
PostgreSQL, the CLI as a subprocess where the fault is about the process) and checks the
outcome the README's Robustness table promises. Offline, CPU, each bounded in time.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from fpdf import FPDF
from PIL import Image, ImageDraw, ImageStat
from rich.console import Console
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from pipeline import steps
from pipeline.backends import create_model
from pipeline.backends.batching import BatchingModel
from pipeline.backends.scripted import ScriptedModel, empty_record_json
from pipeline.cli import app
from pipeline.cli.output import print_outcomes
from pipeline.errors import GenerationTimeout, InfrastructureError, InputError, StoreError
from pipeline.export.write import csv_cell
from pipeline.extraction import summarize_errors
from pipeline.ingest import PDF, discover_all, ingest_file
from pipeline.pathtext import to_text
from pipeline.prompts import PROMPT_VERSION
from pipeline.render.client import Workers
from pipeline.render.raster import document_cache_dir, rasterize
from pipeline.runner import Outcome, process, register
from pipeline.settings import RasterSettings, Settings
from pipeline.store import repository as repo
from pipeline.store.db import open_database, session_factory
from pipeline.store.models import Document, Extraction, Run
from pipeline.store.queries import last_seen_paths
from pipeline.types import ErrorCategory, ErrorItem, PageImage, VisionOutput, VisionRequest
from schemas.invoice import Invoice

REPO = Path(__file__).resolve().parent.parent


def docextract(
    *args: str, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """The CLI in a subprocess (its exit code is what the scheduler sees)."""
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
        PYTHONPATH=str(REPO),
    )
    env.pop("DOCEXTRACT_DB_URL", None)
    return env


def make_pdf(path: Path, pages: int, *, dark: bool = False) -> Path:
    """A letter-size PDF: white pages with a line of text, or (`dark`) pages painted black, so
    a page's mean brightness says which file it came from."""
    pdf = FPDF(unit="pt", format=(612, 792))
    pdf.set_font("helvetica", size=24)
    for number in range(1, pages + 1):
        pdf.add_page()
        if dark:
            pdf.rect(0, 0, 612, 792, style="F")
        pdf.text(40, 60, f"Page {number}")
    pdf.output(str(path))
    return path


def brightness(path: Path) -> float:
    with Image.open(path) as im:
        return float(ImageStat.Stat(im.convert("L")).mean[0])


# ---------------------------------------------------------------- 1. the render reads other bytes


def test_file_replaced_after_hashing_renders_nothing_of_the_other_file(tmp_path: Path) -> None:
    inbox, cache = tmp_path / "inbox", tmp_path / "cache"
    inbox.mkdir()
    x = make_pdf(inbox / "x.pdf", 3)
    file = ingest_file(x, RasterSettings())
    os.replace(make_pdf(tmp_path / "y.pdf", 3, dark=True), x)  # after the hash, before the render

    with pytest.raises(InputError) as raised:
        rasterize(file, RasterSettings(dpi=50), cache)

    assert raised.value.category is ErrorCategory.IO_ERROR
    assert "changed after it was registered" in raised.value.message
    assert not list(document_cache_dir(cache, file.sha256).glob("*.png"))


def test_file_replaced_mid_render_keeps_its_own_pages(tmp_path: Path) -> None:
    inbox, cache = tmp_path / "inbox", tmp_path / "cache"
    inbox.mkdir()
    x = make_pdf(inbox / "x.pdf", 12)
    y = make_pdf(tmp_path / "y.pdf", 12, dark=True)
    file = ingest_file(x, RasterSettings())

    def swap_after_first(page: PageImage, _count: int) -> None:
        if y.exists():
            os.replace(y, x)  # as soon as page 1 is in the cache

    result = rasterize(file, RasterSettings(dpi=40, chunk_pages=1), cache, on_page=swap_after_first)

    assert not y.exists() and len(result.pages) == 12
    assert all(brightness(p.path) > 200 for p in result.pages), "a page of the other file"
    assert not list(document_cache_dir(cache, file.sha256).glob(".source-*"))  # copy removed


# ---------------------------------------------------------------- 2. loops and links in the inbox


def test_discovery_records_what_it_cannot_take_and_goes_on(tmp_path: Path) -> None:
    inbox, outside = tmp_path / "inbox", tmp_path / "outside"
    (inbox / "sub").mkdir(parents=True)
    outside.mkdir()
    make_pdf(inbox / "good.pdf", 1)
    (inbox / "a").symlink_to("sub/b")  # a -> sub/b -> ../a: ELOOP
    (inbox / "sub" / "b").symlink_to("../a")
    (outside / "shadow").write_text("root:secret")
    (inbox / "shadow.pdf").symlink_to(outside / "shadow")
    (inbox / "elsewhere").symlink_to(outside, target_is_directory=True)
    os.mkfifo(inbox / "pipe.pdf")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(inbox / "sock.pdf"))
    (inbox / "inner.pdf").symlink_to(inbox / "good.pdf")  # inside: followed (and deduplicated)

    found = discover_all([inbox])

    assert found.files == [inbox / "good.pdf"]
    reasons = {s.path.name: s.reason for s in found.skipped}
    assert set(reasons) == {"a", "b", "shadow.pdf", "elsewhere", "pipe.pdf", "sock.pdf"}
    assert "Too many levels of symbolic links" in reasons["a"]
    assert "out of the inbox" in reasons["shadow.pdf"] and "out of" in reasons["elsewhere"]
    assert "FIFO" in reasons["pipe.pdf"] and "socket" in reasons["sock.pdf"]
    followed = discover_all([inbox], follow_outside=True)
    assert [p.name for p in followed.files] == ["shadow", "good.pdf"]  # one real file once


# ---------------------------------------------------------------- 4. abort after a document timeout


class _SlowSteps(ScriptedModel):
    """A backend with `prepare`/`generate_prepared` whose generation takes 50 ms steps until
    `should_stop()` says stop (or 30 s pass), as transformers' generate() with a criterion."""

    def __init__(self) -> None:
        super().__init__(lambda request, number: "{}")
        self.returned = threading.Event()

    def prepare(self, requests: Sequence[VisionRequest]) -> list[VisionRequest]:
        return list(requests)

    def generate_prepared(
        self, prepared: list[VisionRequest], *, should_stop=None
    ) -> list[VisionOutput]:  # type: ignore[no-untyped-def]
        end = time.monotonic() + 30
        while time.monotonic() < end and not (should_stop is not None and should_stop()):
            time.sleep(0.05)
        self.returned.set()
        return self.generate(prepared)


def test_an_abandoned_batch_stops_at_its_next_step_and_close_joins_the_threads() -> None:
    inner = _SlowSteps()
    model = BatchingModel(inner, max_batch=4, max_wait_s=0.0)
    image = Image.new("RGB", (32, 32), "white")

    with pytest.raises(GenerationTimeout):
        model.generate([VisionRequest(images=(image,), prompt="p")] * 2, timeout_s=0.3)

    assert inner.returned.wait(2), "the batch no one waits for kept generating"
    model.close(timeout_s=5)
    assert not any(t.is_alive() for t in model._threads)


@pytest.mark.slow
def test_a_document_timeout_with_tiny_random_exits_0(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    make_pdf(inbox / "long.pdf", 30)
    env = {**cli_env, "DOCEXTRACT_EXTRACTION__TIMEOUT_S": "4"}

    result = docextract(
        "run",
        str(inbox),
        "--model",
        "tiny-random",
        "--db",
        f"sqlite:///{tmp_path / 'a.db'}",
        "--json",
        env=env,
    )

    assert result.returncode == 0, result.stderr[-2000:]  # was 134: SIGABRT at exit
    assert "terminate called" not in result.stderr
    [row] = json.loads(result.stdout)
    assert row["status"] in ("failed", "partial") and "time limit" in row["reason"]


# ---------------------------------------------------------------- 5. two runs on an empty database

_OPEN = """
import sys, time
from pipeline.store.db import open_database
while time.time() < float(sys.argv[2]):  # start together
    time.sleep(0.001)
open_database(sys.argv[1])
"""


def test_processes_racing_to_create_the_schema_all_succeed(db_url: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = str(time.time() + 3)  # after every interpreter has imported SQLAlchemy
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN, db_url, start],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=120)[1] for p in racers]

    assert [p.returncode for p in racers] == [0, 0, 0, 0], "\n".join(errors)[-2000:]
    open_database(db_url, create=False)  # at the head revision


# ---------------------------------------------------------------- 6. names that are not UTF-8


def scripted() -> ScriptedModel:
    return ScriptedModel(lambda request, n: empty_record_json(request.json_schema))


def test_a_name_that_is_not_utf8_is_stored_losslessly_and_shown(
    tmp_path: Path, db_url: str
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    raw = os.fsencode(inbox) + b"/bad\xff\xfename.png"
    with open(raw, "wb") as fh:
        printed_page().save(fh, format="PNG")
    [path] = discover_all([inbox]).files
    settings = Settings(db_url=db_url, cache_dir=tmp_path / "cache", workers=1)
    factory = session_factory(open_database(db_url))

    [outcome] = process(factory, register(factory, path, settings), settings, model=scripted())

    assert outcome.status == "needs_review"  # an empty invoice: stored, with its reasons
    with factory() as session:
        [document] = session.scalars(select(Document)).all()
        assert document.paths[0].name == "bad\\xff\\xfename.png"  # escaped text
        assert os.fsencode(last_seen_paths(document)[0]) == raw  # and back, byte for byte
    shown = CliRunner().invoke(app, ["show", "bad\\xff\\xfename.png", "--db", db_url])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["paths"] == [to_text(os.fsdecode(raw))]


# ---------------------------------------------------------------- 7. secrets in the render sandbox


def test_the_render_worker_starts_without_the_secrets_of_the_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCEXTRACT_DB_URL", "postgresql://etl:hunter2@db/docextract")
    monkeypatch.setenv("DOCEXTRACT_MODEL__API_KEY", "sk-hunter2")
    monkeypatch.setenv("PGPASSWORD", "hunter2")
    pdf = make_pdf(tmp_path / "x.pdf", 1)
    request = {
        "op": "info",
        "kind": "pdf",
        "path": str(pdf),
        "password": None,
        "memory_mb": 1024,
        "max_page_pixels": 10**8,
        "max_pages": 10,
        "threads": 1,
        "work_dir": str(tmp_path),
        "renderer": "poppler",
        "fallback": None,
    }

    with Workers(tmp_path) as workers:
        events = [e["event"] for e in workers.run(request, lambda: time.monotonic() + 60)]
        assert workers._current is not None
        environ = Path(f"/proc/{workers._current._proc.pid}/environ").read_bytes()

    assert events == ["info", "done"]  # it still works: finds poppler and the pipeline
    assert b"hunter2" not in environ and b"DOCEXTRACT" not in environ


# ---------------------------------------------------------------- 8. names printed unsafely

HOSTILE = "/inbox/[link=https://evil.example]click[/link]\x1b[2J\x1b]0;owned\x07.pdf"


def test_names_and_reasons_print_as_text_not_markup_or_escapes() -> None:
    console = Console(record=True, force_terminal=True, width=300, file=io.StringIO())
    outcome = Outcome(HOSTILE, "ab" * 32, "invoice", "needs_review", HOSTILE, 1, 0.1, True)

    print_outcomes(console, [outcome])

    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "[link=https://evil.example]click[/link]" in out  # shown, not turned into a link
    assert "\x1b]8;" not in out and "\x1b[2J" not in out and "\x1b]0;" not in out
    assert "\\x1b[2J" in out  # the escape is visible as text


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ('=HYPERLINK("http://evil.example","x")', '\'=HYPERLINK("http://evil.example","x")'),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-2+3+cmd", "'-2+3+cmd"),
        ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
        ("\t=1", "'\t=1"),
        ("-12.50", "-12.50"),  # a number stays a number
        ("+3", "+3"),
        ("ACME GmbH", "ACME GmbH"),
    ],
)
def test_csv_cells_that_a_spreadsheet_would_run_are_neutralized(value: str, written: str) -> None:
    assert csv_cell(value) == written


# ---------------------------------------------------------------- 9. memory that grows with pages


def test_the_cli_scripted_model_keeps_nothing_per_request(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path, model={"backend": "scripted"})
    model = create_model(settings)  # what `docextract run --backend scripted` builds
    page = Image.new("RGB", (1700, 2200), "white")  # ~11 MB of pixels, as a 200 DPI page

    for _ in range(20):
        model.generate([VisionRequest(images=(page,), prompt="p")])

    assert isinstance(model, ScriptedModel)
    assert model.requests == [] and model.batches == []  # nothing that grows with the pages


# ---------------------------------------------------------------- 10. smaller faults


def _dead_worker() -> str:
    """The name a killed process on this machine had (a pid that is not running)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return f"{repo.worker_name().rsplit(':', 1)[0]}:{child.pid}"


def test_a_file_that_vanishes_says_so(tmp_path: Path, settings: Settings) -> None:
    x = make_pdf(tmp_path / "x.pdf", 1)
    file = ingest_file(x, settings.raster)
    x.unlink()  # after hashing, before rendering

    with pytest.raises(InputError) as raised:
        rasterize(file, settings.raster, tmp_path / "cache")
    assert raised.value.category is ErrorCategory.IO_ERROR and "vanished" in raised.value.message

    factory = session_factory(open_database(settings.db_url.get_secret_value()))
    with pytest.raises(InputError, match="vanished after it was found"):
        register(factory, x, settings)  # deleted after discovery: no hash, so no row
    console = Console(record=True, width=200, file=io.StringIO())
    print_outcomes(console, [Outcome(str(x), "", "invoice", "failed", "gone", None, 0, False)])
    shown = console.export_text()
    assert "(unchanged)" not in shown and "0 already done" in shown


def test_a_unit_held_by_another_run_says_so(tmp_path: Path, db_url: str) -> None:
    png = tmp_path / "scan.png"
    printed_page().save(png)
    settings = Settings(db_url=db_url, cache_dir=tmp_path / "cache", workers=1)
    factory = session_factory(open_database(db_url))
    registered = register(factory, png, settings)
    model = scripted()
    unit = repo.UnitOfWork(
        registered.document_id, "invoice", Invoice.schema_version, model.model_id, PROMPT_VERSION
    )
    with factory.begin() as session:
        assert repo.claim(session, unit, "etl@other-host:42", lease=timedelta(hours=1))

    [outcome] = process(factory, registered, settings, model=model)

    assert (outcome.status, outcome.did_work) == ("running", False)
    assert outcome.reason == "held by another run (etl@other-host:42); not done here"


def test_page_reasons_name_their_page_once() -> None:
    errors = [
        ErrorItem(ErrorCategory.CORRUPT, "page 2: the page is empty", 2),
        ErrorItem(ErrorCategory.TIMEOUT, "not extracted in time", 3),
    ]
    assert summarize_errors(errors) == "page 2: the page is empty; page 3: not extracted in time"


def test_a_killed_runs_row_is_closed_as_interrupted_when_its_claims_are_taken_over(
    tmp_path: Path, db_url: str
) -> None:
    factory = session_factory(open_database(db_url))
    dead = _dead_worker()
    with factory.begin() as session:
        document = repo.register_document(session, tmp_path / "a.pdf", "ab" * 32, 10, PDF)
        run = repo.start_run(session, "run", {})
        run.started_by = dead  # as the killed process recorded it
        unit = repo.UnitOfWork(document.id, "invoice", "1", "scripted", PROMPT_VERSION)
        repo.claim(session, unit, dead, lease=timedelta(hours=1), run_id=run.id)
        run_id = run.id

    with factory.begin() as session:
        assert repo.claim(session, unit, repo.worker_name(), lease=timedelta(hours=1))

    with factory() as session:
        killed = session.get(Run, run_id)
        assert killed is not None and killed.finished_at is not None
        assert killed.counts["interrupted"] is True


def test_sqlite_under_a_folder_that_cannot_be_made_is_exit_3(tmp_path: Path) -> None:
    """`run` creates its SQLite file (reading commands never do): a folder it cannot make, on a
    read-only file system, is a database error (exit 3) with a message, not a traceback."""
    document = tmp_path / "a.png"
    document.write_bytes(b"not read: the database is checked first")
    args = ["run", str(document), "--backend", "scripted", "--schema", "invoice"]
    result = CliRunner().invoke(app, [*args, "--db", "sqlite:////sys/docextract-nope/x.db"])
    assert result.exit_code == 3, result.output
    assert "Cannot create the folder" in " ".join(result.output.split())


# ---------------------------------------------------------------- 3. faults of the machine


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """`disk("size=64k")`: a fresh tmpfs mounted for the test (`remount,ro` etc. later through
    `mount`), unmounted afterwards. Skips where mounting is not allowed (not root)."""
    mounted: list[Path] = []

    def make(options: str) -> Path:
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True
        )
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr!r}")
        mounted.append(where)
        return where

    yield make
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


def remount(where: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(where)], check=True)


def unit_status(db_url: str) -> list[tuple[str, str | None]]:
    factory = session_factory(open_database(db_url))
    with factory() as session:
        return [(e.status, e.error_category) for e in session.scalars(select(Extraction))]


def test_a_read_only_cache_stops_the_document_and_gives_its_claim_back(
    tmp_path: Path, db_url: str, disk: Callable[[str], Path]
) -> None:
    cache = disk("size=8m")
    (cache / "pages").mkdir()
    remount(cache, "ro")
    png = tmp_path / "scan.png"
    printed_page().save(png)
    settings = Settings(db_url=db_url, cache_dir=cache, workers=1)
    factory = session_factory(open_database(db_url))
    registered = register(factory, png, settings)

    with pytest.raises(InfrastructureError, match="Read-only file system"):
        process(factory, registered, settings, model=scripted())
    assert unit_status(db_url) == [("pending", None)]  # not failed: the next run does it

    remount(cache, "rw")
    [outcome] = process(factory, registered, settings, model=scripted())
    assert outcome.did_work and outcome.status == "needs_review"


def test_a_full_cache_disk_is_not_a_failed_document(
    tmp_path: Path, db_url: str, disk: Callable[[str], Path]
) -> None:
    cache = disk("size=1500k")
    scan = tmp_path / "noise.jpg"  # ~0.6 MB of JPEG that becomes ~3 MB of PNG in the cache
    Image.frombytes("RGB", (1000, 1000), os.urandom(3_000_000)).save(scan, quality=30)
    settings = Settings(db_url=db_url, cache_dir=cache, workers=1)
    factory = session_factory(open_database(db_url))
    registered = register(factory, scan, settings)

    with pytest.raises(InfrastructureError, match="No space left on device"):
        process(factory, registered, settings, model=scripted())
    assert unit_status(db_url) == [("pending", None)]


@pytest.mark.parametrize("where", ["renew_claim", "record_pages"])
def test_a_database_lost_mid_document_stops_it_instead_of_recording_a_failure(
    tmp_path: Path, db_url: str, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    png = tmp_path / "scan.png"
    printed_page().save(png)
    settings = Settings(db_url=db_url, cache_dir=tmp_path / "cache", workers=1)
    factory = session_factory(open_database(db_url))
    registered = register(factory, png, settings)

    def dropped(*args: object, **kwargs: object) -> None:
        raise OperationalError("UPDATE ...", {}, Exception("server closed the connection"))

    monkeypatch.setattr(steps, "DB_RETRY_DELAY_S", 0.01)
    with monkeypatch.context() as patch:
        patch.setattr(steps.repo, where, dropped)
        with pytest.raises(StoreError, match="server closed the connection"):
            process(factory, registered, settings, model=scripted())
    assert unit_status(db_url) == [("pending", None)]  # given back, not failed/internal_error

    [outcome] = process(factory, registered, settings, model=scripted())  # the next run
    assert outcome.did_work and outcome.status == "needs_review"


@pytest.mark.slow
def test_cli_read_only_cache_exits_4_then_a_plain_run_does_the_work(
    tmp_path: Path, cli_env: dict[str, str], disk: Callable[[str], Path]
) -> None:
    cache = disk("size=8m")
    remount(cache, "ro")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    make_pdf(inbox / "a.pdf", 1)
    env = {**cli_env, "DOCEXTRACT_CACHE_DIR": str(cache)}
    db = f"sqlite:///{tmp_path / 'a.db'}"

    stopped = docextract("run", str(inbox), "--backend", "scripted", "--db", db, env=env)
    assert stopped.returncode == 4, stopped.stderr[-2000:]
    last = stopped.stderr[stopped.stderr.rindex("machine fault:") :]  # (Prefect logs the task)
    assert "Read-only file system" in last and "DOCEXTRACT_CACHE_DIR" in last

    remount(cache, "rw")
    again = docextract("run", str(inbox), "--backend", "scripted", "--db", db, "--json", env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert [(r["status"], r["did_work"]) for r in json.loads(again.stdout)] == [
        ("needs_review", True)
    ]


def printed_page() -> Image.Image:
    """A small page with a line of print (a white page is set aside as blank)."""
    image = Image.new("RGB", (300, 400), "white")
    ImageDraw.Draw(image).text((20, 20), "INVOICE 1  total 10.00", fill="black")
    return image
