"""One document at a time per process: the same bytes under two names are extracted once.

Two files with the same content are one Document. When a run meets both at once, the second
waits for the first instead of claiming the units again (a claim is the process's, so it would
succeed and the first result would be dropped); once the first is done, the second finds the
units done and only records its path. Across processes the claims in the database decide.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_guard = threading.Lock()
_locks: dict[int, tuple[threading.Lock, int]] = {}  # document id -> (lock, holders + waiters)
_done: dict[int | None, set[int]] = {}  # run id -> documents already processed in that run


@contextmanager
def one_document(document_id: int, run_id: int | None = None) -> Iterator[bool]:
    """Hold the document for this process; yields whether this is its first time in `run_id`
    (a later name of the same bytes in the same run must not redo what the first just did)."""
    with _guard:
        lock, users = _locks.get(document_id, (threading.Lock(), 0))
        _locks[document_id] = (lock, users + 1)
    try:
        with lock:
            with _guard:
                seen = _done.setdefault(run_id, set())
                first = document_id not in seen
                seen.add(document_id)
            yield first
    finally:
        with _guard:
            lock, users = _locks[document_id]
            if users == 1:
                del _locks[document_id]
            else:
                _locks[document_id] = (lock, users - 1)


def forget_run(run_id: int | None) -> None:
    """Drop what `one_document` remembers about `run_id` (call when the run ends)."""
    with _guard:
        _done.pop(run_id, None)
