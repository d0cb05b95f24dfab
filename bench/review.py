"""Review desk response times over 10,000 extractions.

Seeds a database (SQLite in a temporary folder by default, `--db URL` for PostgreSQL: use an
empty database) with N documents and their extractions in bulk (60% needs_review, 10% partial,
10% failed with pages, 20% succeeded; evidence for 20 fields each), then times requests through
the ASGI application in this process (Starlette's TestClient: no network): the queue page
(newest first, by risk, and filtered by a reason), and a document page.

    python bench/review.py [--n 10000] [--requests 40] [--db URL]

The last line is `queue_ms_p50=.. queue_ms_p95=.. document_ms_p50=..` (goal: queue under 300 ms).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from starlette.testclient import TestClient

from pipeline.review.app import create_app
from pipeline.settings import Settings
from pipeline.store.db import open_database, session_factory
from pipeline.store.models import Document, DocumentPath, Extraction, Page, Run
from pipeline.store.reviews import risk_columns

STATUSES = ["needs_review"] * 6 + ["partial", "failed", "succeeded", "succeeded"]
REASONS = [
    "subtotal 25.00 + tax 4.75 != total 92.75 (tolerance 0.02)",
    "required field 'issue_date' is missing",
    "line 2: amount 5.00 != quantity 1 x unit price 4.00 (= 4.00, tolerance 0.01)",
    "low confidence on total (0.42)",
]
FIELDS = ["invoice_number", "issue_date", "total", "subtotal", "tax_total", "seller.name"] + [
    f"line_items[{i}].{k}" for i in range(4) for k in ("description", "quantity", "unit_price")
]


def seed(url: str, n: int) -> None:
    rng = random.Random(7)
    engine = open_database(url)
    now = datetime.now(UTC)
    with engine.begin() as connection:
        runs = [
            {
                "id": i,
                "kind": "run",
                "started_by": "bench",
                "started_at": now - timedelta(days=30 - i),
                "finished_at": now - timedelta(days=30 - i) + timedelta(hours=2),
                "parameters": {},
                "counts": {},
            }
            for i in range(1, 31)
        ]
        connection.execute(insert(Run), runs)
        for start in range(0, n, 2000):
            ids = range(start + 1, min(n, start + 2000) + 1)
            connection.execute(
                insert(Document),
                [
                    {
                        "id": i,
                        "sha256": f"{i:064x}",
                        "media_type": "application/pdf",
                        "size_bytes": 1000,
                        "page_count": 2,
                        "first_seen_at": now,
                        "last_seen_at": now,
                    }
                    for i in ids
                ],
            )
            connection.execute(
                insert(DocumentPath),
                [
                    {
                        "document_id": i,
                        "path": f"/inbox/invoice-{i}.pdf",
                        "name": f"invoice-{i}.pdf",
                        "first_seen_at": now,
                        "last_seen_at": now,
                    }
                    for i in ids
                ],
            )
            connection.execute(
                insert(Page),
                [
                    {
                        "document_id": i,
                        "number": p,
                        "width": 1700,
                        "height": 2200,
                        "dpi": 200,
                        "rotation": 0,
                        "render_seconds": 0.1,
                    }
                    for i in ids
                    for p in (1, 2)
                ],
            )
            connection.execute(insert(Extraction), [_extraction(i, rng, now) for i in ids])


def _extraction(i: int, rng: random.Random, now: datetime) -> dict[str, Any]:
    status = rng.choice(STATUSES)
    reasons = rng.sample(REASONS, rng.randint(0, 3)) if status != "succeeded" else []
    evidence = {
        f: {
            "confidence": round(rng.uniform(0.3, 1.0), 3),
            "page": 1,
            "box": [100, 100 + 40 * k, 400, 130 + 40 * k],
            "match": "exact",
            "reasons": [],
        }
        for k, f in enumerate(FIELDS)
    }
    fields = {"field_confidence": evidence, "review_reasons": reasons}
    return {
        "id": i,
        "document_id": i,
        "schema_name": "invoice",
        "schema_version": "1.1",
        "model_id": "llava-hf/llava-v1.6-mistral-7b-hf",
        "prompt_version": "2",
        "status": status,
        "error_category": "model_error" if status == "failed" else None,
        "error_message": "boom" if status == "failed" else None,
        "record": {
            "invoice_number": f"INV-{i}",
            "total": "92.75",
            "subtotal": "25.00",
            "line_items": [
                {"description": "Hammer", "quantity": "2", "unit_price": "10.00", "amount": "20.00"}
            ]
            * 4,
        },
        "review_reasons": reasons,
        "errors": [],
        "raw_outputs": [{"text": "{}" * 200}],
        "provenance": {"dpi": 200},
        "timings": {},
        "field_confidence": evidence,
        "pages_total": 2,
        "pages_failed": 1 if status == "partial" else 0,
        "input_tokens": 3000,
        "output_tokens": 400,
        "seconds": rng.uniform(2, 30),
        "run_id": 1 + i % 30,
        "created_at": now,
        "updated_at": now - timedelta(seconds=n_seconds(i)),
        **risk_columns(fields),
    }


def n_seconds(i: int) -> int:
    return (i * 7919) % 2_000_000


def timed(client: TestClient, path: str, requests: int) -> list[float]:
    client.get(path).raise_for_status()  # warm up
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return times


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--db", help="database URL (an empty database); default: temporary SQLite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-review-") as folder:
        url = args.db or f"sqlite:///{Path(folder) / 'review.db'}"
        started = time.perf_counter()
        seed(url, args.n)
        print(
            f"seeded {args.n} extractions in {time.perf_counter() - started:.1f}s "
            f"({url.split(':')[0]})"
        )
        settings = Settings(db_url=url, cache_dir=Path(folder) / "cache")
        client = TestClient(create_app(settings, session_factory(open_database(url))))
        results = {
            "queue": timed(client, "/", args.requests),
            "queue_risk": timed(client, "/?sort=risk", args.requests),
            "queue_reason": timed(client, "/?reason=subtotal+%23+%2B+tax", args.requests),
            "queue_page_50": timed(client, "/?page=50", args.requests),
            "document": timed(client, f"/doc/{args.n // 2}", args.requests),
        }
        for name, values in results.items():
            print(f"{name:14s} p50 {statistics.median(values):7.1f} ms  p95 {p95(values):7.1f} ms")
        queue = (
            results["queue"]
            + results["queue_risk"]
            + results["queue_reason"]
            + results["queue_page_50"]
        )
        print(
            f"queue_ms_p50={statistics.median(queue):.1f} queue_ms_p95={p95(queue):.1f} "
            f"document_ms_p50={statistics.median(results['document']):.1f}"
        )


if __name__ == "__main__":
    main()
