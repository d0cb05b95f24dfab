"""Constrained JSON decoding on CPU: llguidance vs xgrammar vs unconstrained, on tiny-random.

For each library, in one run on the same batches (Invoice schema, mixed image sizes, greedy):
decode time per step, time spent inside the logits processor per step, how many outputs end with
EOS inside the token budget, and how many validate against the Invoice model and against its JSON
Schema (which holds the maxLength / pattern bounds). A probe also feeds each compiled grammar
records that break one bound as text. xgrammar is optional (`pip install 'docextract[bench]'`).
The last line is the llguidance constraint overhead as a share of the unconstrained decode step.

    .venv/bin/python bench/grammar.py [--batches 4] [--batch-size 4] [--max-new-tokens 400]

The tiny model's decode step is a few ms, so the overhead share is a worst case: on a GPU with
the 7B model a decode step costs 20-30 ms and the same CPU mask time is a far smaller share.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import median
from typing import Any

import jsonschema
import torch
from PIL import Image
from pydantic import ValidationError
from transformers import LogitsProcessorList

from pipeline.backends.grammar import JsonSchemaLogitsProcessor, llg_tokenizer, new_matcher
from pipeline.backends.transformers import TransformersVisionModel
from pipeline.backends.transformers import create_tiny as create
from pipeline.settings import ModelSettings, Settings
from pipeline.types import VisionRequest
from schemas.invoice import Invoice

SIZES = [
    (300, 400),
    (120, 60),
    (1000, 1000),
    (60, 300),
    (640, 480),
    (200, 200),
    (90, 500),
    (400, 90),
]
PROMPT = "Extract the invoice on this page as JSON. Use null for fields that are not printed."


class Timed:
    """Wraps a logits processor and adds up the wall time spent in it."""

    def __init__(self, inner: Callable[[Any, Any], Any]) -> None:
        self.inner, self.seconds, self.calls = inner, 0.0, 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        try:
            return self.inner(input_ids, scores)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1


@dataclass
class Tally:
    """Per-batch timings (ms per decode step; medians are reported) and per-row outcomes."""

    decode_ms: list[float] = field(default_factory=list)
    mask_ms: list[float] = field(default_factory=list)
    rows: int = 0
    ended: int = 0
    valid_model: int = 0
    valid_schema: int = 0
    violations: Counter[str] = field(default_factory=Counter)


def batches(count: int, size: int) -> list[list[VisionRequest]]:
    schema = Invoice.grammar_schema()
    out = []
    for b in range(count):
        sizes = [SIZES[(b * size + i) % len(SIZES)] for i in range(size)]
        out.append(
            [
                VisionRequest(
                    images=(Image.new("RGB", s, (40 * b % 255, 200, 90)),),
                    prompt=PROMPT,
                    json_schema=schema,
                )
                for s in sizes
            ]
        )
    return out


def xgrammar_invoice(model: TransformersVisionModel) -> Any | None:
    """xgrammar's compiled Invoice grammar, in the same compact format (None: not installed)."""
    if importlib.util.find_spec("xgrammar") is None:
        return None
    import xgrammar as xgr

    tokenizer = model.processor.tokenizer
    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=model.vocab_size)
    return xgr.GrammarCompiler(info).compile_json_schema(
        json.dumps(Invoice.grammar_schema()), any_whitespace=False, separators=(",", ":")
    )


def run(
    model: TransformersVisionModel,
    requests: list[VisionRequest],
    processor: Any,
    max_new_tokens: int,
    tally: Tally | None,
) -> int:
    """Generate one batch; add its figures to `tally` (None: warm-up). Returns decode steps."""
    inputs = model.encode(requests)
    eos, pad = model.special_token_ids()
    kwargs = {"do_sample": False, "eos_token_id": eos, "pad_token_id": pad}
    start = time.perf_counter()
    model.model.generate(**inputs, max_new_tokens=1, **kwargs)
    prefill = time.perf_counter() - start
    timed = Timed(processor) if processor is not None else None
    start = time.perf_counter()
    sequences = model.model.generate(
        **inputs,
        max_new_tokens=max_new_tokens,
        **kwargs,
        logits_processor=LogitsProcessorList([timed] if timed else []),
    )
    wall = time.perf_counter() - start
    new = sequences[:, inputs["input_ids"].shape[1] :].tolist()
    if tally is not None:
        tally.decode_ms.append(max(wall - prefill, 0.0) / max(len(new[0]) - 1, 1) * 1000)
        if timed:
            tally.mask_ms.append(timed.seconds / timed.calls * 1000)
        for tokens in new:
            check(model, tokens, eos, tally)
    return len(new[0])


def check(model: TransformersVisionModel, tokens: list[int], eos: list[int], tally: Tally) -> None:
    tally.rows += 1
    end = next((i for i, t in enumerate(tokens) if t in eos), None)
    if end is None:
        return
    tally.ended += 1
    text = model.processor.tokenizer.decode(tokens[:end], skip_special_tokens=True)
    try:
        Invoice.model_validate_json(text)
        tally.valid_model += 1
    except ValidationError:
        pass  # counted as invalid: the share of valid outputs is the figure
    strict = True
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        # Raw control characters inside strings are not JSON; look past them for the rest.
        tally.violations["not JSON: " + error.msg] += 1
        strict = False
        try:
            record = json.loads(text, strict=False)
        except json.JSONDecodeError:
            return
    errors = list(jsonschema.Draft202012Validator(Invoice.grammar_schema()).iter_errors(record))
    tally.valid_schema += strict and not errors
    tally.violations.update(_violation(error) for error in errors)


