"""The model's view on a page the signals did not decide: does it start a document?

One request per such page, the whole page downscaled as the routing request sees it,
constrained to `{"page_role": "continuation" | "first_page"}`, so any model answers with one of
the two. Its answer counts only when the model is sure (the probability of the chosen answer,
from the token log-probabilities, at or above `split.min_confidence`); a backend without
log-probabilities is never taken as sure.
"""

from __future__ import annotations

import logging

from pipeline.backends import VisionModel
from pipeline.errors import ModelError
from pipeline.routing.classify import choice_probability, json_choice, whole_page_image
from pipeline.settings import Settings
from pipeline.split.boundaries import Boundary, overrule
from pipeline.types import PageImage, VisionRequest

log = logging.getLogger(__name__)

SPLIT_PROMPT_VERSION = "1"
ROLE_KEY = "page_role"
ROLES = ("continuation", "first_page")  # the first is what a backend that knows nothing says
ROLE_MAX_NEW_TOKENS = 24
PROMPT = (
    "This image is one page of a scanned stack of business documents (invoices, letters, "
    "forms). Is it the first page of a document, or does it continue the document of the page "
    "before it? A first page usually shows a letterhead, a title such as INVOICE, a date and "
    "an addressee; a continuation page carries on a table or text, often with 'page 2' or "
    f'\'continued\'. Answer with one JSON object {{"{ROLE_KEY}": "first_page"}} or '
    f'{{"{ROLE_KEY}": "continuation"}}.'
)


def role_grammar() -> dict[str, object]:
    return {
        "type": "object",
        "properties": {ROLE_KEY: {"type": "string", "enum": list(ROLES)}},
        "required": [ROLE_KEY],
        "additionalProperties": False,
    }


def ask_model(
    boundary: Boundary,
    page: PageImage,
    model: VisionModel,
    settings: Settings,
    document: str | None = None,
) -> Boundary:
    """The boundary as the model decides it when it is sure; else unchanged, with what the
    model said added to `why`. A model error leaves the boundary as it was."""
    request = VisionRequest(
        images=(whole_page_image(page, settings, model),),
        prompt=PROMPT,
        json_schema=role_grammar(),
        max_new_tokens=ROLE_MAX_NEW_TOKENS,
        document=document,
        page=page.number,
    )
    try:
        (output,) = model.generate([request])
    except ModelError as exc:
        log.warning("split question on page %d: %s", page.number, exc)
        return overrule(
            boundary,
            boundary.starts,
            boundary.confidence,
            boundary.by,
            f"{boundary.why}; the model could not answer: {exc}",
        )
    role = _role(output.text)
    if role is None:
        return boundary
    probability = choice_probability(output.text, output.tokens, role, key=ROLE_KEY)
    said = f"the model says {role.replace('_', ' ')}" + (
        f" (p={probability:.2f})" if probability is not None else " (no probability)"
    )
    if probability is None or probability < settings.split.min_confidence:
        return overrule(
            boundary,
            boundary.starts,
            boundary.confidence,
            boundary.by,
            f"{boundary.why}; {said}, not sure enough",
        )
    return overrule(boundary, role == "first_page", probability, "model", said)


def _role(text: str) -> str | None:
    role = json_choice(text, ROLE_KEY)
    return role if role in ROLES else None
