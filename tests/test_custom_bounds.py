"""Every leaf type a custom Pydantic model can declare gets a bound in its grammar, type by
type: what the grammar accepts is a valid record, and what it refuses is a runaway value.

Checked with llguidance itself (the engine the in-process backend decodes with) over a byte
tokenizer, so "bounded" means what decoding will do, not what the schema text looks like.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from decimal import Decimal
from typing import Any

import pytest
from llguidance import LLMatcher, LLTokenizer, TokenizerWrapper
from pydantic import BaseModel, create_model

from pipeline.backends.grammar import JSON_GRAMMAR_DEFAULTS
from schemas.base import ExtractionSchema
from schemas.custom import DEFAULT_MAX_ITEMS, _wrap


class _Bytes:
    """A tokenizer with one token per byte (and an end token): any text is one token path."""

    eos_token_id = 256
    bos_token_id = None
    tokens = [bytes([i]) for i in range(256)] + [b"<eos>"]

    def __call__(self, text: bytes) -> list[int]:
        return list(text)


TOKENIZER = LLTokenizer(TokenizerWrapper(_Bytes()))


def accepts(schema: dict[str, Any], text: str) -> bool:
    """Whether constrained decoding with `schema` can produce exactly `text`."""
    grammar = LLMatcher.grammar_from_json_schema(schema, defaults=JSON_GRAMMAR_DEFAULTS)
    matcher = LLMatcher(TOKENIZER, grammar)
    tokens = list(text.encode())
    if matcher.validate_tokens(tokens) != len(tokens):
        return False
    matcher.consume_tokens(tokens)
    return matcher.is_accepting()


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


class Line(BaseModel):
    amount: Decimal | None = None


def schema_with(annotation: Any) -> type[ExtractionSchema]:
    model = create_model("Probe", value=(annotation, ...))
    return _wrap(model, "probe", None, "probe", ())


RUNAWAY = "9" * 40
# (annotation, a value the grammar must accept (JSON), a runaway it must refuse (JSON))
CASES = {
    "Decimal": (Decimal, '"3772.50"', '"}3772' + RUNAWAY + '"'),
    "Decimal | None": (Decimal | None, "null", '"' + RUNAWAY + '"'),
    "int": (int, "42", RUNAWAY),
    "float": (float, '"12.5"', '"' + RUNAWAY + '"'),
    "date": (dt.date, '"2026-11-27"', '"2026-11-27' + RUNAWAY + '"'),
    "datetime": (dt.datetime, '"2026-11-27T02:00:00Z"', '"2026-11-27T02:00' + RUNAWAY + '"'),
    "time": (dt.time, '"02:00:05"', '"02:00' + RUNAWAY + '"'),
    "enum": (Colour, '"red"', '"redd"'),
    "nested model": (Line, '{"amount":"1.00"}', '{"amount":"' + RUNAWAY + '"}'),
    "list": (list[Decimal], '["1.5","2"]', "[" + ",".join(['"1"'] * (DEFAULT_MAX_ITEMS + 1)) + "]"),
    "dict": (
        dict[str, Decimal],
        '{"net":"1.5"}',
        "{" + ",".join(f'"k{n}":"1"' for n in range(DEFAULT_MAX_ITEMS + 1)) + "}",
    ),
    "dict key": (dict[str, int], '{"a":1}', '{"' + "k" * 200 + '":1}'),
}


@pytest.mark.parametrize("name", CASES)
def test_each_leaf_type_is_bounded_in_the_grammar(name: str) -> None:
    annotation, good, runaway = CASES[name]
    schema = schema_with(annotation)
    grammar = schema.grammar_schema()
    assert accepts(grammar, f'{{"value":{good}}}'), json.dumps(grammar)
    schema.model_validate_json(f'{{"value":{good}}}')  # what the grammar allows validates
    assert not accepts(grammar, f'{{"value":{runaway}}}'), json.dumps(grammar)
