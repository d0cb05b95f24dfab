"""Bundles: one file holding several documents, split into child documents (page ranges).

- `signals`: what each page's words say (page markers, document numbers, headings, letterheads,
  'continued');
- `boundaries`: per page, starts a document or continues one, with a confidence and a reason;
- `ask`: the model's answer for a page the words leave unsure (one constrained request);
- `parts`: the split itself (page ranges, separator sheets), from boundaries or a person;
- `stage`: the spine's split step (`split_bundle`: judge a file once, store its split, register
  its child documents);
- `detect`: all of it over one rendered file (`find_split`; imported from there: it needs the
  renderer's words, which the CLI need not load to print a split).

Settings: `Settings.split` (`SplitSettings`). Storing children: `pipeline.store.repository`.
"""

from pipeline.split.boundaries import Boundary
from pipeline.split.parts import (
    Part,
    Split,
    describe,
    doubts,
    parse_parts,
    person_split,
    split_at,
)
from pipeline.split.signals import PageSignals, read_signals

__all__ = [
    "Boundary",
    "PageSignals",
    "Part",
    "Split",
    "describe",
    "doubts",
    "parse_parts",
    "person_split",
    "read_signals",
    "split_at",
]
