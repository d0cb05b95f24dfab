"""The split step of the spine: the documents a file holds, decided once per file and stored.

`split_bundle` runs first in `pipeline.runner.process`: for a multi-page file not judged before,
it renders the file (the pages stage included), reads every page's words, and `find_split`
decides the parts (the model asked where the words leave a page unsure); the split is stored on
the file's row and each part becomes a child document (`pipeline.store.bundles`), which then
goes down the rest of the spine on its own.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from sqlalchemy.orm import Session, sessionmaker

from pipeline.backends import VisionModel
from pipeline.errors import InfrastructureError, InputError
from pipeline.render.words import WordsReader
from pipeline.settings import Settings
from pipeline.split.ask import ask_model
from pipeline.split.detect import find_split
from pipeline.split.parts import Split, doubts
from pipeline.steps import Registered, render_all
from pipeline.store import bundles as store_bundles

log = logging.getLogger(__name__)


def split_bundle(
    factory: sessionmaker[Session], registered: Registered, settings: Settings, model: VisionModel
) -> list[Registered]:
    """The documents in a file: its child documents (page ranges of it, in page order) when it
    holds several, else the file itself (with the doubts about its pages, if any). The split is
    decided once per file and stored (a person's correction, `docextract split`, replaces it);
    a file already extracted whole is not split on its own, nor in split mode `never`."""
    if registered.part is not None or registered.error is not None:
        return [registered]
    with factory() as session:
        known = store_bundles.file_split(session, registered.document_id)
    stored = Split.from_json(known.split) if known.split is not None else None
    if stored is None:
        if settings.split.mode == "never" or known.extracted_whole or known.page_count == 1:
            return [registered]
        stored = _detect_split(registered, settings, model)
        if stored is None:
            return [registered]
        with factory.begin() as session:
            saved = store_bundles.save_split(session, registered.document_id, stored.to_json())
        stored = Split.from_json(saved)
    min_confidence = settings.split.min_confidence
    if stored.is_whole:
        return [replace(registered, doubts=doubts(stored, (1, stored.page_count), min_confidence))]
    with factory.begin() as session:
        children = [
            (part, store_bundles.register_part(session, registered.document_id, *part))
            for part in stored.parts
        ]
        return [
            Registered(
                child.id,
                registered.file,
                None,
                part,
                child.sha256,
                doubts(stored, part, min_confidence),
            )
            for part, child in children
        ]


def _detect_split(registered: Registered, settings: Settings, model: VisionModel) -> Split | None:
    """The split the file's pages say (None: one page, or it does not render: the document's
    own run reports why, or stops on the same fault with its claims given back, and the next
    run judges the file again)."""
    try:
        raster = render_all(registered.file, settings)
    except (InputError, InfrastructureError) as exc:
        log.info("no split for %s: %s", registered.path, exc)
        return None
    if raster.page_count < 2:
        return None
    words = WordsReader(registered.file, raster.pages, settings).result(raster.pages)
    ask = None
    if settings.split.ask_model:
        ask = lambda boundary, page: ask_model(  # noqa: E731
            boundary, page, model, settings, document=registered.path
        )
    return find_split(raster, words, settings.split, ask)
