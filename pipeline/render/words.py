"""The words of a document's pages with boxes, read beside rendering: what `vouch` checks against.

`WordsReader` follows a document's pages as they render (a `PageStream`), in a thread of its
own, and has each page's words read by a sandboxed render worker of its own (the 'words'
request, `pipeline.render.reading`): the same address-space cap as rendering, and a deadline
per page. The model never waits for it: extraction reads the pages while their words are being
read; only `vouch`, after extraction, waits for the words (`result`).

Cache: beside each page's PNG, `p0001-200dpi.words.json` (the page's `PageWords` plus the
`policy` it was read under: OCR mode, language, limits). A page whose words could not be read
is not cached (the next run tries again) and is "grounding unavailable" in the provenance,
never a failure of the document.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError, InfrastructureError, InputError
from pipeline.evidence.ocr import tesseract_available
from pipeline.evidence.words import PageWords
from pipeline.ingest import PDF, IngestedFile
from pipeline.render.client import WorkerCrashed, Workers, WorkerTimedOut
from pipeline.render.passwords import load_passwords
from pipeline.render.raster import document_cache_dir
from pipeline.render.reading import AS_RENDERED, Frame
from pipeline.render.source import VerifiedSource
from pipeline.settings import GroundingSettings, Settings
from pipeline.types import PageImage

log = logging.getLogger(__name__)

POLICY_VERSION = 1  # bump when reading changes in a way that makes cached words stale
WORKER_START_S = 30.0  # headroom per page for starting the worker and importing its readers


def check_ocr(settings: Settings) -> None:
    """Raise ConfigError when OCR is forced (`grounding.ocr = always`) and Tesseract is not
    installed; in every other mode a missing Tesseract only makes scans' grounding unavailable."""
    grounding = settings.grounding
    if grounding.enabled and grounding.ocr == "always" and not tesseract_available():
        raise ConfigError(
            "grounding.ocr is 'always' but the 'tesseract' program is not installed: install "
            "Debian's tesseract-ocr package, or set DOCEXTRACT_GROUNDING__OCR=auto"
        )


def words_cache_path(page: PageImage) -> Path:
    """`p0001-200dpi.png` -> `p0001-200dpi.words.json`, beside it."""
    return page.path.with_name(f"{page.path.stem}.words.json")


def policy(settings: GroundingSettings) -> str:
    """What a cached page's words were read under; a different policy reads them again."""
    return (
        f"v{POLICY_VERSION}/{settings.ocr}/{settings.lang}/{settings.max_words}/"
        f"{settings.max_word_chars}/{settings.max_chars}"
    )


@dataclass
class DocumentWords:
    """The words of a document's pages (in page order) and, per page, where they came from:
    `{"page", "source": text_layer|ocr|unavailable, "words", "ms", "cached", "note"?,
    "unavailable"?}` (the provenance's `grounding` entry)."""

    pages: list[PageWords] = field(default_factory=list)
    provenance: list[dict[str, Any]] = field(default_factory=list)

    def add(self, words: PageWords, cached: bool, note: str | None = None) -> None:
        self.pages.append(words)
        entry: dict[str, Any] = {
            "page": words.page,
            "source": "unavailable" if words.unavailable else words.source,
            "words": len(words.words),
            "ms": round(words.seconds * 1000, 1),
            "cached": cached,
        }
        if words.truncated:
            entry["truncated"] = True
        if note:
            entry["note"] = note
        if words.unavailable:
            entry["unavailable"] = words.unavailable
        self.provenance.append(entry)

    def sorted(self) -> DocumentWords:
        order = sorted(range(len(self.pages)), key=lambda i: self.pages[i].page)
        return DocumentWords([self.pages[i] for i in order], [self.provenance[i] for i in order])


