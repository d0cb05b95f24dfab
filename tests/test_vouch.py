"""Vouch through the pipeline: words beside rendering, grounding, confidence, review reasons,
the stored evidence and its exports, with the scripted-truth backend (no model)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from pipeline.backends import forget_loaded_models
from pipeline.errors import ConfigError
from pipeline.evidence import leaves, text_layer_words
from pipeline.evidence.perturb import PERTURBATIONS
from pipeline.export import export
from pipeline.runner import process, register
from pipeline.settings import Settings
from pipeline.store.db import open_database, session_factory
from pipeline.store.models import Extraction
from pipeline.store.queries import Selection

SAMPLES = Path(__file__).resolve().parent.parent / "sample_docs"
FOUND = ("exact", "normalized", "fuzzy")


def truth_settings(settings: Settings, **model: Any) -> Settings:
    forget_loaded_models()
    return settings.model_copy(
        update={"model": settings.model.model_copy(update={"backend": "scripted-truth", **model})}
    )


def copy_samples(folder: Path, *names: str) -> list[Path]:
    """Documents with their truth, copied (the truth backend reads NAME.json beside them)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in names:
        for path in SAMPLES.glob(f"{Path(name).stem}.*"):
            shutil.copy(path, folder / path.name)
        out.append(folder / name)
    return out


def run(path: Path, settings: Settings) -> Extraction:
    factory = session_factory(open_database(settings.db_url.get_secret_value()))
    process(factory, register(factory, path, settings), settings)
    with factory() as session:
        extraction = session.scalars(select(Extraction).order_by(Extraction.id.desc())).first()
        assert extraction is not None
        session.expunge(extraction)
        return extraction


def truth(path: Path) -> dict[str, Any]:
    return json.loads(path.with_suffix(".json").read_text())["records"]["invoice"]


def test_truth_run_grounds_born_digital_and_scanned_pages(
    tmp_path: Path, settings: Settings, db_url: str
) -> None:
    settings = truth_settings(settings.model_copy(update={"db_url": SecretStr(db_url)}))
    born, scanned = copy_samples(tmp_path / "in", "invoice-two-page.pdf", "invoice-uk-scanned.pdf")
    for path, source, share in ((born, "text_layer", 0.98), (scanned, "ocr", 0.9)):
        extraction = run(path, settings)
        assert extraction.model_id == "scripted-truth"
        assert extraction.record == _json(truth(path))
        evidence = extraction.field_confidence
        assert evidence is not None
        values = dict(leaves(extraction.record))
        assert set(evidence) == set(values)
        grounded = [p for p, e in evidence.items() if e["match"] in FOUND and e["box"]]
        assert len(grounded) >= share * len(values), (path.name, len(grounded), len(values))
        entry = evidence["total"]
        assert set(entry) == {
            "confidence", "parts", "page", "box", "match", "matched_text", "occurrence", "reasons"
        }  # fmt: skip
        assert 0.9 <= entry["confidence"] <= 1.0 and entry["parts"]["grounding"] >= 0.95
        pages = extraction.provenance["grounding"]
        assert {p["source"] for p in pages} == {source}
        assert all(p["words"] > 20 for p in pages)


def _json(record: dict[str, Any]) -> dict[str, Any]:
    from schemas import get_schema

    return get_schema("invoice").model_validate(record).model_dump(mode="json")


def test_boxes_land_on_the_printed_value(tmp_path: Path, settings: Settings) -> None:
    """The boxes of the total and of each line amount are the text layer's own words."""
    (path,) = copy_samples(tmp_path / "in", "invoice-born-digital.pdf")
    extraction = run(path, truth_settings(settings))
    evidence = extraction.field_confidence
    assert evidence is not None
    words = text_layer_words(path, 1, settings.raster.dpi).words
    paths = ["total", "subtotal", "invoice_number", "iban"] + [
        f"line_items[{i}].amount" for i in range(len(extraction.record["line_items"]))
    ]
    for field_path in paths:
        box = tuple(evidence[field_path]["box"])
        inside = [w for w in words if _inside(w.box, box)]
        assert inside, field_path
        assert box == (
            min(w.box[0] for w in inside),
            min(w.box[1] for w in inside),
            max(w.box[2] for w in inside),
            max(w.box[3] for w in inside),
        ), field_path
        printed = " ".join(w.text for w in inside)
        assert evidence[field_path]["matched_text"] == printed


def _inside(word: tuple[int, ...], box: tuple[int, ...]) -> bool:
    return box[0] <= word[0] and box[1] <= word[1] and word[2] <= box[2] and word[3] <= box[3]


