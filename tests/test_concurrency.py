"""Concurrent workers (separate processes) on SQLite and PostgreSQL: each unit of work is done
exactly once; the claims of a worker killed mid-run are taken over by the next run on the same
machine, and a remote worker's claims once their lease expires.

Workers run `pipeline.runner.register` + `process`, exactly what the flow's task runs, with a
scripted model that takes a little time per request so that the two workers interleave.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from _seed import MODEL_ID, make_png, ops_settings
from sqlalchemy import select

from pipeline import runner
from pipeline.backends.scripted import ScriptedModel, empty_record_json
from pipeline.ingest import discover
from pipeline.prompts import PROMPT_VERSION
from pipeline.store import repository as repo
from pipeline.store.db import open_database, session_factory
from pipeline.store.models import Document, Extraction, ExtractionEvent
from schemas.invoice import Invoice

REPO = Path(__file__).resolve().parent.parent
DOCUMENTS = 20

WORKER = """
import json, sys, time
from datetime import timedelta
from pathlib import Path
from pipeline import runner
from pipeline.prompts import PROMPT_VERSION
from pipeline.store import repository as repo
from pipeline.backends.scripted import ScriptedModel, empty_record_json
from pipeline.ingest import discover
from pipeline.settings import Settings
from pipeline.store.db import open_database, session_factory

url, inbox, cache, go, delay = sys.argv[1:6]
settings = Settings(db_url=url, cache_dir=cache, schemas=["invoice"],
                    model={"backend": "scripted"}, tiling={"strategy": "anyres"})
factory = session_factory(open_database(url, create=False))

def answer(request, number):
    time.sleep(float(delay))
    return empty_record_json(request.json_schema)

model = ScriptedModel(answer, model_id="scripted-empty")
print("ready", flush=True)
while not Path(go).exists():
    time.sleep(0.01)
for path in discover([Path(inbox)]):
    registered = runner.register(factory, path, settings)
    for outcome in runner.process(factory, registered, settings, model=model):
        print(json.dumps(outcome.to_json()), flush=True)
