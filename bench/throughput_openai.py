"""Pages per second through the openai backend, by requests in flight: how to size concurrency.

The pipeline as a run drives it: `extract()` over several documents at once (worker threads, as
the Prefect task runner runs them), through `BatchingModel` and `OpenAIVisionModel`, one request
per page (`anyres` tiling), no re-asks. For each number of requests in flight N, batch_size,
max_concurrency and documents in flight are all N. Rasterization is left out (pages are drawn in
memory as 200 DPI A4 images).

    python bench/throughput_openai.py                       # starts `transformers serve` with
                                                            # tiny-random on this machine (CPU)
    python bench/throughput_openai.py --base-url http://gpu1:8000/v1 --model llava-next-7b \\
        --in-flight 1,8,16,32,64 --pages 256 --max-new-tokens 256             # a vLLM server

`transformers serve` generates one request at a time for vision models, so against it the figure
shows the client's own overhead and overlap, not a server's batching; vLLM batches continuously.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from throughput import draw_pages  # same pages as bench/throughput.py

from pipeline.backends.batching import BatchingModel
from pipeline.backends.openai import OpenAIVisionModel
from pipeline.backends.random_llava import build_tiny_random
from pipeline.extraction import Extracted, extract
from pipeline.settings import Settings
from pipeline.types import PageImage, VisionRequest
from schemas.invoice import Invoice


@contextmanager
def local_tiny_server(folder: Path) -> Iterator[str]:
    """`transformers serve` with tiny-random on a free loopback port (killed on exit)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "transformers.cli.transformers", "serve", str(folder)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    # One torch thread: the tiny model gains nothing from more, and on a small machine the
    # server's threads would fight the client's (run to run, pages/s varied 4x without this).
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 180
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise SystemExit(f"transformers serve did not start (exit code {proc.poll()})")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.kill()
        proc.wait()


def settings_for(args: argparse.Namespace, url: str, name: str, in_flight: int) -> Settings:
    return Settings(
        model={
            "backend": "openai",
            "name": name,
            "base_url": url,
            "max_new_tokens": args.max_new_tokens,
            "batch_size": in_flight,
            "max_concurrency": in_flight,
            "batch_wait_s": 0.01,
            "request_timeout_s": 600,
        },
        tiling={"strategy": "anyres"},
        extraction={"max_reasks": 0},
    )


def measure(pages: list[PageImage], settings: Settings) -> tuple[float, list[Extracted]]:
    """Seconds to extract `pages`, split over batch_size documents extracted at once."""
    inner = OpenAIVisionModel(settings.model)
    model = BatchingModel(inner, max_batch=settings.model.batch_size, max_wait_s=0.01)
    documents = settings.model.batch_size
    per_doc = [pages[i::documents] for i in range(documents) if pages[i::documents]]
    results: list[Extracted] = []
    lock = threading.Lock()

    def work(doc_pages: list[PageImage]) -> None:
        result = extract(doc_pages, Invoice, model, settings)
        with lock:
            results.append(result)

    warm_up(model, pages[0])
    started = time.perf_counter()
    threads = [threading.Thread(target=work, args=(p,)) for p in per_doc]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    inner.close()
    return seconds, results


def warm_up(model: BatchingModel, page: PageImage) -> None:
    """One small request first: connections open, and the server's first-call costs paid."""
    with Image.open(page.path) as image:
        small = image.convert("RGB").resize((page.width // 2, page.height // 2))
    model.generate([VisionRequest(images=(small,), prompt="Warm up.", max_new_tokens=8)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-url", help="an OpenAI-compatible server (default: start one)")
    parser.add_argument("--model", help="served model name (default: the local tiny-random)")
    parser.add_argument(
        "--in-flight", default="1,2,4,8", help="requests in flight, comma-separated"
    )
    parser.add_argument("--pages", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs per level")
    args = parser.parse_args()
    levels = [int(n) for n in args.in_flight.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        pages = draw_pages(Path(tmp), args.pages)
        if args.base_url:
            run(args, pages, levels, args.base_url, args.model or "llava-next-7b", args.base_url)
        else:
            folder = build_tiny_random(Path(tmp) / "tiny-random")
            with local_tiny_server(folder) as url:
                run(args, pages, levels, url, str(folder), "transformers serve, tiny-random, CPU")


def run(
    args: argparse.Namespace,
    pages: list[PageImage],
    levels: list[int],
    url: str,
    name: str,
    server: str,
) -> None:
    """Each level `--repeats` times, the levels interleaved so that a drifting machine load
    touches them all alike; the fastest repeat of each level is reported."""
    print(
        f"server: {server}; {len(pages)} A4 pages at 200 DPI; max_new_tokens "
        f"{args.max_new_tokens}; best of {args.repeats}"
    )
    best: dict[int, tuple[float, list[Extracted]]] = {}
    for repeat in range(args.repeats):
        for n in levels:
            seconds, results = measure(pages, settings_for(args, url, name, n))
            print(f"  repeat {repeat + 1}, {n} in flight: {seconds:.2f} s", flush=True)
            if n not in best or seconds < best[n][0]:
                best[n] = (seconds, results)
    print(
        f"{'in flight':>9s} {'pages':>6s} {'seconds':>8s} {'pages/s':>8s} {'out tok/s':>10s}"
        f" {'valid':>6s} {'vs ' + str(levels[0]):>7s}"
    )
    rates = {n: len(pages) / best[n][0] for n in levels}
    for n in levels:
        seconds, results = best[n]
        calls = [c for r in results for c in r.calls]
        valid = sum(1 for c in calls if c.problem is None)
        out_tokens = sum(c.output_tokens for c in calls)
        print(
            f"{n:9d} {len(pages):6d} {seconds:8.2f} {rates[n]:8.3f} {out_tokens / seconds:10.1f}"
            f" {valid:6d} {rates[n] / rates[levels[0]]:6.2f}x"
        )
    top = max(rates, key=rates.__getitem__)
    print(
        f"pages/s ratio best ({top} in flight) / {levels[0]} in flight: "
        f"{rates[top] / rates[levels[0]]:.2f}x ({server})"
    )


if __name__ == "__main__":
    main()