@pytest.mark.parametrize("how", PERTURBATIONS)
def test_each_perturbation_is_flagged(tmp_path: Path, settings: Settings, how: str) -> None:
    documents = copy_samples(
        tmp_path / "in",
        "invoice-born-digital.pdf",
        "invoice-two-page.pdf",
        "invoice-fr-discount.pdf",
    )
    extraction = run(documents[0], truth_settings(settings, perturb=how))
    assert extraction.model_id == f"scripted-truth:{how}"
    expected = dict(leaves(_json(truth(documents[0]))))
    got = dict(leaves(extraction.record))
    wrong = [p for p in expected if got.get(p) != expected[p]]
    assert len(wrong) == 1, wrong
    assert extraction.status == "needs_review"
    evidence = extraction.field_confidence
    assert evidence is not None and evidence[wrong[0]]["match"] == "not_found"
    assert evidence[wrong[0]]["confidence"] < 0.5
    assert any(
        r.startswith(f"{wrong[0]} ") and "is not printed on the document" in r
        for r in extraction.review_reasons
    ), extraction.review_reasons
    assert evidence[wrong[0]]["reasons"]
    untouched = [p for p in expected if p != wrong[0] and evidence[p]["match"] == "not_found"]
    assert untouched == []


def test_an_invisible_ocr_layer_that_lies_is_not_trusted(
    tmp_path: Path, settings: Settings
) -> None:
    """A scan whose invisible OCR layer prints other values: the page is OCRed instead, so
    the true values are grounded and the layer's made-up total is not."""
    from fpdf import FPDF
    from fpdf.enums import TextMode
    from pdf2image import convert_from_path

    (scan,) = copy_samples(tmp_path / "src", "invoice-scanned.pdf")
    image = convert_from_path(str(scan), dpi=100)[0]
    image.save(tmp_path / "page.png")
    pdf = FPDF(unit="pt", format=(image.width * 0.72, image.height * 0.72))
    pdf.add_page()
    pdf.image(str(tmp_path / "page.png"), 0, 0, image.width * 0.72, image.height * 0.72)
    pdf.set_font("helvetica", size=9)
    pdf.text_mode = TextMode.INVISIBLE
    for row in range(60):  # a layer over the whole page, all of it wrong
        pdf.text(40, 30 + row * 12, f"Total 9,{row:03d}.99 Rechnung XX-{row} 01.01.2001")
    target = tmp_path / "in" / "lying-layer.pdf"
    target.parent.mkdir()
    pdf.output(str(target))
    shutil.copy(scan.with_suffix(".json"), target.with_suffix(".json"))
    data = json.loads(target.with_suffix(".json").read_text())
    data["document"] = target.name
    target.with_suffix(".json").write_text(json.dumps(data))
    extraction = run(target, truth_settings(settings))
    (page,) = extraction.provenance["grounding"]
    assert page["source"] == "ocr" and "invisible" in page["note"]
    evidence = extraction.field_confidence
    assert evidence is not None
    assert evidence["invoice_number"]["match"] in FOUND
    assert evidence["total"]["match"] in FOUND
    lies = re.compile(r"9,0\d\d\.99|XX-\d|2001")
    assert not [e for e in evidence.values() if lies.search(e["matched_text"] or "")]


