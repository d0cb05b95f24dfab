"""Progress events from a run, for whoever listens (the CLI's progress bar; logs otherwise).

A listener is process-wide rather than a parameter, because runs are Prefect flows whose
parameters must stay small and serializable.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("docextract.progress")


@dataclass(frozen=True)
class ProgressEvent:
    kind: str  # "discovered" (total set), "document_done"
    total: int = 0
    path: str = ""
    status: str = ""


Listener = Callable[[ProgressEvent], None]

_listeners: list[Listener] = []
_lock = threading.Lock()


def add_listener(listener: Listener) -> None:
    with _lock:
        _listeners.append(listener)


def remove_listener(listener: Listener) -> None:
    with _lock:
        if listener in _listeners:
            _listeners.remove(listener)


def emit(event: ProgressEvent) -> None:
    with _lock:
        listeners = list(_listeners)
    if not listeners:
        log.info("%s %s %s", event.kind, event.path, event.status)
    for listener in listeners:
        listener(event)
