"""Per-field confidence: value spans in raw JSON, token probabilities, parts, reasons."""

from __future__ import annotations

import json
import math

import pytest

from pipeline.evidence import (
    FieldGrounding,
    confidence_reasons,
    grounding_reasons,
    record_confidence,
    token_probabilities,
    value_spans,
)
from pipeline.evidence.confidence import agreement_score, grounding_score
from pipeline.types import TokenLogprob

RAW = (
    '{"seller": {"name": "Caf\\u00e9 \\"Zur Post\\"", "tax_id": null},\n'
    ' "lines": [{"amount": "12.50", "q": 2}, {"amount": "-3.00", "q": 1.5}],\n'
    ' "rows": [["a", "b\\\\c"], []], "ok": true, "e": ""}'
)


def test_value_spans_with_escapes_nesting_and_lists() -> None:
    spans = value_spans(RAW)
    shown = {path: RAW[a:b] for path, (a, b) in spans.items()}
    assert shown == {
        "seller.name": 'Caf\\u00e9 \\"Zur Post\\"',
        "seller.tax_id": "null",
        "lines[0].amount": "12.50",
        "lines[0].q": "2",
        "lines[1].amount": "-3.00",
        "lines[1].q": "1.5",
        "rows[0][0]": "a",
        "rows[0][1]": "b\\\\c",
        "ok": "true",
        "e": "",
    }
    data = json.loads(RAW)
    assert json.loads(f'"{shown["seller.name"]}"') == data["seller"]["name"]


def test_truncated_json_is_an_error() -> None:
    with pytest.raises(ValueError, match="ends"):
        value_spans('{"total": "12.5')


def test_token_probabilities_cover_only_the_value() -> None:
    pieces = [('{"', -0.01), ("total", -0.02), ('":', -0.01), (' "', -5.0), ("12", -0.1),
              (".", -0.05), ("50", -1.0), ('",', -3.0), (' "n', -0.2), ('": ', -0.3),
              ("null", -0.7), ("}", -0.0)]  # fmt: skip
    tokens = [TokenLogprob(text, lp) for text, lp in pieces]
    text = "".join(t.text for t in tokens)
    probs = token_probabilities(text, tokens)
    # ' "' ends right before the value and '",' starts right after it: neither is the value's.
    assert probs["total"] == pytest.approx(math.exp(-1.0))  # the least likely of 12 . 50
    assert probs["n"] == pytest.approx(math.exp(-0.7))
    straddling = [TokenLogprob('{"total": "1', -2.0), TokenLogprob('2"}', -0.1)]
    assert token_probabilities('{"total": "12"}', straddling)["total"] == pytest.approx(
        math.exp(-2.0)
    )  # a token that carries part of the value counts, whatever else it carries
    assert token_probabilities("{}", [TokenLogprob("[]", 0.0)]) == {}


def test_parts_and_their_product() -> None:
    exact = FieldGrounding("total", "amount", "exact", 1, (0, 0, 5, 5), "12.50", 1)
    missing = FieldGrounding("due", "date", "not_found")
    unknown = FieldGrounding("name", "text", "unavailable")
    conf = record_confidence(
        {"total": "12.50", "due": "2025-01-01", "name": "ACME"},
        token_probs={"total": 0.9, "due": 0.8},
        groundings={"total": exact, "due": missing, "name": unknown},
        must={"total", "due"},
        alternatives={"total": ["12,50", "12.60"]},
        rule_paths={"total"},
    )
    assert conf["total"].parts == {"tokens": 0.9, "grounding": 1.0, "agreement": 0.5, "rules": 0.5}
    assert conf["total"].value == pytest.approx(0.9 * 0.5 * 0.5)
    assert conf["due"].value == pytest.approx(0.8 * 0.1)
    assert conf["name"].parts == {"rules": 1.0}  # unknown parts are omitted, not guessed
    assert grounding_score(FieldGrounding("x", "text", "not_found"), False) == 0.5
    assert grounding_score(FieldGrounding("x", "text", "fuzzy"), False) == 0.7
    assert agreement_score("2025-01-01", []) is None


def test_review_reasons_a_clerk_can_act_on() -> None:
    groundings = {
        "total": FieldGrounding("total", "amount", "not_found", closest=("4,645.14", 1)),
        "seller.name": FieldGrounding("seller.name", "text", "not_found"),
        "iban": FieldGrounding("iban", "identifier", "unavailable"),
    }
    values = {"total": "4,654.14", "seller.name": "ACME", "iban": "DE89"}
    reasons = grounding_reasons(values, groundings, lambda path: path != "seller.name")
    assert reasons == ["total 4,654.14 is not printed on the document (closest: 4,645.14, page 1)"]
    conf = record_confidence(values, groundings=groundings, must={"total"})
    assert confidence_reasons(conf, 0.8) == [
        "total: confidence 0.10 is below 0.80 (grounding 0.10)",
        "seller.name: confidence 0.50 is below 0.80 (grounding 0.50)",
    ]