def test_a_hostile_text_layer_is_bounded_in_the_worker(tmp_path: Path, settings: Settings) -> None:
    from fpdf import FPDF

    pdf = FPDF(unit="pt", format="A4")
    pdf.add_page()
    pdf.set_font("helvetica", size=2)
    for i in range(20_000):
        pdf.text(5 + (i % 200) * 2.9, 5 + (i // 200) * 8.2, "wd")
    target = tmp_path / "hostile.pdf"
    pdf.output(str(target))
    bounded = settings.model_copy(
        update={"grounding": settings.grounding.model_copy(update={"max_words": 300})}
    )
    extraction = run(target, truth_settings(bounded))  # no truth: an empty record
    assert extraction.status != "failed"
    (page,) = extraction.provenance["grounding"]
    # 300 of 20,000 words cover too little of the ink to be trusted: the page is OCRed
    assert page["words"] <= 300 and "text layer not used" in page["note"]


def test_unreadable_words_are_unavailable_not_a_failure(tmp_path: Path, settings: Settings) -> None:
    (photo,) = copy_samples(tmp_path / "in", "invoice-photo.png")
    never = settings.model_copy(
        update={"grounding": settings.grounding.model_copy(update={"ocr": "never"})}
    )
    extraction = run(photo, truth_settings(never))
    assert extraction.status == "succeeded"
    (page,) = extraction.provenance["grounding"]
    assert page["source"] == "unavailable" and "OCR is off" in page["unavailable"]
    evidence = extraction.field_confidence
    assert evidence is not None
    assert {e["match"] for e in evidence.values()} <= {"unavailable", None}
    assert not any("not printed" in r for r in extraction.review_reasons)


def test_forced_ocr_without_tesseract_stops_before_any_work(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipeline.render.words as words

    monkeypatch.setattr(words, "tesseract_available", lambda: False)
    forced = settings.model_copy(
        update={"grounding": settings.grounding.model_copy(update={"ocr": "always"})}
    )
    (path,) = copy_samples(tmp_path / "in", "invoice-born-digital.pdf")
    factory = session_factory(open_database(settings.db_url.get_secret_value()))
    with pytest.raises(ConfigError, match="tesseract"):
        process(factory, register(factory, path, forced), forced)
    with factory() as session:
        assert session.scalars(select(Extraction)).first() is None
    words.check_ocr(settings)  # auto: a missing Tesseract is no configuration error


def test_grounding_off_stores_no_evidence(tmp_path: Path, settings: Settings) -> None:
    (path,) = copy_samples(tmp_path / "in", "invoice-born-digital.pdf")
    off = settings.model_copy(
        update={"grounding": settings.grounding.model_copy(update={"enabled": False})}
    )
    extraction = run(path, truth_settings(off))
    assert extraction.field_confidence is None and "grounding" not in extraction.provenance
    assert not list(off.page_cache_dir.rglob("*.words.json"))


def test_exports_carry_confidence_page_and_box(tmp_path: Path, settings: Settings) -> None:
    import csv

    (path,) = copy_samples(tmp_path / "in", "invoice-born-digital.pdf")
    extraction = run(path, truth_settings(settings))
    evidence = extraction.field_confidence
    assert evidence is not None
    factory = session_factory(open_database(settings.db_url.get_secret_value()))
    with factory() as session:
        files = export(session, Selection(schema="invoice"), "csv", tmp_path / "out.csv").files
        export(session, Selection(), "jsonl", tmp_path / "out.jsonl")
    (row,) = csv.DictReader(files[0].open())
    assert row["record.total.confidence"] == str(evidence["total"]["confidence"])
    assert row["record.total.page"] == "1"
    assert row["record.total.box"] == " ".join(map(str, evidence["total"]["box"]))
    items = list(csv.DictReader(next(f for f in files if "line_items" in f.name).open()))
    assert items[1]["amount.box"] == " ".join(map(str, evidence["line_items[1].amount"]["box"]))
    line = json.loads((tmp_path / "out.jsonl").read_text().splitlines()[0])
    assert line["evidence"]["total"]["match"] in FOUND


def test_token_probabilities_reach_the_confidence(tmp_path: Path, settings: Settings) -> None:
    """A backend's log-probabilities become each value's `tokens` part."""
    import math

    from pipeline.backends.scripted_truth import TruthModel
    from pipeline.types import TokenLogprob, VisionOutput

    class Unsure(TruthModel):
        def generate(self, requests: Any, *, timeout_s: float | None = None) -> Any:
            outputs = super().generate(requests, timeout_s=timeout_s)
            return [_with_tokens(o) for o in outputs]

    def _with_tokens(output: VisionOutput) -> VisionOutput:
        # one token per character, each at probability 0.99
        tokens = tuple(TokenLogprob(c, math.log(0.99)) for c in output.text)
        return VisionOutput(**{**output.__dict__, "tokens": tokens})

    (path,) = copy_samples(tmp_path / "in", "invoice-born-digital.pdf")
    factory = session_factory(open_database(settings.db_url.get_secret_value()))
    process(factory, register(factory, path, settings), settings, model=Unsure())
    with factory() as session:
        extraction = session.scalars(select(Extraction)).one()
        evidence = extraction.field_confidence
    assert evidence is not None
    assert evidence["total"]["parts"]["tokens"] == pytest.approx(0.99)
    assert evidence["total"]["confidence"] == pytest.approx(0.99 * 0.95, abs=0.01)


def test_words_are_cached_beside_the_page(tmp_path: Path, settings: Settings) -> None:
    (path,) = copy_samples(tmp_path / "in", "invoice-born-digital.pdf")
    settings = truth_settings(settings)
    run(path, settings)
    (png,) = settings.page_cache_dir.rglob("p0001-200dpi.png")
    assert png.with_name("p0001-200dpi.words.json").is_file()
    settings_redo = settings.model_copy(
        update={"db_url": SecretStr(f"sqlite:///{tmp_path / 'b.db'}")}
    )
    extraction = run(path, settings_redo)
    assert extraction.provenance["grounding"][0]["cached"] is True


def test_a_made_up_paragraph_against_a_dense_page_is_vouched_fast(tmp_path: Path) -> None:
    """A model's long made-up text shares every bigram with a dense page of similar words:
    fuzzy grounding stays bounded (it once took minutes per value)."""
    import random
    import time

    from fpdf import FPDF

    from pipeline.evidence import DocumentIndex, ground_record
    from schemas.invoice import Invoice

    pdf = FPDF(format="A4")
    pdf.set_font("Helvetica", size=10)
    pdf.add_page()
    for line in range(40):
        pdf.cell(
            0,
            6,
            f"{line + 1:3d} Widget 0-0-{line}  qty {line % 5 + 1}  12.50",
            new_x="LMARGIN",
            new_y="NEXT",
        )
    pdf.output(str(tmp_path / "dense.pdf"))
    words = text_layer_words(tmp_path / "dense.pdf", 1, 200)
    vocabulary = [w.text for w in words.words]
    rng = random.Random(0)
    made_up = [" ".join(rng.choice(vocabulary) for _ in range(40))[:200] for _ in range(6)]
    record = {
        "payment_terms": made_up[0],
        "seller": {"name": made_up[1][:80], "address": made_up[2]},
        "line_items": [{"description": text} for text in made_up[3:]],
    }
    index = DocumentIndex.build([words])
    started = time.perf_counter()
    groundings = ground_record(record, index, Invoice)
    assert time.perf_counter() - started < 2.0
    assert {g.kind for g in groundings.values()} == {"not_found"}
