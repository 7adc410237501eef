"""Digests: the data a digest template gets (view) and the renderer that fills the templates."""

from bot.digest.view import ConfirmView, DigestItemView, DigestView, RenderedDigest, humanize_age

__all__ = ["ConfirmView", "DigestItemView", "DigestView", "RenderedDigest", "humanize_age"]