class WordsReader:
    """Reads the words of `pages` (a document's pages, possibly still rendering) in a
    background thread; `result()` waits for them."""

    def __init__(self, file: IngestedFile, pages: Iterable[PageImage], settings: Settings) -> None:
        self._file, self._pages, self._settings = file, pages, settings
        self._words = DocumentWords()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="docextract-words", daemon=True)
        self._thread.start()

    def result(
        self, rendered: Iterable[PageImage], timeout_s: float | None = None
    ) -> DocumentWords:
        """The words of each page of `rendered`, sorted by page, waiting at most `timeout_s`
        seconds; a page not read by then is 'unavailable' (and reading stops after the page at
        hand)."""
        self._thread.join(timeout_s)
        self._stop.set()
        with self._lock:
            words = DocumentWords(list(self._words.pages), list(self._words.provenance))
        done = {w.page for w in words.pages}
        for page in rendered:
            if page.number not in done:
                words.add(_unavailable(page, "its words were not read in time"), cached=False)
        return words.sorted()

    def _add(self, words: PageWords, cached: bool, note: str | None = None) -> None:
        with self._lock:
            if not self._stop.is_set():
                self._words.add(words, cached, note)

    def _run(self) -> None:
        doc_dir = document_cache_dir(self._settings.page_cache_dir, self._file.sha256)
        try:
            # The worker reads a private copy checked against the document's hash, as the
            # renderer does: never other bytes put at the path since it was hashed.
            source = VerifiedSource(self._file.path, self._file.sha256, doc_dir)
            with Workers(doc_dir) as workers, source:
                for page in self._pages:  # waits for each page as it renders
                    if self._stop.is_set():
                        return
                    cached = _cached(page, self._settings.grounding)
                    if cached is not None:
                        self._add(cached[0], cached=True, note=cached[1])
                    else:
                        self._read(page, workers, source)
        except (InputError, ConfigError, InfrastructureError) as exc:
            # Rendering ended with an error (the runner reports it, from the page stream) or
            # no worker could start: the pages read so far keep their words.
            log.debug("words of %s stopped: %s", self._file.path.name, exc)

    def _read(self, page: PageImage, workers: Workers, source: VerifiedSource) -> None:
        grounding = self._settings.grounding
        target = words_cache_path(page)
        request = self._request(page, target, source)
        deadline = time.monotonic() + grounding.text_layer_s + 2 * grounding.ocr_s
        deadline += WORKER_START_S
        event: dict[str, Any] | None = None
        why = "the render worker ended without reading the page's words"
        try:
            for item in workers.run(request, lambda: deadline):
                if item["event"] == "words":
                    event = item
                elif item["event"] == "error":
                    why = f"reading the words failed: {item['message']}"
        except WorkerTimedOut:
            why = "reading the words ran past its time limit (grounding.text_layer_s, ocr_s)"
        except WorkerCrashed as exc:
            why = f"reading the words {exc}"
        words = _load(target) if event is not None else None
        if words is None or event is None:
            self._add(_unavailable(page, why), cached=False)
            return
        if words.unavailable:
            target.unlink(missing_ok=True)  # not cached: the next run tries again
        self._add(words, cached=False, note=event.get("note"))

    def _request(self, page: PageImage, target: Path, source: VerifiedSource) -> dict[str, Any]:
        settings, file = self._settings, self._file
        grounding = settings.grounding
        passwords = load_passwords(settings.passwords_file).candidates(file.path, file.sha256)
        return {
            "op": "words",
            "kind": "pdf" if file.media_type == PDF else "image",
            "path": source.path() if file.media_type == PDF else str(page.path),
            "passwords": [None, *passwords],
            "memory_mb": settings.raster.render_memory_mb,
            "pages": [[page.number, str(page.path), page.dpi, str(target), *frame(page)]],
            "ocr": grounding.ocr,
            "lang": grounding.lang,
            "policy": policy(grounding),
            "limits": {
                "max_words": grounding.max_words,
                "max_word_chars": grounding.max_word_chars,
                "max_chars": grounding.max_chars,
                "text_layer_s": grounding.text_layer_s,
                "ocr_s": grounding.ocr_s,
            },
        }


def frame(page: PageImage) -> Frame:
    """(turn, skew): what the pages stage did to the page's PNG after rendering; the text
    layer, read in the rendered frame, is carried onto it (`render.reading`)."""
    facts = page.facts
    return Frame(facts.turned, facts.skew) if facts is not None else AS_RENDERED


def _cached(page: PageImage, settings: GroundingSettings) -> tuple[PageWords, str | None] | None:
    path = words_cache_path(page)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("policy") != policy(settings):
            return None
        if tuple(data.get("frame", AS_RENDERED)) != frame(page):
            return None  # read on the page before the pages stage turned it
        words = PageWords.from_json(data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):  # damaged: read the page again
        path.unlink(missing_ok=True)
        return None
    if words.page != page.number or (words.width, words.height) != (page.width, page.height):
        return None
    return words, data.get("note")


def _load(path: Path) -> PageWords | None:
    try:
        return PageWords.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _unavailable(page: PageImage, why: str) -> PageWords:
    return PageWords(page.number, page.width, page.height, page.dpi, "text_layer", unavailable=why)
