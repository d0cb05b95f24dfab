"""Free question mode: one question about a document -> {answer, page, box}.

Each page is asked on its own (one batch), under a small grammar: the answer text or null when
the page does not hold it, and where on the page it is, as a box in thousandths of the page's
width and height (0-1000, the convention vision-language models are trained on for grounding).
The page comes from which request answered; the box is converted to page pixels.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.backends import VisionModel, run_in_batches
from pipeline.routing import whole_page_image
from pipeline.settings import Settings
from pipeline.types import Box, PageImage, TokenLogprob, VisionOutput, VisionRequest

ANSWER_MAX_LENGTH = 300
ASK_MAX_NEW_TOKENS = 160
MAX_QUESTION_LENGTH = 1000
MAX_PAGES_ASKED = 20

ANSWER_GRAMMAR: dict[str, Any] = {
    "type": "object",
    "properties": {
        "answer": {"anyOf": [{"type": "string", "maxLength": ANSWER_MAX_LENGTH}, {"type": "null"}]},
        "box": {
            "anyOf": [
                {
                    "type": "array",
                    "items": {"type": "integer", "minimum": 0, "maximum": 1000},
                    "minItems": 4,
                    "maxItems": 4,
                },
                {"type": "null"},
            ]
        },
    },
    "required": ["answer", "box"],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class PageAnswer:
    """One page's reply: the answer (None: not on this page), its box in page pixels, and the
    geometric-mean probability of the answer's tokens (None without log-probabilities)."""

    page: int
    answer: str | None
    box: Box | None
    confidence: float | None
    raw_text: str


@dataclass(frozen=True)
class Answer:
    """The answer to a question about a document; `page` is 1-based, `box` in page pixels
    (left, top, right, bottom) at the page's rendering DPI; both None when not known."""

    question: str
    answer: str | None
    page: int | None
    box: Box | None
    confidence: float | None
    pages: list[PageAnswer] = field(default_factory=list)

    def to_json(self, raw: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "question": self.question,
            "answer": self.answer,
            "page": self.page,
            "box": list(self.box) if self.box else None,
            "confidence": None if self.confidence is None else round(self.confidence, 4),
        }
        if raw:
            data["pages"] = [
                {"page": p.page, "answer": p.answer, "raw_text": p.raw_text} for p in self.pages
            ]
        return data


def ask_prompt(question: str) -> str:
    return (
        "Answer the question about this document page.\n"
        f"Question: {question.strip()}\n"
        'Reply with one JSON object {"answer": ..., "box": ...}: "answer" is the answer, short, '
        "copied from the page where it is printed there; null if this page does not show it. "
        '"box" is where on the page the answer is, as [left, top, right, bottom] in thousandths '
        "of the page width and height (0 to 1000), or null if you cannot tell."
    )


def check_question(question: str) -> str | None:
    """What is wrong with `question` (empty, too long), or None."""
    if not question.strip():
        return "the question is empty; ask something, e.g. 'What is the total?'"
    if len(question) > MAX_QUESTION_LENGTH:
        return f"the question has {len(question)} characters; keep it under {MAX_QUESTION_LENGTH}"
    return None


def ask(
    pages: Sequence[PageImage], model: VisionModel, settings: Settings, question: str
) -> Answer:
    """Ask `question` of every page (at most MAX_PAGES_ASKED) and keep the best answer.

    The best is the most confident non-null answer when the backend reports log-probabilities,
    else the first non-null one in page order. Raises ValueError for a question that
    `check_question` refuses; ModelError from the backend goes through.
    """
    problem = check_question(question)
    if problem:
        raise ValueError(problem)
    asked = list(pages)[:MAX_PAGES_ASKED]
    requests = [
        VisionRequest(
            images=(whole_page_image(page, settings, model),),
            prompt=ask_prompt(question),
            json_schema=ANSWER_GRAMMAR,
            max_new_tokens=ASK_MAX_NEW_TOKENS,
        )
        for page in asked
    ]
    outputs = run_in_batches(model, requests, settings.model.batch_size)
    replies = [read_page_answer(p, o) for p, o in zip(asked, outputs, strict=True)]
    best = pick_best(replies)
    if best is None:
        return Answer(question, None, None, None, None, replies)
    return Answer(question, best.answer, best.page, best.box, best.confidence, replies)


def read_page_answer(page: PageImage, output: VisionOutput) -> PageAnswer:
    """One page's reply, or a null answer when the reply is not the JSON asked for."""
    try:
        value = json.loads(output.text) if output.stop_reason == "end" else None
    except ValueError:
        value = None
    if not isinstance(value, dict) or not isinstance(value.get("answer"), str):
        return PageAnswer(page.number, None, None, None, output.text)
    answer = value["answer"].strip() or None
    box = _page_box(value.get("box"), page)
    confidence = _answer_confidence(output.tokens, answer) if answer else None
    return PageAnswer(page.number, answer, box, confidence, output.text)


def pick_best(replies: Sequence[PageAnswer]) -> PageAnswer | None:
    found = [r for r in replies if r.answer]
    if not found:
        return None
    if all(r.confidence is not None for r in found):
        return max(found, key=lambda r: r.confidence or 0.0)  # max keeps the first on a tie
    return found[0]


def _page_box(value: Any, page: PageImage) -> Box | None:
    """A [l, t, r, b] box in thousandths -> page pixels, corners ordered; None if malformed."""
    if not (isinstance(value, list) and len(value) == 4):
        return None
    if not all(isinstance(v, int) and 0 <= v <= 1000 for v in value):
        return None
    left, right = sorted((value[0], value[2]))
    top, bottom = sorted((value[1], value[3]))
    return (
        round(left * page.width / 1000),
        round(top * page.height / 1000),
        round(right * page.width / 1000),
        round(bottom * page.height / 1000),
    )


def _answer_confidence(tokens: Sequence[TokenLogprob] | None, answer: str) -> float | None:
    """exp(mean log-probability) of the tokens that spell the answer value; a per-token mean,
    so that long answers are not penalized for their length."""
    if not tokens:
        return None
    spelled = "".join(t.text for t in tokens)
    key = spelled.find('"answer"')
    start = spelled.find(json.dumps(answer, ensure_ascii=False)[1:-1], key)
    if key < 0 or start < 0:
        return None
    end = start + len(json.dumps(answer, ensure_ascii=False)) - 2
    picked, offset = [], 0
    for token in tokens:
        token_end = offset + len(token.text)
        if token_end > start and offset < end:
            picked.append(token.logprob)
        offset = token_end
    return math.exp(sum(picked) / len(picked)) if picked else None
