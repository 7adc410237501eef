"""The web side of the subscriber lifecycle, as one small ASGI app (Starlette, run by uvicorn).

    GET  /u/{token}        a page with an Unsubscribe button; changes nothing (mail scanners
                           prefetch links, so a GET must never unsubscribe)
    POST /u/{token}        RFC 8058 one-click unsubscribe from mail providers
                           (`List-Unsubscribe=One-Click`) and the page's button: 200, no redirect,
                           idempotent
    GET  /confirm/{token}  a page with a Confirm button; changes nothing (the same mail scanners
                           would otherwise complete the double opt-in for the recipient)
    POST /confirm/{token}  double opt-in: pending → active; idempotent
    POST /u/{token}/again  the unsubscribed page's "Subscribe again": mails the suppressed address
                           a re-opt-in link (at most one per 10 minutes); changes nothing else
    GET  /again/{token}    the re-opt-in link: a page with a button; changes nothing
    POST /again/{token}    lifts the address's suppression (and an unsubscribed row is active
                           again); idempotent
    GET  /p/{token}        the preferences page (the digest footer's "Choose your topics and
                           time"): topics, mutes, schedule, size; pause and resume
    POST /p/{token}        saves it (a form, application/x-www-form-urlencoded, else 415); then
                           303 back to GET (?done=saved); invalid input 400 with the form again;
                           a change the subscriber may not make here 409 (see bot.app.preferences)
    POST /slack/commands   `/flarestart …` from Slack (bot.chat.slack): only when a signing secret
                           is configured; an unsigned, forged, stale or replayed request is 401
                           and changes nothing
    GET  /healthz          200 {"status": "ok", "database": "ok"}, 503 when the database fails
    GET  /metrics          aggregate figures in the Prometheus text format (bot.web.metrics); only
                           when web.metrics_token is set (else 404), and only with
                           `Authorization: Bearer <token>` (else 401)

The signed token is the only authority, and each token is good for its one purpose. Unsubscribe
bodies are read under a small cap and otherwise ignored, so a provider's form-encoded or multipart
body and our own form all work; the preferences form is read under a larger cap. A forged, stale
or expired token gets a plain error page and changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.app import FlareStart, preferences
from bot.app.chat import ChatCommands
from bot.app.preferences import (
    NOTICES,
    Decision,
    FormError,
    Invalid,
    PreferencesEditor,
    PreferencesForm,
    Refused,
    Save,
    SetStatus,
    Unchanged,
)
from bot.chat.slack import MAX_BODY_BYTES as SLACK_BODY_BYTES
from bot.chat.slack import (
    SlackAuthError,
    SlackCommand,
    SlackCommandHandler,
    SlackVerifier,
    read_form,
    slack_options,
)
from bot.config import Settings
from bot.errors import NotFoundError, StatusChangedError
from bot.links.secret import resolve_secret
from bot.links.tokens import (
    AGAIN_PATH,
    AGAIN_REQUEST_PATH,
    CONFIRM_PATH,
    MAX_AGE,
    PREFERENCES_PATH,
    UNSUBSCRIBE_PATH,
    InvalidTokenError,
    Purpose,
    TokenClaims,
    make_token,
    read_token_claims,
)
from bot.resources import shipped_template_dir
from bot.web import metrics

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from bot.app.core import SubscriberAccess
    from bot.app.types import Subscriber, SuppressionRecord
    from bot.web.public import PublicPages

TEMPLATE_DIR = shipped_template_dir("web")
# A one-click body is 26 bytes; a multipart one a couple of hundred. Nothing more is needed.
MAX_BODY_BYTES = 4096
# A token made this long before its subscriber's row is for an earlier subscriber with the same
# id (SQLite can reuse the highest id after a delete). The slack covers clocks of other hosts.
STALE_SLACK = timedelta(minutes=5)

log = logging.getLogger(__name__)


StoreFactory = Callable[["Engine"], "SubscriberAccess"]


class BodyTooLargeError(Exception):
    """The request body is over MAX_BODY_BYTES."""


def create_app(
    settings: Settings,
    *,
    store_factory: StoreFactory | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Starlette:
    """The web app. The store is opened (and migrated) when the server starts, closed when it stops.

    `store_factory` builds the subscriber store from the engine (default: the application layer's).
    `clock`: what the application layer, the archive's days and the Slack verifier take as now
    (tests fix it).
    """
    from bot.web.public import PublicPages

    pages = Pages(TEMPLATE_DIR)
    flarestart = FlareStart(settings, seed=False, subscriber_access=store_factory, clock=clock)
    editor = flarestart.preferences_editor()
    secret = resolve_secret(settings)
    public = PublicPages(flarestart, secret, pages)
    web = _Web(flarestart, secret, pages, editor, public)
    routes = [
        *public.routes(),
        Route(UNSUBSCRIBE_PATH, web.unsubscribe_link, methods=["GET", "POST"]),
        Route(AGAIN_REQUEST_PATH, web.request_again, methods=["POST"]),
        Route(AGAIN_PATH, web.again_link, methods=["GET", "POST"]),
        Route(CONFIRM_PATH, web.confirm_link, methods=["GET", "POST"]),
        Route(PREFERENCES_PATH, web.preferences_link, methods=["GET", "POST"]),
        Route("/healthz", web.healthz, methods=["GET"]),
    ]
    if settings.web.metrics_token:  # off unless an operator opts in: the figures are the business's
        routes.append(Route("/metrics", web.scrape, methods=["GET"]))
    slack = slack_options(settings)
    if slack.signing_secret:  # no secret, no way to tell Slack from anyone: no route
        now = (lambda: clock().timestamp()) if clock is not None else time.time
        web.slack = _SlackDoor(
            SlackVerifier(slack.signing_secret, clock=now),
            SlackCommandHandler(
                ChatCommands(flarestart, prefix="slack", origin="slack"), stand_in=slack.stand_in
            ),
        )
        routes.append(Route("/slack/commands", web.slack_command, methods=["POST"]))
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders, headers=pages.security_headers)],
        exception_handlers={
            InvalidTokenError: web.invalid_token,
            NotFoundError: web.not_found,
            BodyTooLargeError: web.too_large,
            ClientDisconnect: web.client_gone,
            HTTPException: web.http_error,
            Exception: web.server_error,
        },
        lifespan=web.lifespan,
    )
    # Starlette would answer "/u/<token>/" with a redirect built from the request's Host header,
    # which any client sets: a redirect to a host of their choosing. http_error redirects such
    # paths to web.base_url instead.
    app.router.redirect_slashes = False
    return app


class Pages:
    """Jinja2 pages from templates/web, autoescaped, and the headers that must go with them."""

    def __init__(self, directory: Path) -> None:
        self.env = Environment(
            loader=FileSystemLoader(directory),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        # The one inline <style> is allowed by its hash, so the policy needs no 'unsafe-inline'
        # and allows no script at all.
        style = self.env.get_template("_style.html.j2").render()
        style_hash = base64.b64encode(hashlib.sha256(style.encode("utf-8")).digest()).decode("ascii")
        self.security_headers: dict[str, str] = {
            "Content-Security-Policy": (
                f"default-src 'none'; style-src 'sha256-{style_hash}'; form-action 'self'; "
                "base-uri 'none'; frame-ancestors 'none'"
            ),
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
            # The token in the URL must not leak to other sites, caches or search engines.
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
            "X-Robots-Tag": "noindex, nofollow",
        }

    def render(self, template: str, /, *, status_code: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status_code)

    def error(
        self,
        status_code: int,
        title: str,
        message: str,
        hint: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        response = self.render(
            "error.html.j2", status_code=status_code, title=title, message=message, hint=hint
        )
        response.headers.update(headers or {})
        return response


class SecurityHeaders:
    """Adds the security headers to every response that does not set them itself."""

    def __init__(self, app: ASGIApp, headers: Mapping[str, str]) -> None:
        self.app = app
        self.headers = dict(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_secured)


def mask_email(email: str | None) -> str | None:
    """'ada@example.com' → 'a***@example.com': enough to recognise, not enough to harvest."""
    if not email:
        return None
    local, at, domain = email.rpartition("@")
    if not at or not local:
        return "***"
    return f"{local[0]}***@{domain}"


@dataclass(frozen=True, slots=True)
class _SlackDoor:
    verifier: SlackVerifier
    handler: SlackCommandHandler


class _Web:
    slack: _SlackDoor | None = None

    def __init__(
        self,
        flarestart: FlareStart,
        secret: bytes,
        pages: Pages,
        editor: PreferencesEditor,
        public: PublicPages,
    ) -> None:
        self.flarestart = flarestart
        self.public = public
        self.settings = flarestart.settings
        self.secret = secret
        self.pages = pages
        self.editor = editor
        self._open = False

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        flarestart = await run_in_threadpool(self.flarestart.open)
        await run_in_threadpool(self.public.open)
        self.public.start_mailer()
        self._open = True
        app.state.store = flarestart.store
        log.info("web app started", extra={"base_url": self.settings.web.base_url})
        try:
            yield
        finally:
            self._open = False
            await self.public.close()
            flarestart.close()

    @property
    def app(self) -> FlareStart:
        if not self._open:
            raise RuntimeError("the web app's store is not open: run the app with its lifespan")
        return self.flarestart

    # -- routes -----------------------------------------------------------------------------

    async def unsubscribe_link(self, request: Request) -> Response:
        # One route for both methods, so a 405 lists them both in Allow.
        if request.method == "POST":
            return await self.unsubscribe(request)
        return await self.unsubscribe_page(request)

    async def unsubscribe_page(self, request: Request) -> Response:
        claims = self._claims(request, "unsubscribe")
        subscriber, suppression = await run_in_threadpool(self._unsubscribed_state, claims)
        if subscriber is None or subscriber.status == "unsubscribed":
            return self._done(request, subscriber, suppression)
        return self.pages.render(
            "unsubscribe.html.j2", name=subscriber.name, address=mask_email(subscriber.email)
        )

    async def unsubscribe(self, request: Request) -> Response:
        claims = self._claims(request, "unsubscribe")
        body = await _read_body(request, MAX_BODY_BYTES)
        via = "page" if b"via=page" in body else "one-click" if b"One-Click" in body else "post"
        subscriber, suppression = await run_in_threadpool(self._unsubscribe, claims, via)
        return self._done(request, subscriber, suppression)

    def _done(
        self, request: Request, subscriber: Subscriber | None, suppression: SuppressionRecord | None
    ) -> Response:
        """The unsubscribed page: what is true of the address now, and "subscribe again" while
        it is suppressed (a mail with a re-opt-in link; nothing changes before it is confirmed)."""
        address = suppression.address if suppression is not None else None
        if address is None and subscriber is not None:
            address = subscriber.email
        again = None
        if suppression is not None:
            again = AGAIN_REQUEST_PATH.format(token=request.path_params["token"])
        return self.pages.render("done.html.j2", address=mask_email(address), again_url=again)

    async def request_again(self, request: Request) -> Response:
        claims = self._claims(request, "unsubscribe")
        await _read_body(request, MAX_BODY_BYTES)  # the button's form; nothing in it matters
        subscriber, suppression = await run_in_threadpool(self._unsubscribed_state, claims)
        if suppression is None:
            address = mask_email(subscriber.email if subscriber is not None else None)
            return self.pages.render("again.html.j2", outcome="nothing", address=address)
        result = await self.app.request_reoptin(suppression)
        status = 503 if result.outcome == "failed" else 200
        return self.pages.render(
            "again.html.j2", status_code=status, outcome=result.outcome, address=mask_email(result.address)
        )

    async def again_link(self, request: Request) -> Response:
        claims = self._claims(request, "again")
        if request.method == "POST":
            await _read_body(request, MAX_BODY_BYTES)
            done = await run_in_threadpool(self.app.reoptin, claims.subscriber_id, claims.issued_at)
            log.info(
                "subscribed again" if done.outcome == "subscribed" else "subscribe again: nothing to lift",
                extra={"subscriber": done.address, "suppression": claims.subscriber_id},
            )
            return self.pages.render("again.html.j2", outcome=done.outcome, address=mask_email(done.address))
        found = await run_in_threadpool(self.app.reoptin_suppression, claims.subscriber_id, claims.issued_at)
        outcome = "ask" if found is not None else "nothing"
        return self.pages.render(
            "again.html.j2", outcome=outcome, address=mask_email(found.address if found else None)
        )

    async def confirm_link(self, request: Request) -> Response:
        if request.method == "POST":
            return await self.confirm(request)
        return await self.confirm_page(request)

    async def confirm_page(self, request: Request) -> Response:
        subscriber = await run_in_threadpool(self._find, self._claims(request, "confirm"))
        outcome = {"pending": "ask", "unsubscribed": "unsubscribed"}.get(subscriber.status, "already")
        return self._confirm_page(subscriber, outcome)

    def _confirm_page(self, subscriber: Subscriber, outcome: str) -> Response:
        # A known reader who signed up again gets this link by mail: it leads on to their page.
        preferences_url = None
        if outcome == "already" and subscriber.id is not None:
            token = make_token(self.secret, purpose="preferences", subscriber_id=subscriber.id)
            preferences_url = PREFERENCES_PATH.format(token=token)
        return self.pages.render(
            "confirm.html.j2",
            outcome=outcome,
            address=mask_email(subscriber.email),
            preferences_url=preferences_url,
        )

    async def confirm(self, request: Request) -> Response:
        claims = self._claims(request, "confirm")
        if (refused := self._foreign(request)) is not None:
            return refused
        await _read_body(request, MAX_BODY_BYTES)  # the button's form; nothing in it matters
        subscriber, outcome = await run_in_threadpool(self._confirm, claims)
        if outcome == "confirmed" and subscriber.id is not None:
            # Double opt-in done: straight on to the page where they choose what they get.
            token = make_token(self.secret, purpose="preferences", subscriber_id=subscriber.id)
            return RedirectResponse(PREFERENCES_PATH.format(token=token) + "?done=confirmed", status_code=303)
        return self._confirm_page(subscriber, outcome)

    def _foreign(self, request: Request) -> Response | None:
        """A page of another site posting to a signed link: refused (a CSRF guard besides the link)."""
        origin = self.public.csrf.foreign_origin(request)
        if origin is None:
            return None
        log.info(
            "refused a form from another site", extra={"origin": origin[:80], "path": _route_name(request)}
        )
        return self.pages.error(403, "Refused", "This form can only be sent from FlareStart's own pages.")

    async def preferences_link(self, request: Request) -> Response:
        if request.method == "POST":
            return await self.save_preferences(request)
        return await self.preferences_page(request)

    async def preferences_page(self, request: Request) -> Response:
        subscriber = await run_in_threadpool(self._find, self._claims(request, "preferences"))
        notice = NOTICES.get(request.query_params.get("done", ""))
        return self._preferences(subscriber, notice=notice)

    async def save_preferences(self, request: Request) -> Response:
        claims = self._claims(request, "preferences")
        if (refused := self._foreign(request)) is not None:
            return refused
        if not preferences.is_form(request.headers.get("content-type")):
            return self.pages.error(
                415,
                "Unsupported form",
                "This page takes a form as a browser sends it (application/x-www-form-urlencoded). "
                "Nothing was changed.",
            )
        body = await _read_body(request, preferences.MAX_BODY_BYTES)
        try:
            fields = preferences.read_form(body)
            subscriber, decision = await run_in_threadpool(self._save_preferences, claims, fields)
        except FormError as exc:
            log.info(
                "refused a preferences form", extra={"subscriber": claims.subscriber_id, "reason": str(exc)}
            )
            return self.pages.error(
                400,
                "This form could not be read",
                "Nothing was changed.",
                "Open the link from your digest again and make your changes there.",
            )
        match decision:
            case Save() | SetStatus() | Unchanged():  # Post/Redirect/Get: a reload posts nothing
                return RedirectResponse(f"{request.url.path}?done={decision.done}", status_code=303)
            case Invalid(form=form, errors=errors):
                return self._preferences(subscriber, form=form, errors=errors, status_code=400)
            case Refused(reason=reason):
                return self._preferences(subscriber, refusal=reason, status_code=409)

    async def slack_command(self, request: Request) -> Response:
        assert self.slack is not None
        body = await _read_body(request, SLACK_BODY_BYTES)
        try:
            self.slack.verifier.check(body, request.headers)
        except SlackAuthError as exc:
            log.warning("refused a slack request", extra={"reason": str(exc)})
            return PlainTextResponse("invalid signature", status_code=401)
        try:
            fields = read_form(body)
        except ValueError:
            return PlainTextResponse("not a slash command", status_code=400)
        if fields.get("ssl_check") == "1":  # Slack checking the certificate: nothing to run
            return PlainTextResponse("ok")
        command = SlackCommand.of(fields)
        answer = await self.slack.handler.handle(command)
        background = BackgroundTask(answer.follow_up) if answer.follow_up is not None else None
        return JSONResponse(answer.payload, background=background)

    async def healthz(self, request: Request) -> Response:
        try:
            await run_in_threadpool(self._ping)
        except Exception:
            log.warning("health check: the database does not answer", exc_info=True)
            return JSONResponse({"status": "error", "database": "error"}, status_code=503)
        return JSONResponse({"status": "ok", "database": "ok"})

    async def scrape(self, request: Request) -> Response:
        token = self.settings.web.metrics_token
        if not token or not metrics.bearer_matches(request.headers.get("authorization"), token):
            log.info("refused a metrics request: no or a wrong bearer token")
            return PlainTextResponse(
                "Unauthorized: /metrics needs the header Authorization: Bearer <web.metrics_token>\n",
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        body = await run_in_threadpool(self._collect_metrics)
        return Response(body, media_type=metrics.CONTENT_TYPE)

    # -- the work, in a worker thread (the store is synchronous) -----------------------------

    def _find(self, claims: TokenClaims) -> Subscriber:
        subscriber = self.app.get_subscriber(claims.subscriber_id)
        if claims.issued_at + STALE_SLACK < subscriber.created_at:
            raise InvalidTokenError("stale", "the link was made for an earlier subscriber")
        return subscriber

    def _unsubscribed_state(self, claims: TokenClaims) -> tuple[Subscriber | None, SuppressionRecord | None]:
        """The link's subscriber (None when their row is gone or made anew since the link) and
        the suppression of the address. A link whose row went away, or was re-made by a sync,
        finds the suppression recorded for it, so it says what is true of the address now."""
        try:
            subscriber = self._find(claims)
        except (NotFoundError, InvalidTokenError):
            suppression = self.app.suppression_for_link(claims.subscriber_id, claims.issued_at)
            if suppression is None:
                raise
            return None, suppression
        found = self.app.suppression(subscriber.email) if subscriber.email else None
        return subscriber, found

    def _unsubscribe(
        self, claims: TokenClaims, via: str
    ) -> tuple[Subscriber | None, SuppressionRecord | None]:
        subscriber, suppression = self._unsubscribed_state(claims)
        if subscriber is None:  # the row is gone; its address is suppressed already
            log.info(
                "unsubscribe again: the address is suppressed", extra={"subscriber": claims.subscriber_id}
            )
            return None, suppression
        change = self.app.unsubscribe(claims.subscriber_id, source=f"web:{via}")
        if not change.changed:
            log.info("unsubscribe again: already unsubscribed", extra={"subscriber": claims.subscriber_id})
        else:
            log.info(
                "unsubscribed", extra={"subscriber": claims.subscriber_id, "previous": change.was, "via": via}
            )
        email = change.subscriber.email
        return change.subscriber, self.app.suppression(email) if email else None

    def _confirm(self, claims: TokenClaims) -> tuple[Subscriber, str]:
        self._find(claims)
        change = self.app.confirm(claims.subscriber_id)
        if change.changed:
            log.info("confirmed", extra={"subscriber": claims.subscriber_id})
            email = change.subscriber.email
            if email and self.app.lift_on_confirm(email, claims.issued_at):
                log.info("suppression lifted: confirmed again", extra={"subscriber": claims.subscriber_id})
            return change.subscriber, "confirmed"
        if change.was == "unsubscribed":
            log.info("confirm refused: unsubscribed", extra={"subscriber": claims.subscriber_id})
            return change.subscriber, "unsubscribed"
        return change.subscriber, "already"

    def _save_preferences(
        self, claims: TokenClaims, fields: Mapping[str, list[str]]
    ) -> tuple[Subscriber, Decision]:
        subscriber = self._find(claims)
        decision = self.editor.decide(subscriber, fields)
        who = {"subscriber": claims.subscriber_id}
        match decision:
            case Save(values=values) if values:
                subscriber = self.app.update_preferences(claims.subscriber_id, values)
                log.info("preferences saved", extra={**who, "changed": ",".join(values)})
            case Save():
                log.info("preferences saved: nothing changed", extra=who)
            case SetStatus(status=status, expect=expect):
                try:
                    subscriber = self.app.change_status(claims.subscriber_id, status, expect=expect)
                except StatusChangedError:
                    subscriber = self._find(claims)
                    log.info(
                        "status not changed: it changed meanwhile", extra={**who, "status": subscriber.status}
                    )
                    return subscriber, Refused(
                        "Your subscription changed while this page was open, so nothing was changed. "
                        "This is how it is now."
                    )
                log.info(
                    "paused" if status == "paused" else "resumed",
                    extra={**who, "previous": expect, "via": "preferences"},
                )
            case Unchanged(done=done):
                log.info(f"{done} again: nothing to change", extra=who)
            case Invalid(errors=errors):
                log.info("preferences not saved: invalid", extra={**who, "fields": ",".join(errors)})
            case Refused():
                log.info(
                    "preferences not saved: not changeable here",
                    extra={**who, "status": subscriber.status, "origin": subscriber.origin},
                )
        return subscriber, decision

    def _preferences(
        self,
        subscriber: Subscriber,
        *,
        form: PreferencesForm | None = None,
        errors: Mapping[str, str] | None = None,
        notice: str | None = None,
        refusal: str | None = None,
        status_code: int = 200,
    ) -> Response:
        assert subscriber.id is not None
        unsubscribe = None
        if subscriber.status != "unsubscribed":
            token = make_token(self.secret, purpose="unsubscribe", subscriber_id=subscriber.id)
            unsubscribe = UNSUBSCRIBE_PATH.format(token=token)
        context = self.editor.context(subscriber, form=form, errors=errors, notice=notice, refusal=refusal)
        return self.pages.render(
            "preferences.html.j2",
            status_code=status_code,
            address=mask_email(subscriber.email),
            unsubscribe_url=unsubscribe,
            **context,
        )

    def _collect_metrics(self) -> str:
        if not self._open:
            raise RuntimeError("the web app's store is not open: run the app with its lifespan")
        return metrics.render(self.flarestart.metrics())

    def _ping(self) -> None:
        if not self._open:
            raise RuntimeError("the web app's store is not open")
        self.flarestart.ping()

    def _claims(self, request: Request, purpose: Purpose) -> TokenClaims:
        token = str(request.path_params["token"])
        return read_token_claims(self.secret, token, purpose=purpose, max_age=MAX_AGE[purpose], now=_now())

    # -- errors -----------------------------------------------------------------------------

    async def invalid_token(self, request: Request, exc: Exception) -> Response:
        reason = exc.reason if isinstance(exc, InvalidTokenError) else "unknown"
        log.info("refused a link", extra={"reason": reason, "path": _route_name(request)})
        if reason == "expired":
            return self.pages.error(
                400,
                "This link has expired",
                "Confirmation links work for seven days, and this one is older.",
                "Sign up again and we will send you a fresh link.",
            )
        return self.pages.error(
            400,
            "This link does not work",
            "It may be incomplete, or it was changed on its way to you. Nothing was changed.",
            "Copy the whole link from the email, or use the link in the newest email we sent you.",
        )

    async def not_found(self, request: Request, exc: Exception) -> Response:
        return self.pages.error(
            404,
            "Subscription not found",
            "We have no subscription for this link any more, so we send nothing to it.",
        )

    async def too_large(self, request: Request, exc: Exception) -> Response:
        return self.pages.error(413, "Request too large", "This page takes no more than a short form.")

    async def client_gone(self, request: Request, exc: Exception) -> Response:
        # Not our fault and nothing to fix: one line, not a traceback. Nobody reads the response.
        log.info(
            "the client went away before sending its whole request", extra={"path": _route_name(request)}
        )
        return Response(status_code=400)

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        headers = dict(exc.headers or {})
        if exc.status_code == 404:
            moved = self._without_trailing_slash(request)
            if moved is not None:
                return RedirectResponse(moved, status_code=307)  # 307: a POST stays a POST
            return self.pages.error(404, "Page not found", "There is nothing at this address.")
        if exc.status_code == 405:
            return self.pages.error(
                405, "Method not allowed", "This address does not take that kind of request.", None, headers
            )
        return self.pages.error(exc.status_code, "Request refused", str(exc.detail), None, headers)

    def _without_trailing_slash(self, request: Request) -> str | None:
        """The address under web.base_url of a page asked for with a trailing slash, or None."""
        path = request.url.path
        if len(path) < 2 or not path.endswith("/"):
            return None
        scope = {**request.scope, "path": path.rstrip("/")}
        if not any(route.matches(scope)[0] != Match.NONE for route in request.app.router.routes):
            return None
        query = f"?{request.url.query}" if request.url.query else ""
        return self.settings.web.base_url.rstrip("/") + path.rstrip("/") + query

    async def server_error(self, request: Request, exc: Exception) -> Response:
        # Starlette sends this from outside the middleware stack: add the headers here.
        return self.pages.error(
            500,
            "Something went wrong",
            "It is our fault, not yours, and nothing was changed. Please try again in a few minutes.",
            None,
            self.pages.security_headers,
        )


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLargeError
    return bytes(body)


def _route_name(request: Request) -> str:
    prefix = request.url.path.split("/")[1]
    return {"confirm": "confirm", "p": "preferences", "again": "again"}.get(prefix, "unsubscribe")


def _now() -> datetime:
    return datetime.now(UTC)
