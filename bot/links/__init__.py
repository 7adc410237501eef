"""Signed links of the subscriber lifecycle: the secret key, and the tokens of the unsubscribe,
confirmation and preferences URLs.

Digest rendering and delivery put these links in every message and the web app reads them back,
so they live here, below both; nothing here imports the web framework.
"""

from bot.links.secret import resolve_secret
from bot.links.tokens import (
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
