"""The web side of the subscriber lifecycle: signed links, one-click unsubscribe, double opt-in and
the preferences page.

The app itself is `bot.web.app.create_app` (Starlette). The link helpers below are what mail
rendering needs, and importing them does not pull in the web framework.
"""

from bot.web.secret import resolve_secret
from bot.web.tokens import (
    CONFIRM_MAX_AGE,
    InvalidTokenError,
    TokenClaims,
    confirm_url,
    make_token,
    preferences_url,
    read_token,
    read_token_claims,
    unsubscribe_url,
)

__all__ = [
    "CONFIRM_MAX_AGE",
    "InvalidTokenError",
    "TokenClaims",
    "confirm_url",
    "make_token",
    "preferences_url",
    "read_token",
    "read_token_claims",
    "resolve_secret",
    "unsubscribe_url",
]
