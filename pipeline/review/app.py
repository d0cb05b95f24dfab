"""The review desk: a Starlette application over the store.

Routes: `/` the queue; `/doc/{id}` one extraction with its pages, boxes and editable record;
`/doc/{id}/pages/{n}` a page image; `/api/doc/{id}/check` validates an edited record and reruns
the rules (JSON); `/doc/{id}/decide` approves, corrects or rejects (JSON from the page's script,
or a plain form post without script); `/runs/{n}` the night's report. Templates autoescape
everything; the page's script writes document text with textContent only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from jinja2 import Environment, FileSystemLoader
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from pipeline.errors import ConfigError
from pipeline.review.editing import check_record
from pipeline.review.fields import layout
from pipeline.review.pages import page_file, page_refs
from pipeline.review.report import build_report, render_report
from pipeline.review.security import (
    REVIEWER_COOKIE,
    Guard,
    clean_reviewer,
    csrf_ok,
)
from pipeline.review.splitting import bundle_view, change_split
from pipeline.settings import Settings
from pipeline.store import reviews as store
from pipeline.store.models import Extraction, Run
from pipeline.store.queries import last_seen_paths
from pipeline.store.report import latest_run
from pipeline.types import Status
from schemas import get_schema

HERE = Path(__file__).parent
MAX_BODY = 2_000_000  # bytes: a record with 60 line items is a few kB


def templates() -> Environment:
    """The desk's Jinja environment: autoescape on for every template, whatever its name."""
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
    env.filters["pct"] = lambda v: "" if v is None else f"{100 * v:.0f}%"
    return env


