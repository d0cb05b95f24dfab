"""`--schema auto`: classify a document by its first page, choosing among schema names.

One request, constrained to `{"document_type": <one of the names>}`, so any model (even a
random-weight one) answers with a known name. The probability of the choice is read from the
token log-probabilities: the grammar masks every token that cannot continue a candidate name, so
the sum of the log-probabilities of the tokens that spell the chosen name is the log of the
probability the model gave that name among the candidates (a token made certain by the grammar
adds log 1 = 0).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from pipeline.backends import VisionModel
from pipeline.errors import ConfigError
from pipeline.settings import Settings
from pipeline.tiling import whole_page_tiles
from pipeline.types import PageImage, TokenLogprob, VisionOutput, VisionRequest
from schemas import get_schema

AUTO = "auto"
ROUTING_PROMPT_VERSION = "1"  # a change to the routing prompt or grammar is a new version
ROUTE_KEY = "document_type"
ROUTE_MAX_NEW_TOKENS = 48


@dataclass(frozen=True)
class Route:
    """The schema chosen for a document. `schema_name` is None when the answer named none of
    the candidates (then `problem` says why); `probability` is None when the backend reports
    no token log-probabilities."""

    schema_name: str | None
    probability: float | None
    raw_text: str
    candidates: tuple[str, ...] = ()
    problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": self.schema_name,
            "probability": None if self.probability is None else round(self.probability, 4),
            "candidates": list(self.candidates),
            "prompt_version": ROUTING_PROMPT_VERSION,
            "raw_text": self.raw_text,
            "problem": self.problem,
        }


def routing_grammar(candidates: Sequence[str]) -> dict[str, Any]:
    """The JSON Schema of a routing answer: one key whose value is one of `candidates`."""
    return {
        "type": "object",
        "properties": {ROUTE_KEY: {"type": "string", "enum": list(candidates)}},
        "required": [ROUTE_KEY],
        "additionalProperties": False,
    }


def routing_prompt(candidates: Sequence[str]) -> str:
    """What kind of document this is, with each candidate's summary as its definition."""
    lines = ["What kind of document is shown in this image? The kinds are:"]
    for name in candidates:
        schema = get_schema(name)
        lines.append(f"- {name}: {schema.summary or schema.__doc__ or name}")
    lines.append(
        f'Answer with one JSON object {{"{ROUTE_KEY}": "<kind>"}} where <kind> is exactly one '
        "of the names above, the one that fits the document best."
    )
    return "\n".join(lines)


def route(
    pages: Sequence[PageImage],
    model: VisionModel,
    settings: Settings,
    candidates: Sequence[str],
    document: str | None = None,
) -> Route:
    """Choose one of `candidates` (schema names) for the document whose rendered pages these are
    (`document`, its path, travels with the request).

    Looks at the first page only (where a document says what it is). Raises ConfigError for
    fewer than two candidates or an unknown name, and lets ModelError from the backend through
    (the caller records it as it records extraction model errors).
    """
    names = tuple(dict.fromkeys(candidates))
    if len(names) < 2:
        raise ConfigError(
            f"--schema auto needs at least two candidate schemas to choose from, got {names!r}."
        )
    for name in names:
        get_schema(name)  # an unknown candidate is a configuration error, raised here
    if not pages:
        return Route(None, None, "", names, "the document has no page to classify")
    request = VisionRequest(
        images=(whole_page_image(pages[0], settings, model),),
        prompt=routing_prompt(names),
        json_schema=routing_grammar(names),
        max_new_tokens=ROUTE_MAX_NEW_TOKENS,
        document=document,
        page=pages[0].number,
    )
    (output,) = model.generate([request])
    return read_route(output, names)


def whole_page_image(page: PageImage, settings: Settings, model: VisionModel) -> Image.Image:
    """The whole page, downscaled like the extraction's whole-page view (never cut in tiles)."""
    with Image.open(page.path) as image:
        rgb = image.convert("RGB")
    return whole_page_tiles(page.number, rgb, settings.tiling, model.geometry)[0].image


def read_route(output: VisionOutput, candidates: Sequence[str]) -> Route:
    """The Route an answer gives. A constrained answer is one JSON object; an unconstrained
    backend's prose is accepted when it names exactly one candidate (probability then None)."""
    names = tuple(candidates)
    if output.stop_reason == "length":
        return Route(None, None, output.text, names, "the answer was cut off")
    chosen = json_choice(output.text)
    if chosen is None:
        mentioned = [n for n in names if re.search(rf"(?<!\w){re.escape(n)}(?!\w)", output.text)]
        if len(mentioned) == 1:
            return Route(mentioned[0], None, output.text, names)
        return Route(None, None, output.text, names, "the answer names no single schema")
    if chosen not in names:
        return Route(None, None, output.text, names, f"{chosen!r} is not a candidate")
    return Route(chosen, choice_probability(output.text, output.tokens, chosen), output.text, names)


def json_choice(text: str, key: str = ROUTE_KEY) -> str | None:
    """The string under `key` in the one JSON object of a constrained answer, if any."""
    start, end = text.find("{"), text.rfind("}")
    try:
        value = json.loads(text[start : end + 1]) if 0 <= start < end else None
    except ValueError:
        return None
    choice = value.get(key) if isinstance(value, dict) else None
    return choice if isinstance(choice, str) else None


def choice_probability(
    text: str, tokens: Sequence[TokenLogprob] | None, chosen: str, key: str = ROUTE_KEY
) -> float | None:
    """exp(sum of the log-probabilities of the tokens that overlap the chosen name's span).

    None when there are no log-probabilities, or when the tokens' texts do not spell out
    `text` (a tokenizer whose pieces do not decode one by one), so no span can be trusted.
    """
    if not tokens:
        return None
    spelled = "".join(t.text for t in tokens)
    match = re.search(rf'"{re.escape(key)}"\s*:\s*"({re.escape(chosen)})"', spelled)
    if spelled.strip() != text.strip() or match is None:
        return None
    start, end = match.span(1)
    total, offset = 0.0, 0
    for token in tokens:
        token_end = offset + len(token.text)
        if token_end > start and offset < end:
            total += token.logprob
        offset = token_end
    return math.exp(total)
