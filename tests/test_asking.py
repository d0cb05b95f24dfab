"""Free question mode: the page that answers, its box in page pixels, confidence from
log-probabilities, malformed replies, and `docextract ask` through the CLI."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import pytest
from conftest import make_page
from typer.testing import CliRunner

from pipeline.asking import ANSWER_GRAMMAR, ask, check_question, read_page_answer
from pipeline.backends.scripted import ScriptedModel
from pipeline.cli import app
from pipeline.geometry import ImageGeometry
from pipeline.settings import Settings
from pipeline.types import TokenLogprob, VisionOutput, VisionRequest

SAMPLES = Path(__file__).resolve().parents[1] / "sample_docs"


def tokens_of(text: str, logprob: float) -> tuple[TokenLogprob, ...]:
    """`text` as one token per character, each with `logprob` (JSON punctuation at 0)."""
    return tuple(TokenLogprob(c, 0.0 if c in '{}[]":,' else logprob) for c in text)


class PerPageModel:
    """Replies by page height (the test pages differ in size), with or without logprobs."""

    model_id = "fake-pages"
    geometry = ImageGeometry()

    def __init__(self, replies: dict[int, tuple[str, float | None]]) -> None:
        self.replies = replies
        self.requests: list[VisionRequest] = []

    def load(self) -> None:
        pass

    def image_tokens(self, width: int, height: int) -> int:
        return 1

    def generate(self, requests: Sequence[VisionRequest]) -> list[VisionOutput]:
        self.requests += requests
        outputs = []
        for request in requests:
            text, logprob = self.replies[request.images[0].height]
            tokens = None if logprob is None else tokens_of(text, logprob)
            outputs.append(VisionOutput(text, "end", 10, len(text), tokens=tokens))
        return outputs


def two_pages(tmp_path: Path) -> list:
    return [make_page(tmp_path / "1", 1, (800, 1000)), make_page(tmp_path / "2", 2, (800, 900))]


def test_the_page_that_answers_gives_page_and_box_in_pixels(
    tmp_path: Path, settings: Settings
) -> None:
    model = PerPageModel(
        {
            1000: ('{"answer":null,"box":null}', None),
            900: ('{"answer":"18.2","box":[900,100,800,200]}', None),
        }
    )
    answer = ask(two_pages(tmp_path), model, settings, "What is the highest value?")
    assert (answer.answer, answer.page, answer.box) == ("18.2", 2, (640, 90, 720, 180))
    assert answer.confidence is None
    assert [r.json_schema for r in model.requests] == [ANSWER_GRAMMAR, ANSWER_GRAMMAR]
    assert "What is the highest value?" in model.requests[0].prompt
    assert answer.to_json() == {
        "question": "What is the highest value?",
        "answer": "18.2",
        "page": 2,
        "box": [640, 90, 720, 180],
        "confidence": None,
    }


def test_with_logprobs_the_most_confident_page_wins(tmp_path: Path, settings: Settings) -> None:
    model = PerPageModel(
        {
            1000: ('{"answer":"12.4","box":null}', -2.0),
            900: ('{"answer":"18.2","box":null}', -0.1),
        }
    )
    answer = ask(two_pages(tmp_path), model, settings, "What is the highest value?")
    assert (answer.answer, answer.page, answer.box) == ("18.2", 2, None)
    assert answer.confidence == pytest.approx(math.exp(-0.1))
    assert [p.answer for p in answer.pages] == ["12.4", "18.2"]


def test_without_logprobs_the_first_answering_page_wins(tmp_path: Path, settings: Settings) -> None:
    model = PerPageModel(
        {1000: ('{"answer":"A","box":null}', None), 900: ('{"answer":"B","box":null}', None)}
    )
    assert ask(two_pages(tmp_path), model, settings, "Which?").page == 1


@pytest.mark.parametrize(
    "text",
    ["not json", '{"answer": 5}', '{"answer":"  ","box":null}', '{"answer":"x","box":[1,2]}'],
)
def test_malformed_or_empty_replies(text: str, tmp_path: Path) -> None:
    page = make_page(tmp_path, 1)
    reply = read_page_answer(page, VisionOutput(text, "end", 1, 1))
    assert reply.box is None
    assert reply.answer == ("x" if '"x"' in text else None)


def test_nothing_found_is_an_answer_of_null(tmp_path: Path, settings: Settings) -> None:
    model = ScriptedModel.from_replies(['{"answer":null,"box":null}'])
    answer = ask([make_page(tmp_path, 1)], model, settings, "Who signed?")
    assert (answer.answer, answer.page, answer.box) == (None, None, None)


def test_questions_are_checked() -> None:
    assert check_question("  ") and check_question("x" * 1001)
    assert check_question("What is the total?") is None
    with pytest.raises(ValueError, match="empty"):
        ask([], ScriptedModel.from_replies([]), Settings(), " ")


def test_ask_command_prints_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCEXTRACT_CACHE_DIR", str(tmp_path / "cache"))
    runner = CliRunner()
    document = str(SAMPLES / "chart-revenue-bar.png")
    question = "What is the highest value in this chart?"
    result = runner.invoke(app, ["ask", document, question, "--backend", "scripted"])
    assert result.exit_code == 0, result.output
    # the scripted backend answers null everywhere: the plumbing, not the answer, is tested
    assert json.loads(result.stdout) == {
        "question": question,
        "answer": None,
        "page": None,
        "box": None,
        "confidence": None,
    }
    missing = runner.invoke(app, ["ask", str(tmp_path / "nope.pdf"), "Total?"])
    assert missing.exit_code == 2 and "no such file" in missing.output
    empty = runner.invoke(app, ["ask", document, " ", "--backend", "scripted"])
    assert empty.exit_code == 2 and "empty" in empty.output