"""


def make_inbox(folder: Path, count: int) -> Path:
    for number in range(count):
        make_png(folder / f"doc-{number:02d}.png", f"document {number}")
    return folder


def start_worker(db_url: str, inbox: Path, cache: Path, go: Path, delay: float) -> Any:
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, db_url, str(inbox), str(cache), str(go), str(delay)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout is not None
    line = worker.stdout.readline()
    assert line.strip() == "ready", worker.stderr.read() if worker.stderr else line
    return worker


def outcomes(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def events_by_extraction(factory: Any) -> dict[int, list[str]]:
    with factory() as session:
        events = session.scalars(select(ExtractionEvent).order_by(ExtractionEvent.id)).all()
    history: dict[int, list[str]] = {}
    for event in events:
        history.setdefault(event.extraction_id, []).append(event.status)
    return history


def test_two_workers_do_each_unit_exactly_once(db_url: str, tmp_path: Path) -> None:
    factory = session_factory(open_database(db_url))  # the schema exists before they start
    inbox = make_inbox(tmp_path / "inbox", DOCUMENTS)
    go = tmp_path / "go"
    workers = [start_worker(db_url, inbox, tmp_path / "cache", go, 0.05) for _ in range(2)]
    go.touch()
    results = [w.communicate(timeout=180) for w in workers]
    for worker, (_, stderr) in zip(workers, results, strict=True):
        assert worker.returncode == 0, stderr[-3000:]
    done = [[o["path"] for o in outcomes(out) if o["did_work"]] for out, _ in results]
    assert all(done), f"the workers did not overlap: {[len(d) for d in done]}"
    assert sorted(done[0] + done[1]) == sorted(str(p) for p in discover([inbox]))  # once each

    with factory() as session:
        extractions = session.scalars(select(Extraction)).all()
        assert session.query(Document).count() == DOCUMENTS
    assert len(extractions) == DOCUMENTS
    assert Counter(e.status for e in extractions) == {"needs_review": DOCUMENTS}
    assert {e.attempts for e in extractions} == {1}
    histories = events_by_extraction(factory)
    assert all(h == ["running", "needs_review"] for h in histories.values()), histories


def test_a_killed_workers_claim_is_taken_over_by_the_next_run(db_url: str, tmp_path: Path) -> None:
    """kill -9 mid-run, run again: the dead worker's claim (same machine, process gone) is
    taken over at once; every document ends with exactly one extraction."""
    factory = session_factory(open_database(db_url))
    inbox = make_inbox(tmp_path / "inbox", 3)
    go = tmp_path / "go"
    stuck = start_worker(db_url, inbox, tmp_path / "cache", go, 600)  # hangs in generate()
    go.touch()
    orphan = wait_for_running_claim(factory, stuck)
    os.kill(stuck.pid, signal.SIGKILL)
    stuck.communicate(timeout=30)
    assert stuck.returncode == -signal.SIGKILL

    settings = ops_settings(db_url, tmp_path / "cache")  # the default lease: one hour
    assert next_run(factory, inbox, settings) == dict.fromkeys(
        [p.name for p in discover([inbox])], True
    )
    with factory() as session:
        rows = session.scalars(select(Extraction)).all()
    assert len(rows) == 3 and {r.status for r in rows} == {"needs_review"}
    taken = next(r for r in rows if r.id == orphan.extraction_id)
    assert taken.attempts == 2 and taken.claimed_by is None
    assert events_by_extraction(factory)[orphan.extraction_id] == [
        "running",
        "running",
        "needs_review",
    ]


def test_another_machines_claim_waits_for_its_lease(db_url: str, tmp_path: Path) -> None:
    """A claim held by a worker elsewhere cannot be checked for life: only its lease ends it."""
    factory = session_factory(open_database(db_url))
    inbox = make_inbox(tmp_path / "inbox", 2)
    settings = ops_settings(db_url, tmp_path / "cache")
    registered = runner.register(factory, discover([inbox])[0], settings)
    unit = repo.UnitOfWork(
        registered.document_id, "invoice", Invoice.schema_version, MODEL_ID, PROMPT_VERSION
    )
    with factory.begin() as session:
        assert repo.claim(session, unit, "etl@another-host:4242", lease=timedelta(hours=1))

    first = next_run(factory, inbox, settings)
    assert first[Path(registered.path).name] is False  # left alone within the lease
    time.sleep(0.6)
    short = ops_settings(db_url, tmp_path / "cache", claim_lease_s=0.5)
    assert next_run(factory, inbox, short)[Path(registered.path).name] is True


def next_run(factory: Any, inbox: Path, settings: Any) -> dict[str, bool]:
    model = ScriptedModel(lambda r, n: empty_record_json(r.json_schema), model_id=MODEL_ID)
    worked: dict[str, bool] = {}
    for path in discover([inbox]):
        registered = runner.register(factory, path, settings)
        for outcome in runner.process(factory, registered, settings, model=model):
            worked[Path(outcome.path).name] = outcome.did_work
    return worked


class Orphan:
    def __init__(self, name: str, extraction_id: int) -> None:
        self.name, self.extraction_id = name, extraction_id


def wait_for_running_claim(factory: Any, worker: Any, timeout: float = 60) -> Orphan:
    """The unit `worker` has claimed (status running), once it is stuck in generate()."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert worker.poll() is None, worker.communicate()[1][-3000:]
        with factory() as session:
            row = session.scalars(select(Extraction).where(Extraction.status == "running")).first()
            if row is not None and row.document.page_count:  # rendered: now in generate()
                return Orphan(Path(row.document.paths[0].path).name, row.id)
        time.sleep(0.1)
    raise AssertionError("the worker never claimed a unit")


def test_the_same_bytes_under_two_names_in_one_run_are_extracted_once(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """a.pdf and a byte-identical b.pdf in flight at once (the flow's task, two threads): one
    extraction, one attempt, both paths recorded, and the second name does no work."""
    from concurrent.futures import ThreadPoolExecutor

    from flows.extract import extract_document
    from pipeline.backends import register_backend

    def slow(request: Any, number: int) -> str:
        time.sleep(0.3)  # both tasks are in flight before the first one finishes
        return empty_record_json(request.json_schema)

    register_backend("slow-scripted", lambda settings: ScriptedModel(slow, "scripted-slow"))
    monkeypatch.setenv("DOCEXTRACT_DB_URL", db_url)
    monkeypatch.setenv("DOCEXTRACT_CACHE_DIR", str(tmp_path / "cache"))
    first = make_png(tmp_path / "in" / "a.png", "same bytes")
    second = tmp_path / "in" / "b.png"
    second.write_bytes(first.read_bytes())
    factory = session_factory(open_database(db_url))
    with factory.begin() as session:
        run_id = repo.start_run(session, "run", {}).id
    overrides = {"model": {"backend": "slow-scripted"}, "tiling": {"strategy": "anyres"}}
    with ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(extract_document.fn, str(p), overrides, run_id, ["failed"])
            for p in (first, second)
        ]
        rows = [row for f in futures for row in f.result()]
    assert sorted(r["did_work"] for r in rows) == [False, True], rows
    with factory() as session:
        (extraction,) = session.scalars(select(Extraction)).all()
        (document,) = session.scalars(select(Document)).all()
        assert extraction.attempts == 1
        assert sorted(p.name for p in document.paths) == ["a.png", "b.png"]
