"""A judge's answer to which way is up, shared by the orientation measures."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Guess:
    """A clockwise turn (0, 90, 180, 270) that makes the page upright, who said so, how sure."""

    turn: int
    by: str
    confidence: float
