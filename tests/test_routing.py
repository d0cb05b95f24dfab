"""`--schema auto`: the routing request, the choice, its probability from token log-probabilities,
fallbacks for unconstrained backends, and the real path on tiny-random."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import huggingface_hub.constants
import pytest
from conftest import make_page

from pipeline.backends import create_model
from pipeline.backends.scripted import ScriptedModel
from pipeline.errors import ConfigError
from pipeline.geometry import ImageGeometry
from pipeline.routing.classify import (
    ROUTE_KEY,
    choice_probability,
    read_route,
    route,
    routing_grammar,
    routing_prompt,
)
from pipeline.settings import ModelSettings, Settings
from pipeline.types import TokenLogprob, VisionOutput, VisionRequest

CANDIDATES = ("invoice", "form", "table", "chart")


class LogprobModel:
    """Answers every request with fixed tokens, as a backend that reports log-probabilities."""

    model_id = "fake-logprobs"
    geometry = ImageGeometry()

    def __init__(self, tokens: Sequence[tuple[str, float]], stop: str = "end") -> None:
        self.tokens = tuple(TokenLogprob(t, lp) for t, lp in tokens)
        self.stop = stop
        self.requests: list[VisionRequest] = []

    def load(self) -> None:
        pass

    def image_tokens(self, width: int, height: int) -> int:
        return 1

    def generate(self, requests: Sequence[VisionRequest]) -> list[VisionOutput]:
        self.requests += requests
        text = "".join(t.text for t in self.tokens)
        return [VisionOutput(text, self.stop, 10, len(self.tokens), tokens=self.tokens)]  # type: ignore[arg-type]


CHART_TOKENS = [('{"', 0.0), ("document", 0.0), ("_type", 0.0), ('":"', 0.0)]
CHART_TOKENS += [("ch", -0.5), ("art", -0.1), ('"}', 0.0)]


def test_route_picks_the_named_schema_with_its_probability(
    tmp_path: Path, settings: Settings
) -> None:
    model = LogprobModel(CHART_TOKENS)
    pages = [make_page(tmp_path / "1", 1), make_page(tmp_path / "2", 2, size=(600, 800))]
    chosen = route(pages, model, settings, CANDIDATES)
    assert chosen.schema_name == "chart"
    assert chosen.probability == pytest.approx(math.exp(-0.6))
    assert chosen.candidates == CANDIDATES and chosen.problem is None
    assert chosen.to_json()["probability"] == round(math.exp(-0.6), 4)
    (request,) = model.requests  # one request: the first page decides
    assert request.images[0].size == (850, 1100)
    assert request.json_schema == routing_grammar(CANDIDATES)
    assert request.json_schema["properties"][ROUTE_KEY]["enum"] == list(CANDIDATES)
    assert (
        "- chart: a chart or graph" in request.prompt
        and "- form: a filled-in form" in request.prompt
    )


def test_probability_counts_only_the_tokens_of_the_name() -> None:
    text = '{"document_type":"invoice"}'
    tokens = [TokenLogprob('{"document_type":"', -0.2), TokenLogprob("inv", -1.0)]
    tokens += [TokenLogprob("oice", -0.3), TokenLogprob('"}', -0.4)]
    assert choice_probability(text, tokens, "invoice") == pytest.approx(math.exp(-1.3))
    split = [TokenLogprob('{"document_type":"in', -0.7), TokenLogprob('voice"}', 0.0)]
    assert choice_probability(text, split, "invoice") == pytest.approx(math.exp(-0.7))
    assert choice_probability(text, None, "invoice") is None
    garbled = [TokenLogprob("▁{", 0.0)]  # pieces that do not spell the text: no trusted span
    assert choice_probability(text, garbled, "invoice") is None


def test_backends_without_logprobs_give_no_probability(tmp_path: Path, settings: Settings) -> None:
    model = ScriptedModel.from_replies([json.dumps({ROUTE_KEY: "form"})])
    chosen = route([make_page(tmp_path, 1)], model, settings, CANDIDATES)
    assert (chosen.schema_name, chosen.probability) == ("form", None)


@pytest.mark.parametrize(
    ("text", "stop", "schema", "problem"),
    [
        ("This is clearly an invoice.", "end", "invoice", None),
        ("An invoice with a table.", "end", None, "the answer names no single schema"),
        ('{"document_type":"receipt"}', "end", None, "'receipt' is not a candidate"),
        ('{"document_type":"inv', "length", None, "the answer was cut off"),
    ],
)
def test_answers_that_name_no_candidate_say_why(
    text: str, stop: str, schema: str | None, problem: str | None
) -> None:
    chosen = read_route(VisionOutput(text, stop, 1, 1), CANDIDATES)  # type: ignore[arg-type]
    assert (chosen.schema_name, chosen.problem) == (schema, problem)
    assert chosen.raw_text == text


def test_routing_needs_known_candidates_and_a_page(tmp_path: Path, settings: Settings) -> None:
    model = LogprobModel(CHART_TOKENS)
    with pytest.raises(ConfigError, match="at least two"):
        route([make_page(tmp_path, 1)], model, settings, ["invoice"])
    with pytest.raises(ConfigError, match="Unknown schema 'no-such-kind'"):
        route([make_page(tmp_path, 1)], model, settings, ["invoice", "no-such-kind"])
    empty = route([], model, settings, CANDIDATES)
    assert empty.schema_name is None and empty.problem and not model.requests


def test_prompt_defines_every_candidate() -> None:
    prompt = routing_prompt(CANDIDATES)
    assert all(f"- {name}: " in prompt for name in CANDIDATES)


# --- plumbing on the real transformers path -------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        settings = Settings(
            cache_dir=tmp_path_factory.mktemp("cache"),
            model=ModelSettings(name="tiny-random", device="cpu", dtype="float32"),
        )
        create_model(settings).load()  # builds tiny-random into the tmp cache (about 1 s)
        yield settings


def test_tiny_random_routes_to_a_candidate_with_a_probability(
    tiny_settings: Settings, tmp_path: Path
) -> None:
    model = create_model(tiny_settings)
    chosen = route([make_page(tmp_path, 1)], model, tiny_settings, CANDIDATES)
    assert chosen.schema_name in CANDIDATES, chosen
    assert json.loads(chosen.raw_text) == {ROUTE_KEY: chosen.schema_name}
    assert chosen.probability is not None and 0 < chosen.probability <= 1


def test_tiny_random_answers_a_question_within_the_grammar(
    tiny_settings: Settings, tmp_path: Path
) -> None:
    """The question mode shares the routing's page view; on tiny-random its answer parses."""
    from pipeline.asking import ask

    page = make_page(tmp_path, 1)
    answer = ask([page], create_model(tiny_settings), tiny_settings, "What is the total?")
    (reply,) = answer.pages
    json.loads(reply.raw_text)  # constrained: always the JSON asked for
    if answer.box is not None:
        left, top, right, bottom = answer.box
        assert 0 <= left <= right <= page.width and 0 <= top <= bottom <= page.height
    assert answer.confidence is None or 0 < answer.confidence <= 1