class Desk:
    """The handlers, holding the settings, a session factory and the templates."""

    def __init__(self, settings: Settings, factory: sessionmaker[Session]) -> None:
        self.settings, self.factory, self.env = settings, factory, templates()

    def page(
        self, request: Request, template: str, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        context.update(csrf=request.state.csrf, reviewer=request.cookies.get(REVIEWER_COOKIE, ""))
        html = self.env.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status_code)

    def queue(self, request: Request) -> Response:
        try:
            f = _queue_filter(request)
        except (ConfigError, ValueError) as exc:
            return self.page(request, "error.html", 400, message=str(exc))
        with self.factory() as session:
            result = store.queue_page(session, f)

        def link(**changes: Any) -> str:
            values = {**_filter_params(f), "page": None, **changes}
            return "/?" + urlencode({k: v for k, v in values.items() if v not in (None, "")})

        return self.page(
            request,
            "queue.html",
            q=result,
            f=f,
            link=link,
        )

    def document(self, request: Request) -> Response:
        extraction_id = int(request.path_params["extraction_id"])
        with self.factory() as session:
            extraction = store.load_extraction(session, extraction_id)
            if extraction is None:
                return self.page(
                    request, "error.html", 404, message=f"no extraction {extraction_id}"
                )
            schema = get_schema(extraction.schema_name)
            record = extraction.record
            rules: list[str] | None = None
            if record is not None:
                rules = check_record(extraction.schema_name, record, record).reasons
            paths = last_seen_paths(extraction.document)
            context: dict[str, Any] = {
                "e": extraction,
                "name": Path(paths[0]).name if paths else extraction.document.sha256[:12],
                "paths": paths,
                "layout": layout(schema, record, extraction.field_confidence),
                "pages": page_refs(extraction, self.settings),
                "rules": rules,
                "raw": json.dumps(extraction.raw_outputs, indent=2, ensure_ascii=False),
                "attempts": store.attempts(session, extraction_id),
                "siblings": store.siblings(session, extraction),
                "reviews": store.reviews_of(session, extraction_id),
                "record": record,
                "is_reviewed": Status(extraction.status).is_reviewed,
                "next_id": _next_in_queue(session, extraction_id),
                "bundle": bundle_view(extraction, self.settings.split.min_confidence),
            }
            return self.page(request, "document.html", **context)

    async def split(self, request: Request) -> Response:
        """A person's correction of how the file this record reads is split into documents."""
        body = await request.body()
        if len(body) > MAX_BODY:
            return PlainTextResponse("request too large", status_code=413)
        data = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        if not csrf_ok(request, data.get("csrf")):
            return self.page(request, "error.html", 403, message="missing or wrong CSRF token")
        reviewer = clean_reviewer(data.get("reviewer") or "")
        if not reviewer:
            return self.page(request, "error.html", 400, message="give your name first")
        extraction_id = int(request.path_params["extraction_id"])
        try:
            with self.factory.begin() as session:
                message = change_split(session, extraction_id, data.get("pages", ""), reviewer)
        except LookupError as exc:
            return self.page(request, "error.html", 404, message=str(exc))
        except ValueError as exc:
            return self.page(request, "error.html", 400, message=f"pages: {exc}")
        return self.page(request, "error.html", 200, message=message)

    def page_image(self, request: Request) -> Response:
        extraction_id = int(request.path_params["extraction_id"])
        number = int(request.path_params["number"])
        with self.factory() as session:
            extraction = store.load_extraction(session, extraction_id)
            if extraction is None:
                return PlainTextResponse("no such extraction", status_code=404)
            refs = {p.number: p for p in page_refs(extraction, self.settings)}
            if number not in refs:
                return PlainTextResponse("no such page", status_code=404)
            found = page_file(extraction.document, refs[number], self.settings)
        if found is None:
            return PlainTextResponse(
                "page image not in the cache and the document's file is gone", status_code=404
            )
        return FileResponse(
            found.path, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"}
        )

    async def check(self, request: Request) -> Response:
        data = await _json_body(request)
        if not csrf_ok(request, request.headers.get("x-csrf-token")):
            return JSONResponse({"error": "missing or wrong CSRF token: reload the page"}, 403)
        extraction_id = int(request.path_params["extraction_id"])
        return await run_in_threadpool(self._check, extraction_id, data.get("record"))

    def _check(self, extraction_id: int, record: Any) -> Response:
        with self.factory() as session:
            extraction = session.get(Extraction, extraction_id)
            if extraction is None:
                return JSONResponse({"error": f"no extraction {extraction_id}"}, 404)
            result = check_record(extraction.schema_name, record, extraction.record)
        return JSONResponse(result.to_json())

    async def decide(self, request: Request) -> Response:
        is_json = request.headers.get("content-type", "").startswith("application/json")
        if is_json:
            data = await _json_body(request)
            submitted = request.headers.get("x-csrf-token")
        else:
            body = await request.body()
            if len(body) > MAX_BODY:
                return PlainTextResponse("request too large", status_code=413)
            data = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
            submitted = data.get("csrf")
            if isinstance(data.get("record"), str) and data["record"]:
                try:
                    data["record"] = json.loads(data["record"])
                except ValueError:
                    data["record"] = None
        if not csrf_ok(request, submitted):
            return _answer(
                request, is_json, 403, {"error": "missing or wrong CSRF token: reload the page"}
            )
        extraction_id = int(request.path_params["extraction_id"])
        status, payload = await run_in_threadpool(self._decide, extraction_id, data)
        response = _answer(request, is_json, status, payload)
        reviewer = clean_reviewer(str(data.get("reviewer") or ""))
        if reviewer:
            response.set_cookie(REVIEWER_COOKIE, reviewer, max_age=400 * 86400, samesite="strict")
        return response

    def _decide(self, extraction_id: int, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        reviewer = clean_reviewer(str(data.get("reviewer") or ""))
        if not reviewer:
            return 400, {"error": "give your name (reviewer) before deciding"}
        try:
            version = int(data.get("version") or 0)
        except ValueError:
            return 400, {"error": "version must be a number"}
        action = str(data.get("action") or "")
        with self.factory.begin() as session:
            extraction = session.get(Extraction, extraction_id)
            if extraction is None:
                return 404, {"error": f"no extraction {extraction_id}"}
            if action == "reject":
                reason = str(data.get("reason") or "").strip()
                if not reason:
                    return 400, {"error": "say why the document is rejected"}
                decision = store.Decision(
                    Status.REJECTED.value,
                    reviewer,
                    extraction.record,
                    [],
                    list(extraction.review_reasons or []),
                    reason[:2000],
                )
            elif action == "approve":
                result = check_record(extraction.schema_name, data.get("record"), extraction.record)
                if not result.valid:
                    return 422, {"error": "the record is not valid", "errors": result.errors}
                status = Status.CORRECTED if result.diff else Status.APPROVED
                decision = store.Decision(
                    status.value, reviewer, result.record, result.diff, result.reasons
                )
            else:
                return 400, {"error": f"unknown action {action!r}: approve or reject"}
            try:
                review = store.decide(session, extraction_id, version, decision)
            except store.StaleVersion as exc:
                return 409, {"error": str(exc), "stale": True, "current_version": exc.current}
            next_id = _next_in_queue(session, extraction_id)
            return 200, {
                "status": decision.action,
                "version": review.version,
                "review_id": review.id,
                "diff": decision.diff,
                "next": f"/doc/{next_id}" if next_id else "/",
            }

    def report(self, request: Request) -> Response:
        run_id = int(request.path_params["run_id"])
        with self.factory() as session:
            if session.get(Run, run_id) is None:
                return self.page(request, "error.html", 404, message=f"no run {run_id}")
            data = build_report(session, run_id=run_id, desk_url="")
        return HTMLResponse(render_report(data))

    def latest_report(self, request: Request) -> Response:
        with self.factory() as session:
            latest = latest_run(session)
        if latest is None:
            return self.page(request, "error.html", 404, message="no run recorded yet")
        return RedirectResponse(f"/runs/{latest}", status_code=303)


def create_app(settings: Settings, factory: sessionmaker[Session]) -> Starlette:
    """The desk as an ASGI application (the token, if configured, guards every route)."""
    desk = Desk(settings, factory)
    token = settings.review.token.get_secret_value() if settings.review.token else None
    routes = [
        Route("/", desk.queue),
        Route("/doc/{extraction_id:int}", desk.document),
        Route("/doc/{extraction_id:int}/pages/{number:int}", desk.page_image),
        Route("/api/doc/{extraction_id:int}/check", desk.check, methods=["POST"]),
        Route("/doc/{extraction_id:int}/decide", desk.decide, methods=["POST"]),
        Route("/doc/{extraction_id:int}/split", desk.split, methods=["POST"]),
        Route("/runs/latest", desk.latest_report),
        Route("/runs/{run_id:int}", desk.report),
        Route("/healthz", lambda request: PlainTextResponse("ok")),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(Guard, token=token)
    return app


def _queue_filter(request: Request) -> store.QueueFilter:
    q = request.query_params
    number = lambda name: int(q[name]) if q.get(name) else None  # noqa: E731
    return store.QueueFilter(
        run=number("run"),
        schema=q.get("schema") or None,
        status=q.get("status") or None,
        reason=q.get("reason") or None,
        error_category=q.get("error_category") or None,
        sort=q.get("sort") or "newest",
        page=number("page") or 1,
    )


def _filter_params(f: store.QueueFilter) -> dict[str, Any]:
    return {
        "run": f.run,
        "schema": f.schema,
        "status": f.status,
        "reason": f.reason,
        "error_category": f.error_category,
        "sort": None if f.sort == "newest" else f.sort,
    }


def _next_in_queue(session: Session, after_id: int) -> int | None:
    """The next document waiting (newest first) other than `after_id`."""
    page = store.queue_page(session, store.QueueFilter(per_page=2), facets=False)
    ids = [r.extraction_id for r in page.rows if r.extraction_id != after_id]
    return ids[0] if ids else None


async def _json_body(request: Request) -> dict[str, Any]:
    body = await request.body()
    if len(body) > MAX_BODY:
        return {}
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _answer(request: Request, is_json: bool, status: int, payload: dict[str, Any]) -> Response:
    if is_json:
        return JSONResponse(payload, status_code=status)
    if status == 200:
        return RedirectResponse(payload["next"], status_code=303)
    message = payload.get("error", "refused")
    details = "; ".join(f"{e['path']}: {e['message']}" for e in payload.get("errors", []))
    return PlainTextResponse(f"{message}{': ' + details if details else ''}", status_code=status)