def _violation(error: jsonschema.ValidationError) -> str:
    """'maxLength at seller.name': the innermost failed keyword (anyOf hides it) and where."""
    leaf = jsonschema.exceptions.best_match([error])
    where = ".".join("*" if isinstance(p, int) else str(p) for p in leaf.absolute_path)
    return f"{leaf.validator} at {where}"


def probe(model: TransformersVisionModel, xgrammar: Any | None) -> dict[str, dict[str, bool]]:
    """Does each grammar reject, as text, a record that breaks exactly one bound?"""
    base: dict[str, Any] = {k: None for k in Invoice.grammar_schema()["properties"]}
    base.update(line_items=[], tax_lines=[])
    cases = {
        "valid record": {},
        "maxLength (81 chars)": {"invoice_number": "x" * 81},
        "pattern (amount '12abc')": {"total": "12abc"},
        "pattern (date 2024-13-45)": {"issue_date": "2024-13-45"},
        "pattern (percent '885')": {"tax_lines": [{"rate": "885", "amount": None}]},
        "control character in string": {"invoice_number": "A\u0003B"},
    }
    tokenizer = model.processor.tokenizer
    llg = llg_tokenizer(tokenizer, model.vocab_size)
    result: dict[str, dict[str, bool]] = {}
    for name, change in cases.items():
        # json.dumps escapes control characters; put the raw one back for the last case.
        text = json.dumps({**base, **change}, separators=(",", ":")).replace("\\u0003", "\x03")
        matcher = new_matcher(llg, Invoice.grammar_schema())
        ok = matcher.consume_tokens(tokenizer.encode(text, add_special_tokens=False))
        result[name] = {"llguidance": ok and matcher.is_accepting()}
        if xgrammar is not None:
            import xgrammar as xgr

            result[name]["xgrammar"] = xgr.GrammarMatcher(xgrammar).accept_string(text)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=400)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = create(Settings(model=ModelSettings(name="tiny-random", device="cpu")))
    model.load()
    tokenizer, vocab = model.processor.tokenizer, model.vocab_size
    factories: dict[str, Callable[[int], Any]] = {
        "llguidance": lambda batch: JsonSchemaLogitsProcessor(
            tokenizer,
            [Invoice.grammar_schema()] * batch,
            vocab_size=vocab,
            eos_token_ids=model.special_token_ids()[0],
            pad_token_id=model.special_token_ids()[1],
        ),
    }
    xgrammar = xgrammar_invoice(model)
    if xgrammar is not None:
        import xgrammar as xgr

        factories["xgrammar"] = lambda batch: xgr.contrib.hf.LogitsProcessor([xgrammar] * batch)
    work = batches(args.batches, args.batch_size)
    for factory in factories.values():  # warm-up: tokenizer wrapping, compile caches
        run(model, work[0], factory(args.batch_size), args.max_new_tokens, None)
    tallies = {name: Tally() for name in ["none", *factories]}
    for requests in work:
        steps = run(
            model,
            requests,
            factories["llguidance"](len(requests)),
            args.max_new_tokens,
            tallies["llguidance"],
        )
        # Same number of steps unconstrained, so both see the same KV-cache lengths.
        run(model, requests, None, steps, tallies["none"])
        if "xgrammar" in factories:
            run(
                model,
                requests,
                factories["xgrammar"](len(requests)),
                args.max_new_tokens,
                tallies["xgrammar"],
            )
    report(tallies, probe(model, xgrammar), args)


def report(tallies: dict[str, Tally], probes: dict[str, dict[str, bool]], args: Any) -> None:
    base = median(tallies["none"].decode_ms)
    print(
        f"tiny-random, CPU ({torch.get_num_threads()} threads), {args.batches} batches x "
        f"{args.batch_size} rows, Invoice schema, budget {args.max_new_tokens} tokens, greedy"
    )
    print("(ms per step: medians over batches; the machine may be shared, so compare within a run)")
    print(
        f"{'library':<11} {'decode ms/step':>14} {'mask ms/step':>12} {'ended (EOS)':>12} "
        f"{'valid Invoice':>13} {'valid schema':>12}  schema violations"
    )
    for name, t in tallies.items():
        decode = median(t.decode_ms)
        mask = f"{median(t.mask_ms):.2f}" if t.mask_ms else "-"
        rows = "-" if name == "none" else f"{t.ended}/{t.rows}"
        valid = "-" if name == "none" else f"{t.valid_model}/{t.rows}"
        schema = "-" if name == "none" else f"{t.valid_schema}/{t.rows}"
        print(
            f"{name:<11} {decode:>14.2f} {mask:>12} {rows:>12} {valid:>13} {schema:>12}  "
            f"{dict(t.violations) or ''}"
        )
    print("\ngrammar rejects a record that breaks one bound (fed as text):")
    for case, verdicts in probes.items():
        cells = ", ".join(f"{lib} {'accepts' if ok else 'rejects'}" for lib, ok in verdicts.items())
        print(f"  {case:<28} {cells}")
    print()
    # llguidance last: the figure the README quotes.
    for name in sorted((n for n in tallies if n != "none"), key=lambda n: n == "llguidance"):
        t = tallies[name]
        share = median(t.mask_ms) / base * 100
        print(
            f"{name} constraint overhead: {share:.0f}% of an unconstrained decode step "
            f"({base:.2f} ms on this CPU)"
        )


if __name__ == "__main__":
    main()
