"""CSRF for the forms that have no signed link to stand for them (the sign-up form).

Two rules, one per way a form reaches us:

- Our own page: the form carries a token that the page put in it, and the browser carries a
  cookie (SameSite=Strict, HttpOnly) that the same page set; the token is an HMAC of the cookie's
  nonce and the time, so only a page we served to this browser can post (double submit, signed).
  A token is good for TOKEN_MAX_AGE.
- An embedded form on a site listed in web.embed_origins: it cannot carry our token (the page is
  the site's), so the browser's Origin header is the guard: browsers always send it on a
  cross-site POST, and scripts cannot forge it. A POST whose Origin is neither ours nor listed is
  refused whatever it carries.

The preferences, confirm and unsubscribe forms post to a signed link: only the holder of the mail
can make one, so the link is their CSRF token (and they are checked for a foreign Origin too).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Collection
from urllib.parse import urlsplit

from starlette.requests import Request

COOKIE = "flarestart_csrf"
FIELD = "csrf"
TOKEN_MAX_AGE = 12 * 3600  # seconds: a page left open over a morning still posts
_DOMAIN = b"flarestart-csrf\x00"


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class CsrfGuard:
    def __init__(self, secret: bytes, *, base_url: str, embed_origins: Collection[str]) -> None:
        self.secret = secret
        self.own = origin_of(base_url)
        self.embed = frozenset(o.lower() for o in embed_origins)
        self.secure = base_url.lower().startswith("https://")

    def nonce_for(self, request: Request) -> tuple[str, bool]:
        """The browser's nonce (from its cookie), or a new one; True when the cookie must be set."""
        nonce = request.cookies.get(COOKIE, "")
        if len(nonce) == 22 and nonce.replace("-", "").replace("_", "").isalnum():
            return nonce, False
        return secrets.token_urlsafe(16), True

    def token(self, nonce: str, now: float) -> str:
        stamp = str(int(now))
        return f"{stamp}.{self._mac(nonce, stamp)}"

    def cookie_header(self, nonce: str) -> str:
        secure = "; Secure" if self.secure else ""
        return f"{COOKIE}={nonce}; Path=/; HttpOnly; SameSite=Strict; Max-Age={TOKEN_MAX_AGE}{secure}"

    def is_embedded(self, request: Request) -> bool:
        """A post from a page of a listed site."""
        origin = request.headers.get("origin", "").lower()
        return origin in self.embed

    def foreign_origin(self, request: Request) -> str | None:
        """The Origin of a cross-site request that is neither ours nor listed; None otherwise."""
        origin = request.headers.get("origin")
        # "null": the browser withholds the origin (our pages' Referrer-Policy: no-referrer makes
        # Chromium send it for their own forms). It says nothing, so the token has to.
        if origin is None or origin == "null":
            return None
        origin = origin.lower()
        if origin in (self.own, self._request_origin(request)) or origin in self.embed:
            return None
        return origin

    def check(self, request: Request, token: str, now: float) -> str | None:
        """Why a post of the sign-up form is refused, or None when it may go on."""
        foreign = self.foreign_origin(request)
        if foreign is not None:
            return f"origin {foreign[:80]} is not allowed"
        if self.is_embedded(request):
            return None
        nonce = request.cookies.get(COOKIE)
        if not nonce:
            return "no CSRF cookie"
        stamp, _, mac = token.partition(".")
        if not stamp.isdigit() or len(stamp) > 12:
            return "no CSRF token"
        if not hmac.compare_digest(mac, self._mac(nonce, stamp)):
            return "the CSRF token does not match"
        if not 0 <= now - int(stamp) <= TOKEN_MAX_AGE:
            return "the CSRF token has expired"
        return None

    def _mac(self, nonce: str, stamp: str) -> str:
        digest = hmac.new(self.secret, _DOMAIN + f"{nonce}|{stamp}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:18]).decode("ascii")

    @staticmethod
    def _request_origin(request: Request) -> str:
        host = request.headers.get("host", "")
        return f"{request.url.scheme}://{host}".lower()
