"""The operator dashboard: server-rendered pages over the outbox, webhooks and the lake.

Pages: ``/dashboard`` (environment, outbox depth, throughput over the last hour, latest dead
letters, recent webhooks, funnel), ``/dashboard/dead-letters`` (filter, paginate, replay, purge),
``/dashboard/webhooks``, ``/dashboard/syncs`` (the bulk syncs' last runs, ``syncs.py``).
Everything reads through ``count``/``limit``/``offset``, never a whole table, so the pages stay
fast with a million operations waiting.

Auth: the same API keys. A browser logs in once (``/dashboard/login``) and gets a session cookie
(HttpOnly, SameSite=Strict, an HMAC, never the key; see ``server/auth.py``); scripts may send the
``Authorization`` header instead. Every POST carries the session's CSRF token. With
``CIO_RELAY_DASHBOARD_READ_ONLY`` the pages show no buttons and the actions answer 403.

Failed logins are throttled per client and overall (429 with ``Retry-After``, ``throttle.py``);
logging out revokes the session on the server (``sessions.py``); the cookie is ``Secure`` over
https and, with ``CIO_RELAY_SECURE_COOKIES`` (on by default in production), always. Numbers in
query strings are read only through ``digits.whole_number``: anything else is the 422 page.
When the outbox, the webhook inbox or the lake fails under a page (Redis restarting, a full
disk), the page is the 503 problem page naming the store and the error class, with
``Retry-After``: an operator opens the dashboard exactly when something is wrong.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from cio_relay.config import Settings
from cio_relay.digits import whole_number
from cio_relay.errors import StorageUnavailableError
from cio_relay.lake.bigquery_state import LoadSummary, read_summary
from cio_relay.observability.throughput import ThroughputRing
from cio_relay.operations import Kind
from cio_relay.outbox.base import DeadLetterFilter, DeadReason, Outbox
from cio_relay.server.auth import SESSION_COOKIE, SESSION_SECONDS, ApiKeys, Principal
from cio_relay.server.dashboard.charts import funnel_chart, throughput_chart
from cio_relay.server.dashboard.sessions import RevokedSessions
from cio_relay.server.dashboard.sources import FunnelSource, RecentWebhooks, bigquery_state
from cio_relay.server.dashboard.syncs import SyncRuns
from cio_relay.server.dashboard.throttle import LoginThrottle, client_key

__all__ = ["PAGE_SIZE", "Dashboard"]

log = logging.getLogger("cio_relay.server.dashboard")

PAGE_SIZE = 50
_MAX_PAGE_SIZE = 200
_MAX_FORM = 64 * 1024
_KINDS = tuple(k.value for k in Kind)
_REASONS = tuple(r.value for r in DeadReason)
_TEMPLATES = Path(__file__).parent / "templates"
_MAX_OFFSET = 10**12
_REVOKED_SESSIONS_FILE = "dashboard-sessions.db"


Page = Callable[["Dashboard", Request], Awaitable[Response]]


async def _stored(store: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``call`` on a worker thread; a failure of the store it reads is StorageUnavailableError."""
    try:
        return await asyncio.to_thread(call, *args, **kwargs)
    except Exception as exc:
        raise StorageUnavailableError(store, exc) from exc


def _unavailable_is_503(page: Page) -> Page:
    """The page, or the 503 problem page while a store it reads fails."""

    @functools.wraps(page)
    async def answer(self: Dashboard, request: Request) -> Response:
        try:
            return await page(self, request)
        except StorageUnavailableError as exc:
            log.warning("dashboard page without its data: %s", exc)
            response = self._problem(
                request, 503, f"{exc}; try again shortly", self._principal(request)
            )
            response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
            return response

    return answer


class _BadInput(Exception):
    """A query or form value the dashboard cannot use: answered 422 with the message."""


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["age"] = _age
    env.filters["utc"] = lambda ts: time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))
    return env


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _filter_from(values: Mapping[str, str]) -> DeadLetterFilter:
    kind = values.get("kind") or None
    reason = values.get("reason") or None
    if kind is not None and kind not in _KINDS:
        raise _BadInput(f"kind must be one of {', '.join(_KINDS)}")
    if reason is not None and reason not in _REASONS:
        raise _BadInput(f"reason must be one of {', '.join(_REASONS)}")
    older_text = values.get("older_than") or ""
    older_than = None
    if older_text:
        try:
            older_than = float(older_text)
        except ValueError:
            raise _BadInput("older_than must be a number of seconds") from None
        if not math.isfinite(older_than) or older_than < 0:
            raise _BadInput("older_than must be a non-negative number of seconds")
    return DeadLetterFilter((), kind, reason, older_than)


