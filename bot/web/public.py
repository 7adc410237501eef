"""The public pages: readers sign themselves up, open a digest in the browser, read the archive.

    GET  /, /subscribe         the sign-up form (email, topics, delivery time, time zone)
    POST /subscribe            a pending subscriber and the opt-in mail; always "check your inbox"
    OPTIONS /subscribe         CORS preflight for the sites in web.embed_origins
    GET  /d/{token}            one subscriber's digest as it was sent ("View in browser")
    GET  /archive              the public daily's newest day; ?filter=news|how-to
    GET  /archive/{YYYY-MM-DD} one day of it
    GET  /archive.atom         the public daily as an Atom feed (one entry per day)
    GET  /assets/flarestart.js the one script: guesses the time zone, filters the topics

The sign-up answer never says whether an address is known (bot/app/signup.py). Abuse is braked
before any work: a foreign Origin or a missing CSRF token (bot/web/csrf.py) is refused, a filled
honeypot field is answered like a success and does nothing, and every client address and every
email address has its rate (bot/web/limits.py).

The POST costs one short transaction: the pending subscriber and the job of its opt-in mail
(bot.app.signup). A worker sends the mail: `flarestart run`'s, which claims it within a second.
Rendering and sending a mail costs more CPU than answering the form, and here it would share the
event loop with every request, so this process sends one itself only when no worker took it
within web.signup_mail_wait seconds (`serve` on its own still mails; 0: at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from bot.app import FlareStart
from bot.app.archive import FILTERS, Archive, ArchiveDay, parse_day
from bot.app.preferences import FormError, is_form, read_form
from bot.app.signup import Accepted, SignupForm, SignupMailer, Signups
from bot.links.tokens import InvalidTokenError, read_view_token
from bot.resources import shipped_template_dir
from bot.web.csrf import FIELD, CsrfGuard
from bot.web.limits import RateLimiter

if TYPE_CHECKING:
    from bot.web.app import Pages

log = logging.getLogger(__name__)

MAX_FORM_BYTES = 16 * 1024  # a form with every topic ticked is about 3 KB
HONEYPOT = "website"
SCRIPT = (shipped_template_dir("web") / "flarestart.js").read_text(encoding="utf-8")
ARCHIVE_CACHE = "public, max-age=300"
ATOM_DAYS = 14


class PublicPages:
    def __init__(
        self,
        flarestart: FlareStart,
        secret: bytes,
        pages: Pages,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        web = flarestart.settings.web
        self.flarestart = flarestart
        self.settings = flarestart.settings
        self.secret = secret
        self.pages = pages
        self.csrf = CsrfGuard(secret, base_url=web.base_url, embed_origins=web.embed_origins)
        self.per_ip = RateLimiter(web.signups_per_ip_hour, 3600, monotonic=monotonic)
        self.per_address = RateLimiter(web.signups_per_address_day, 86400, monotonic=monotonic)
        self.wall = wall
        self.signups: Signups | None = None
        self.archive = Archive(flarestart)
        self._mailer: SignupMailer | None = None
        self._mailing: asyncio.Task[object] | None = None
        self._stop_mailing = asyncio.Event()
        self._pages: dict[str, tuple[float, str]] = {}
        self._sent_page = ""  # "check your inbox": the same for everyone, rendered once

    def routes(self) -> list[Route]:
        return [
            Route("/", self.subscribe_page, methods=["GET"]),
            Route("/subscribe", self.subscribe, methods=["GET", "POST", "OPTIONS"]),
            Route("/d/{token}", self.sent_digest, methods=["GET"]),
            Route("/archive", self.archive_latest, methods=["GET"]),
            Route("/archive.atom", self.archive_feed, methods=["GET"]),
            Route("/archive/{day}", self.archive_day, methods=["GET"]),
            Route("/assets/flarestart.js", self.script, methods=["GET"]),
        ]

    def open(self) -> None:
        """At the server's start, with the store open (the sign-up desk reads the taxonomy)."""
        self.signups = Signups(self.flarestart)
        self._sent_page = self.pages.env.get_template("sent.html.j2").render()

    def start_mailer(self) -> None:
        """The stand-in for `flarestart run`'s worker, on this event loop (bot.app.signup)."""
        self._mailer = self.desk.stand_in_mailer()
        self._mailing = asyncio.create_task(self._mailer.run(self._stop_mailing))

    async def close(self) -> None:
        """At the server's stop: the stand-in's sends under way finish (a job cut short is taken
        over by a worker once its lease ends), then the channels close."""
        if self._mailing is not None:
            self._stop_mailing.set()
            with contextlib.suppress(Exception):
                await self._mailing
        await self.flarestart.channels.aclose()
        if self.signups is not None:
            await run_in_threadpool(self.signups.close)

    @property
    def desk(self) -> Signups:
        if self.signups is None:
            raise RuntimeError("the web app's store is not open: run the app with its lifespan")
        return self.signups

    # -- sign-up ---------------------------------------------------------------------------------

    async def subscribe(self, request: Request) -> Response:
        if request.method == "POST":
            return await self.sign_up(request)
        if request.method == "OPTIONS":
            return self.preflight(request)
        return await self.subscribe_page(request)

    async def subscribe_page(self, request: Request) -> Response:
        return self._form(request, self.desk.blank_form())

    def _form(
        self, request: Request, form: SignupForm, errors: dict[str, str] | None = None, status_code: int = 200
    ) -> Response:
        nonce, new = self.csrf.nonce_for(request)
        response = self.pages.render(
            "subscribe.html.j2",
            status_code=status_code,
            csrf=self.csrf.token(nonce, self.wall()),
            honeypot=HONEYPOT,
            **self.desk.page_context(form, errors),
        )
        if new:
            response.headers.append("set-cookie", self.csrf.cookie_header(nonce))
        # The one page with a script: our own file, nothing inline, nothing from elsewhere.
        policy = self.pages.security_headers["Content-Security-Policy"]
        response.headers["Content-Security-Policy"] = policy.replace(
            "default-src 'none';", "default-src 'none'; script-src 'self';"
        )
        # No token in this page's address: its own origin may go with its form (Origin header).
        response.headers["Referrer-Policy"] = "same-origin"
        return response

    def preflight(self, request: Request) -> Response:
        origin = request.headers.get("origin", "").lower()
        if origin not in self.csrf.embed:
            return Response(status_code=403)
        return Response(
            status_code=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": "POST",
                "Access-Control-Allow-Headers": "Content-Type",
                "Access-Control-Max-Age": "600",
                "Vary": "Origin",
            },
        )

    async def sign_up(self, request: Request) -> Response:
        client = request.client.host if request.client else "unknown"
        if not is_form(request.headers.get("content-type")):
            return self.pages.error(
                415, "Unsupported form", "This address takes the sign-up form as a browser sends it."
            )
        from bot.web.app import _read_body  # the one body reader with its size cap

        body = await _read_body(request, MAX_FORM_BYTES)
        try:
            fields = read_form(body)
        except FormError:
            return self._cors(request, self._form(request, self.desk.blank_form(), status_code=400))
        refusal = self.csrf.check(request, (fields.get(FIELD) or [""])[0], self.wall())
        if refusal is not None:
            log.info("refused a sign-up: %s", refusal, extra={"client": client})
            return self._form(
                request,
                SignupForm.submitted(fields),
                {"form": "This form had expired. Please check your choices and send it again."},
                status_code=403,
            )
        wait = self.per_ip.hit(client)
        if wait is not None:
            log.info("refused a sign-up: too many from one client", extra={"client": client})
            response = self.pages.error(
                429,
                "Too many sign-ups",
                "This connection has sent the form many times in the last hour.",
                "Please try again later.",
                {"Retry-After": str(int(wait) + 1)},
            )
            return self._cors(request, response)
        form = SignupForm.submitted(fields)
        if (fields.get(HONEYPOT) or [""])[0].strip():
            log.info("sign-up with the honeypot field filled: ignored", extra={"client": client})
            return self._cors(request, self._sent())
        outcome = await self.desk.sign_up(form, may_mail=self._may_mail)
        if not isinstance(outcome, Accepted):
            return self._cors(
                request, self._form(request, outcome.form, dict(outcome.errors), status_code=400)
            )
        if outcome.mail is None:
            log.info("sign-up mail not sent: too many for this address today", extra={"client": client})
        elif self._mailer is not None and not self.settings.web.signup_mail_wait:
            self._mailer.wake()  # the stand-in sends at once: no need to wait for its next poll
        return self._cors(request, self._sent())

    def _may_mail(self, email: str) -> bool:
        return self.per_address.hit(email) is None

    def _sent(self) -> Response:
        return HTMLResponse(self._sent_page)

    def _cors(self, request: Request, response: Response) -> Response:
        if self.csrf.is_embedded(request):
            response.headers["Access-Control-Allow-Origin"] = request.headers["origin"].lower()
            response.headers["Vary"] = "Origin"
        return response

    # -- digests on the web ----------------------------------------------------------------------

    async def sent_digest(self, request: Request) -> Response:
        try:
            subscriber_id, period = read_view_token(self.secret, str(request.path_params["token"]))
        except InvalidTokenError as exc:
            log.info("refused a view link", extra={"reason": exc.reason})
            return self.pages.error(
                400, "This link does not work", "Copy the whole link from the email, or open the email again."
            )
        digest = await run_in_threadpool(self.archive.sent_digest, subscriber_id, period)
        if digest is None:
            return self.pages.error(404, "Digest not found", "We have no sent digest for this link.")
        from bot.web.app import mask_email

        return self.pages.render(
            "digest.html.j2",
            title=f"Your digest of {period}",
            address=mask_email(digest.email),
            period=period,
            items=digest.items,
            now=datetime.now(UTC),
        )

    async def archive_latest(self, request: Request) -> Response:
        kind = request.query_params.get("filter", "home")
        if kind not in FILTERS:
            kind = "home"
        day = self.archive.peek_latest()
        if day is None:  # not in the cache: composing reads the database, in a thread
            day = await run_in_threadpool(self.archive.latest)
        return self._archive_page(day, kind, latest=True)

    async def archive_day(self, request: Request) -> Response:
        day = parse_day(str(request.path_params["day"]))
        if day is None or not self.archive.covers(day):
            return self.pages.error(404, "Not in the archive", "The archive has the last days only.")
        kind = request.query_params.get("filter", "home")
        if kind not in FILTERS:
            kind = "home"
        found = self.archive.peek(day)
        if found is None:
            found = await run_in_threadpool(self.archive.day, day)
        return self._archive_page(found, kind, latest=False)

    def _archive_page(self, day: ArchiveDay, kind: str, *, latest: bool) -> Response:
        key = f"{day.day}|{kind}|{latest}|{len(day.items)}|{id(day)}"
        cached = self._pages.get(key)
        if cached is None:
            html = self.pages.env.get_template("archive.html.j2").render(
                title=self.settings.web.archive_title,
                day=day,
                items=day.filtered(FILTERS[kind])[: self.settings.web.archive_items],
                filters=[("home", "Home"), ("news", "News"), ("how-to", "How-To")],
                current=kind,
                latest=latest,
                days=self.archive.dates(),
                now=datetime.now(UTC),
            )
            if len(self._pages) > 500:
                self._pages.clear()
            cached = self._pages[key] = (time.monotonic(), html)
        return HTMLResponse(cached[1], headers={"Cache-Control": ARCHIVE_CACHE, "X-Robots-Tag": "all"})

    async def archive_feed(self, request: Request) -> Response:
        days = await run_in_threadpool(self.archive.recent, ATOM_DAYS)
        base = self.settings.web.base_url.rstrip("/")
        updated = max(
            (item.published for d in days for item in d.items), default=datetime(2000, 1, 1, tzinfo=UTC)
        )
        xml = self.pages.env.get_template("archive.atom.j2").render(
            title=self.settings.web.archive_title,
            base=base,
            days=days,
            updated=updated,
            day_end=lambda d: datetime(d.year, d.month, d.day, tzinfo=UTC) + timedelta(days=1, seconds=-1),
        )
        return Response(
            xml,
            media_type="application/atom+xml; charset=utf-8",
            headers={"Cache-Control": ARCHIVE_CACHE, "X-Robots-Tag": "all"},
        )

    async def script(self, request: Request) -> Response:
        return Response(
            SCRIPT,
            media_type="text/javascript; charset=utf-8",
            headers={"Cache-Control": "public, max-age=3600"},
        )
