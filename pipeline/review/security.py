"""The desk's guards: the access token, CSRF tokens, security headers, the reviewer's name.

- Token (when configured): `?token=` on any page sets an HttpOnly cookie and redirects to the
  same URL without it (so it leaves the address bar and the history); API clients may send
  `Authorization: Bearer TOKEN` or `X-Docextract-Token`. Compared in constant time, never logged.
- CSRF: a double-submit cookie. Every page gets a random `docextract_csrf` cookie (SameSite
  Strict); a POST must repeat it in the `csrf` form field or the `X-CSRF-Token` header, and a
  POST whose Origin is another site is refused outright.
- Headers: a Content-Security-Policy without inline script, no framing, no referrer.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode, urlsplit

from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

TOKEN_COOKIE = "docextract_token"
CSRF_COOKIE = "docextract_csrf"
REVIEWER_COOKIE = "docextract_reviewer"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# The night's report is one self-contained file: its CSS is inline; it still runs no script.
REPORT_CSP = CSP.replace("style-src 'self'", "style-src 'unsafe-inline'")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: the desk may bind those without a token."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Guard(BaseHTTPMiddleware):
    """Token check, CSRF cookie and security headers around every request."""

    def __init__(self, app: object, token: str | None) -> None:
        super().__init__(app)  # type: ignore[arg-type]
        self.token = token

    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if self.token is not None:
            refused = self._check_token(request)
            if refused is not None:
                return refused
        if request.method not in ("GET", "HEAD") and not same_origin(request):
            return PlainTextResponse("cross-site request refused", status_code=403)
        csrf = request.cookies.get(CSRF_COOKIE) or ""
        fresh = len(csrf) < 32
        request.state.csrf = secrets.token_urlsafe(32) if fresh else csrf
        response = await call_next(request)
        if fresh:
            response.set_cookie(CSRF_COOKIE, request.state.csrf, httponly=False, samesite="strict")
        is_report = request.url.path.startswith("/runs/")
        response.headers.setdefault("Content-Security-Policy", REPORT_CSP if is_report else CSP)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    def _check_token(self, request: Request) -> Response | None:
        assert self.token is not None
        offered = request.query_params.get("token")
        if offered is not None:
            if not _same(offered, self.token):
                return PlainTextResponse("wrong token", status_code=403)
            query = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = request.url.path + (f"?{urlencode(query)}" if query else "")
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(TOKEN_COOKIE, offered, httponly=True, samesite="strict")
            return response
        header = request.headers.get("authorization", "")
        candidates = (
            request.cookies.get(TOKEN_COOKIE),
            request.headers.get("x-docextract-token"),
            header[7:] if header.lower().startswith("bearer ") else None,
        )
        if any(c is not None and _same(c, self.token) for c in candidates):
            return None
        return PlainTextResponse(
            "This review desk needs its token: open it once as /?token=... (the value of "
            "DOCEXTRACT_REVIEW__TOKEN), or send it as Authorization: Bearer.",
            status_code=401,
        )


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another origin (Origin header)."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


def csrf_ok(request: Request, submitted: str | None) -> bool:
    """The double-submit check: the token sent with the POST equals the cookie's."""
    cookie = request.cookies.get(CSRF_COOKIE) or ""
    return len(cookie) >= 32 and submitted is not None and _same(submitted, cookie)


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def clean_reviewer(name: str | None) -> str:
    """A reviewer name as stored: printable, trimmed, at most 80 characters."""
    text = "".join(ch for ch in (name or "") if ch.isprintable()).strip()
    return text[:80]