def _int_param(values: Mapping[str, str], name: str, default: int, top: int) -> int:
    text = values.get(name) or ""
    if not text:
        return default
    number = whole_number(text)
    if number is None:
        raise _BadInput(f"{name} must be a whole number")
    return min(number, top)


class Dashboard:
    """Routes under ``/dashboard``; see the module docstring."""

    def __init__(
        self,
        *,
        settings: Settings,
        outbox: Outbox,
        keys: ApiKeys,
        throughput: ThroughputRing,
        webhooks: RecentWebhooks | None = None,
        funnel: FunnelSource | None = None,
        sandbox_url: str | None = None,
        throttle: LoginThrottle | None = None,
        revoked: RevokedSessions | None = None,
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self.keys = keys
        self.throughput = throughput
        self.webhooks = webhooks
        self.funnel = funnel
        self.sandbox_url = sandbox_url
        self.read_only = settings.dashboard_read_only
        self.throttle = throttle or LoginThrottle()
        self.revoked = revoked or RevokedSessions(settings.data_dir / _REVOKED_SESSIONS_FILE)
        forced = settings.secure_cookies
        self._always_secure = settings.env == "production" if forced is None else forced
        self._templates = _environment()
        self._bigquery = bigquery_state(settings)
        self.sync_runs = SyncRuns(outbox)

    def routes(self) -> list[Route]:
        return [
            Route("/dashboard", self.overview, methods=["GET"], name="dashboard"),
            Route("/dashboard/dead-letters", self.dead_letters, methods=["GET"]),
            Route("/dashboard/dead-letters/replay", self.replay, methods=["POST"]),
            Route("/dashboard/dead-letters/purge", self.purge, methods=["POST"]),
            Route("/dashboard/webhooks", self.recent_webhooks, methods=["GET"]),
            Route("/dashboard/syncs", self.syncs, methods=["GET"]),
            Route("/dashboard/login", self.login_page, methods=["GET"]),
            Route("/dashboard/login", self.login, methods=["POST"]),
            Route("/dashboard/logout", self.logout, methods=["POST"]),
        ]

    # --- rendering and auth -------------------------------------------------------------------

    def _render(
        self, request: Request, name: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        nonce = secrets.token_urlsafe(12)
        principal: Principal | None = context.pop("principal", None)
        html = self._templates.get_template(name).render(
            settings=self.settings,
            environment=self.settings.env,
            region=self.settings.region,
            sandbox_url=self.sandbox_url,
            read_only=self.read_only,
            csrf=self.keys.csrf_token(principal) if principal is not None else "",
            logged_in=principal is not None and principal.session is not None,
            nonce=nonce,
            path=request.url.path,
            **context,
        )
        return HTMLResponse(html, status_code=status, headers=_security_headers(nonce))

    def _principal(self, request: Request) -> Principal | None:
        from_header = self.keys.from_authorization(request.headers.get("authorization"))
        if from_header is not None:
            return from_header
        session = self.keys.from_session(request.cookies.get(SESSION_COOKIE))
        if session is None or self.revoked.is_revoked(self.keys.session_id(session)):
            return None
        return session

    def _to_login(self, request: Request) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/dashboard/login?" + urlencode({"next": target}), 303)

    def _problem(self, request: Request, status: int, message: str, principal: Any) -> Response:
        return self._render(request, "problem.html", status, message=message, principal=principal)

    # --- pages --------------------------------------------------------------------------------

    @_unavailable_is_503
    async def overview(self, request: Request) -> Response:
        principal = self._principal(request)
        if principal is None:
            return self._to_login(request)
        depth, latest_dead = await asyncio.gather(
            _stored("outbox", self.outbox.depth),
            _stored("outbox", self.outbox.list_dead, DeadLetterFilter(), limit=10),
        )
        webhooks = (
            await _stored("webhook inbox", self.webhooks.recent, 10) if self.webhooks else None
        )
        funnel = await _stored("lake", self.funnel.funnel, 7, 8) if self.funnel else None
        bigquery = await self._bigquery_summary()
        minutes = self.throughput.series()
        return self._render(
            request,
            "overview.html",
            principal=principal,
            depth=depth,
            latest_dead=latest_dead,
            webhooks=webhooks,
            funnel=[(row.campaign, funnel_chart(row.steps)) for row in funnel or ()],
            funnel_configured=self.funnel is not None,
            bigquery=bigquery,
            chart=throughput_chart(minutes),
            delivered_last_hour=sum(m.delivered for m in minutes),
            dead_last_hour=sum(m.dead for m in minutes),
            now=time.time(),
        )

    async def _bigquery_summary(self) -> LoadSummary | str | None:
        """The BigQuery loader's state, or why it cannot be read (the page still shows)."""
        if self._bigquery is None:
            return None
        try:
            return await asyncio.to_thread(read_summary, *self._bigquery)
        except Exception as exc:
            return f"the load state cannot be read ({type(exc).__name__})"

    @_unavailable_is_503
    async def dead_letters(self, request: Request) -> Response:
        principal = self._principal(request)
        if principal is None:
            return self._to_login(request)
        query = request.query_params
        try:
            where = _filter_from(query)
            limit = max(1, _int_param(query, "limit", PAGE_SIZE, _MAX_PAGE_SIZE))
            offset = _int_param(query, "offset", 0, _MAX_OFFSET)
            notice = _notice(query.get("done"), query.get("count"))
        except _BadInput as exc:
            return self._problem(request, 422, str(exc), principal)
        rows, total = await asyncio.gather(
            _stored("outbox", self.outbox.list_dead, where, limit=limit, offset=offset),
            _stored("outbox", self.outbox.count_dead, where),
        )
        filters = {
            "kind": where.kind or "",
            "reason": where.reason or "",
            "older_than": query.get("older_than") or "",
        }
        kept = {k: v for k, v in filters.items() if v}
        return self._render(
            request,
            "dead_letters.html",
            principal=principal,
            rows=rows,
            total=total,
            offset=offset,
            limit=limit,
            filters=filters,
            kinds=_KINDS,
            reasons=_REASONS,
            prev_url=_page_url(kept, max(0, offset - limit), limit) if offset else None,
            next_url=_page_url(kept, offset + limit, limit) if offset + limit < total else None,
            notice=notice,
            now=time.time(),
        )

    @_unavailable_is_503
    async def recent_webhooks(self, request: Request) -> Response:
        principal = self._principal(request)
        if principal is None:
            return self._to_login(request)
        try:
            offset = _int_param(request.query_params, "offset", 0, _MAX_OFFSET)
        except _BadInput as exc:
            return self._problem(request, 422, str(exc), principal)
        rows: Any = None
        total = 0
        counts = None
        if self.webhooks is not None:
            rows, total, counts = await asyncio.gather(
                _stored("webhook inbox", self.webhooks.recent, PAGE_SIZE, offset),
                _stored("webhook inbox", self.webhooks.total),
                _stored("webhook inbox", self.webhooks.counts),
            )
        return self._render(
            request,
            "webhooks.html",
            principal=principal,
            rows=rows,
            total=total,
            counts=counts,
            offset=offset,
            prev_url=f"?offset={max(0, offset - PAGE_SIZE)}" if offset else None,
            next_url=f"?offset={offset + PAGE_SIZE}" if offset + PAGE_SIZE < total else None,
        )

    @_unavailable_is_503
    async def syncs(self, request: Request) -> Response:
        principal = self._principal(request)
        if principal is None:
            return self._to_login(request)
        view = await _stored("user sync state", self.sync_runs.view)
        return self._render(request, "syncs.html", principal=principal, view=view)

    # --- actions ------------------------------------------------------------------------------

    @_unavailable_is_503
    async def replay(self, request: Request) -> Response:
        return await self._act(request, "replayed")

    @_unavailable_is_503
    async def purge(self, request: Request) -> Response:
        return await self._act(request, "purged")

    async def _act(self, request: Request, action: str) -> Response:
        principal = self._principal(request)
        if principal is None:
            return self._to_login(request)
        form = await _read_form(request)
        if form is None:
            return self._problem(request, 413, "the form is too large", principal)
        if not self.keys.check_csrf(principal, form.get("csrf")):
            return self._problem(request, 403, "the form has expired; reload the page", principal)
        if self.read_only:
            return self._problem(request, 403, "the dashboard is read-only", principal)
        try:
            where = self._action_filter(form)
        except _BadInput as exc:
            return self._problem(request, 422, str(exc), principal)
        apply = self.outbox.replay if action == "replayed" else self.outbox.purge
        count = await _stored("outbox", apply, where)
        back = {k: form[k] for k in ("kind", "reason", "older_than") if form.get(k)}
        back.update(done=action, count=str(count))
        return RedirectResponse("/dashboard/dead-letters?" + urlencode(back), 303)

    @staticmethod
    def _action_filter(form: Mapping[str, str]) -> DeadLetterFilter:
        op_id = form.get("op_id") or ""
        if op_id:
            if len(op_id) > 64:
                raise _BadInput("op_id is not an operation id")
            return DeadLetterFilter((op_id,))
        where = _filter_from(form)
        if where == DeadLetterFilter() and form.get("all") != "1":
            raise _BadInput("name an operation or a filter, or confirm acting on every one")
        return where

    # --- login --------------------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        target = _safe_next(request.query_params.get("next"))
        return self._render(request, "login.html", next=target, failed=False, wait=None)

    async def login(self, request: Request) -> Response:
        client = client_key(request.client.host if request.client else None)
        wait = self.throttle.retry_after(client)
        form = await _read_form(request)
        target = _safe_next(form.get("next") if form else None)
        if wait is not None:  # refused before the key is looked at: a guess here tells nothing
            refused = self._render(request, "login.html", 429, next=target, failed=False, wait=wait)
            refused.headers["Retry-After"] = str(wait)
            return refused
        principal = self.keys.verify(form.get("key", "")) if form else None
        if principal is None:
            self.throttle.failed(client)
            return self._render(request, "login.html", 401, next=target, failed=True, wait=None)
        self.throttle.succeeded(client)
        response = RedirectResponse(target, 303)
        response.set_cookie(
            SESSION_COOKIE,
            self.keys.issue_session(principal),
            max_age=SESSION_SECONDS,
            path="/dashboard",
            secure=self._always_secure or request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
        return response

    async def logout(self, request: Request) -> Response:
        principal = self._principal(request)
        if principal is None:
            return self._to_login(request)
        form = await _read_form(request)
        if form is None or not self.keys.check_csrf(principal, form.get("csrf")):
            return self._problem(request, 403, "the form has expired; reload the page", principal)
        if principal.session is not None:
            try:
                await asyncio.to_thread(
                    self.revoked.revoke,
                    self.keys.session_id(principal),
                    expires_at=principal.session + SESSION_SECONDS,
                )
            except (OSError, sqlite3.Error):
                log.exception("dashboard: the logout could not be recorded")
                message = "the logout could not be recorded on the server; try again"
                return self._problem(request, 503, message, principal)
        response = RedirectResponse("/dashboard/login", 303)
        response.delete_cookie(SESSION_COOKIE, path="/dashboard", httponly=True, samesite="strict")
        return response


async def _read_form(request: Request) -> dict[str, str] | None:
    """An url-encoded form (first value of each field), or None past ``_MAX_FORM`` bytes."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM:
            return None
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in parsed.items()}


def _safe_next(target: str | None) -> str:
    """Only a dashboard path: never an open redirect to another site."""
    if target and target.startswith("/dashboard") and "//" not in target and "\\" not in target:
        return target
    return "/dashboard"


def _page_url(filters: Mapping[str, str], offset: int, limit: int) -> str:
    return "?" + urlencode({**filters, "offset": offset, "limit": limit})


def _notice(done: str | None, count: str | None) -> str | None:
    # Built from a fixed vocabulary and a number only: the query string cannot inject text.
    if done not in ("replayed", "purged"):
        return None
    number = whole_number(count)
    if number is None:
        raise _BadInput("count must be a whole number")
    return f"{done} {number:,} dead letter{'s' if number != 1 else ''}"


def _security_headers(nonce: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
            "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        ),
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }
