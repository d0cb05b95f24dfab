"""Pages per second: docextract's engine vs the model card's one-page-at-a-time loop.

Same model object, same pages, same machine, one run. The baseline is the transformers model
card loop: for each page, processor -> generate (greedy, max_new_tokens) -> decode. docextract is
`extract()` over several documents at once, in worker threads (as the Prefect task runner runs
them), through `BatchingModel` (batches across pages and documents, similar sizes together, the
processor of the next batch overlapping the current generation) with constrained decoding.
Re-asks are off so both sides do one generation per page of at most --max-new-tokens tokens.

    python bench/throughput.py                                 # CPU, tiny-random
    python bench/throughput.py --model random-7b --pages 64    # GPU: the real 7B architecture
    python bench/throughput.py --backend openai [--base-url URL --model NAME --in-flight 1,8,32]
        # the OpenAI-compatible mode (vLLM, `transformers serve`): pages/s by requests in
        # flight, to size concurrency; its options are bench/throughput_openai.py's

Rasterization is not included (pages are drawn in memory as 200 DPI A4 images): the GPU
machine has no poppler, and bench/raster.py measures rendering. bench/overhead.py measures
the whole CLI/Prefect/database path.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from PIL import Image, ImageDraw, ImageFont

from pipeline.backends.batching import BatchingModel
from pipeline.backends.random_llava import build_tiny_random
from pipeline.backends.transformers import TransformersVisionModel
from pipeline.extraction import extract
from pipeline.prompts import extraction_prompt
from pipeline.settings import ModelSettings, Settings
from pipeline.types import PageImage
from schemas.invoice import Invoice


@dataclass
class Measured:
    name: str
    pages: int
    seconds: float
    image_tokens: int
    output_tokens: int

    def row(self) -> str:
        return (
            f"{self.name:34s} {self.pages:6d} {self.seconds:9.2f} {self.pages / self.seconds:8.3f}"
            f" {self.image_tokens / self.seconds:11.0f} {self.output_tokens / self.seconds:11.1f}"
        )


def draw_pages(folder: Path, count: int, distinct: int = 8) -> list[PageImage]:
    """`count` A4 pages at 200 DPI (1654 x 2339) with invoice-like lines, cycling through
    `distinct` drawn PNG files (drawing and encoding every page would only slow the set-up)."""
    font = ImageFont.load_default(size=28)
    paths = []
    for number in range(1, min(count, distinct) + 1):
        image = Image.new("RGB", (1654, 2339), "white")
        draw = ImageDraw.Draw(image)
        draw.text(
            (120, 120),
            f"INVOICE No. {1000 + number}   Date 2025-03-{number % 28 + 1:02d}",
            fill="black",
            font=font,
        )
        for line in range(40):
            quantity, price = line % 7 + 1, 12.5 + line
            draw.text(
                (120, 300 + 45 * line),
                f"{line + 1:3d}  Item {number}-{line}  qty {quantity}  x {price:.2f} = "
                f"{quantity * price:.2f}",
                fill="black",
                font=font,
            )
        path = folder / f"page{number:04d}.png"
        image.save(path)
        paths.append(path)
    return [
        PageImage(number=n, path=paths[(n - 1) % len(paths)], width=1654, height=2339, dpi=200)
        for n in range(1, count + 1)
    ]


def model_card_loop(
    model: TransformersVisionModel, pages: list[PageImage], max_new: int
) -> Measured:
    processor, network = model.processor, model.model
    prompt = processor.apply_chat_template(
        [
            {
                "role": "user",
                "content": [
                    {"type": "image"},
                    {"type": "text", "text": extraction_prompt(Invoice)},
                ],
            }
        ],
        add_generation_prompt=True,
    )
    eos, pad = model.special_token_ids()
    image_tokens = output_tokens = 0
    _sync()
    started = time.perf_counter()
    for page in pages:
        with Image.open(page.path) as image:
            inputs = processor(images=image.convert("RGB"), text=prompt, return_tensors="pt")
        inputs = inputs.to(model.device, dtype=network.dtype)
        with torch.inference_mode():
            out = network.generate(
                **inputs,
                max_new_tokens=max_new,
                do_sample=False,
                eos_token_id=eos,
                pad_token_id=pad,
            )
        new = out[0, inputs["input_ids"].shape[1] :]
        processor.decode(new, skip_special_tokens=True)
        image_tokens += int((inputs["input_ids"] == processor.image_token_id).sum())
        output_tokens += len(new)
    _sync()
    return Measured(
        "model card loop (1 page/generate)",
        len(pages),
        time.perf_counter() - started,
        image_tokens,
        output_tokens,
    )


def docextract_engine(
    model: TransformersVisionModel,
    pages: list[PageImage],
    documents: int,
    settings: Settings,
    label: str,
) -> Measured:
    batching = BatchingModel(model, max_batch=settings.model.batch_size, max_wait_s=0.05)
    per_doc = [pages[i::documents] for i in range(documents)]
    results = [None] * documents

    def work(index: int) -> None:
        results[index] = extract(per_doc[index], Invoice, batching, settings)  # type: ignore[call-overload]

    _sync()
    started = time.perf_counter()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(documents)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _sync()
    seconds = time.perf_counter() - started
    calls = [c for r in results for c in r.calls]  # type: ignore[attr-defined]
    print(
        f"  {label}: {batching.stats.batches} batches, largest {batching.stats.largest}, "
        f"output tokens per page median {statistics.median(c.output_tokens for c in calls):.0f}"
    )
    return Measured(
        label,
        len(pages),
        seconds,
        sum(c.image_tokens for c in calls),
        sum(c.output_tokens for c in calls),
    )


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def load_model(name: str, cache: Path, settings: ModelSettings) -> TransformersVisionModel:
    if name == "tiny-random":
        model = TransformersVisionModel(
            str(build_tiny_random(cache / "tiny-random-v1")),
            settings,
            model_id="tiny-random-v1",
            local_files_only=True,
        )
        model.load()
        return model
    from _random_llava import build

    return build(name, cache, settings)


def main() -> None:
    mode = argparse.ArgumentParser(add_help=False)
    mode.add_argument("--backend", choices=["transformers", "openai"], default="transformers")
    chosen, rest = mode.parse_known_args()
    if chosen.backend == "openai":
        import throughput_openai

        sys.argv = [f"{sys.argv[0]} --backend openai", *rest]
        throughput_openai.main()
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], parents=[mode])
    parser.add_argument(
        "--model", default="tiny-random", choices=["tiny-random", "random-mini", "random-7b"]
    )
    parser.add_argument("--pages", type=int, default=32, help="pages for docextract")
    parser.add_argument("--baseline-pages", type=int, default=8, help="pages for the loop")
    parser.add_argument("--documents", type=int, default=8, help="documents in flight")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument(
        "--tiling",
        default="anyres",
        help="docextract tiling strategies, comma-separated (one row each; the "
        "first gives the ratio)",
    )
    args = parser.parse_args()

    model_settings = ModelSettings(batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
    strategies = [s.strip() for s in args.tiling.split(",") if s.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        model = load_model(args.model, cache, model_settings)
        pages = draw_pages(cache, max(args.pages, args.baseline_pages))
        device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
        print(
            f"model {args.model} on {device}; torch {torch.__version__}; "
            f"max_new_tokens {args.max_new_tokens}; batch {args.batch_size}; "
            f"documents in flight {args.documents}"
        )
        model_card_loop(model, pages[:1], args.max_new_tokens)  # warm-up (kernels, allocator)
        baseline = model_card_loop(model, pages[: args.baseline_pages], args.max_new_tokens)
        print(baseline.row(), flush=True)
        engines = []
        for strategy in strategies:
            settings = Settings(
                model=model_settings.model_dump(),
                tiling={"strategy": strategy},
                extraction={"max_reasks": 0},
            )
            engines.append(
                docextract_engine(
                    model,
                    pages[: args.pages],
                    args.documents,
                    settings,
                    f"docextract {strategy} (batch {args.batch_size})",
                )
            )
            print(engines[-1].row(), flush=True)
    print(
        f"\n{'':34s} {'pages':>6s} {'seconds':>9s} {'pages/s':>8s} {'img tok/s':>11s} "
        f"{'out tok/s':>11s}"
    )
    for measured in (baseline, *engines):
        print(measured.row())
    for engine in reversed(engines):
        ratio = (engine.pages / engine.seconds) / (baseline.pages / baseline.seconds)
        print(f"pages/s ratio {engine.name} / model card loop: {ratio:.2f}x ({device})")


if __name__ == "__main__":
    main()
