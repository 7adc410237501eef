"""Render a digest as Discord messages with one embed per item, split where Discord's limits demand.

    renderer = DiscordRenderer()                        # or DiscordRenderer(template_dir=Path("my/discord"))
    for message in renderer.render(view):               # DiscordMessage(content, embeds, part, parts, …)
        payload = message.payload()                     # content, embeds, allowed_mentions: none

The words come from `templates/discord/digest.j2` (a user folder may override it, as with the email
and Slack templates, through `bot.digest.chat_template`); the message structure is built here, so a
template can change what is said but never produce JSON Discord refuses.

Feed text is hostile. Discord renders markdown in message content, embed titles and descriptions:
there every character markdown could act on (`*`, `_`, `~`, backticks, `|`, `<`, `>`, `[`, `]`,
`(`, `)`, `#`, `-`, `@`, `:`, `\\`) is backslash-escaped (`escape_markdown`), so a title like
`@everyone <@&123> [x](javascript:alert(1))` shows as written and mentions, links and formats
nothing (escaping `:` also keeps a bare `https://…` in an excerpt from becoming a link). Author
names and footers are plain text in Discord: they are cleaned, not escaped. Links are our own
fields (the embed's `url`, the content's preference links), http(s) only through `safe_link`. And
every message carries `allowed_mentions: {"parse": []}`, so even a template that wrote a mention
would ping no one.

Limits (Discord's; bot/testing/fake_discord.py checks them): content 2,000 characters (less
`MARKER_ROOM`, which the poster keeps for its part marker), 10 embeds a message, an embed's title
256, description 4,096, footer 2,048, author name 256, and 6,000 characters across a message's
embeds. Text is shortened to fit before it is escaped, at a word, and a link is never cut: links
live in fields of their own or are added whole. A digest over the embed limits is split into parts
at item boundaries; the first opens with the date and the intro, later ones with "part 2 of 3", the
last one ends with the preferences/unsubscribe links.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.digest.chat_template import BRAND, LINE_MAX, TEMPLATE, ChatTemplate, DigestContext
from bot.digest.render import DigestTemplateError
from bot.digest.text import ItemContext, item_context, safe_link, shorten
from bot.digest.view import DigestView

__all__ = [
    "AUTHOR_MAX",
    "CONTENT_MAX",
    "DESCRIPTION_MAX",
    "EMBEDS_MAX",
    "EMBED_TOTAL_MAX",
    "FOOTER_MAX",
    "MARKER_ROOM",
    "TITLE_MAX",
    "DiscordMessage",
    "DiscordRenderer",
    "discord_url",
    "embed_size",
    "escape_markdown",
]

CONTENT_MAX = 2_000
EMBEDS_MAX = 10
EMBED_TOTAL_MAX = 6_000
TITLE_MAX = 256
DESCRIPTION_MAX = 4_096
FOOTER_MAX = 2_048
AUTHOR_MAX = 256
MARKER_ROOM = 64  # content the poster may add to a part (its marker line)
COLOR = 0xF26B1D  # FlareStart orange, the embeds' side bar
MACROS = (
    "header",
    "continued",
    "intro",
    "quiet",
    "author",
    "title",
    "description",
    "footer",
    "footer_preferences",
    "footer_unsubscribe",
)
_MARKDOWN = re.compile(r"([\\*_~`|<>\[\]()#\-@:!])")
_LIST_START = re.compile(r"^(\s*\d+)\.")
NO_MENTIONS: dict[str, Any] = {"parse": []}


@dataclass(frozen=True, slots=True)
class DiscordMessage:
    """One Discord message of a digest: part `part` of `parts` (1-based)."""

    content: str
    embeds: tuple[dict[str, Any], ...]
    part: int
    parts: int
    items: tuple[int, ...] = ()  # the item numbers this part carries

    def payload(self, *, marker: str = "") -> dict[str, Any]:
        """The message body for a channel or webhook post (the poster adds its nonce). A `marker`
        line (at most MARKER_ROOM characters, Discord's small `-#` subtext) ends the content."""
        if len(marker) > MARKER_ROOM - 4:
            raise ValueError("a part marker is at most MARKER_ROOM - 4 characters")
        content = self.content + (f"\n-# {marker}" if marker else "")
        return {
            "content": content,
            "embeds": [_copy(embed) for embed in self.embeds],
            "allowed_mentions": dict(NO_MENTIONS),
        }


def escape_markdown(text: str) -> str:
    """`text` shown literally by Discord's markdown: every character it could act on escaped."""
    text = _MARKDOWN.sub(r"\\\1", text)
    return _LIST_START.sub(r"\1\\.", text)  # "1. x" at the start would be a list


def escaped_within(text: str, limit: int) -> str:
    """`text` escaped, shortened first (at a word, with "…") until the escaped form fits `limit`."""
    escaped = escape_markdown(text)
    while len(escaped) > limit and text:
        text = shorten(text, max(1, len(text) - (len(escaped) - limit) - 1))
        escaped = escape_markdown(text)
    return escaped


def discord_url(url: str | None) -> str | None:
    """An absolute http(s) URL fit for a markdown link `[label](<url>)`, or None. `safe_link`
    percent-encodes `<`, `>` and spaces; the parentheses are encoded here, since `)` ends the link."""
    link = safe_link(url)
    if link is None:
        return None
    return link.replace("(", "%28").replace(")", "%29")


def embed_size(embed: dict[str, Any]) -> int:
    """The characters Discord counts toward the 6,000 of a message."""
    size = len(embed.get("title") or "") + len(embed.get("description") or "")
    size += len((embed.get("footer") or {}).get("text") or "")
    size += len((embed.get("author") or {}).get("name") or "")
    for field in embed.get("fields") or []:
        size += len(field.get("name") or "") + len(field.get("value") or "")
    return size


class DiscordRenderer:
    """Loads the Discord template once (a broken one fails at start, with file and line) and renders
    digests into `DiscordMessage` parts."""

    def __init__(self, *, template_dir: Path | None = None) -> None:
        self.words = ChatTemplate("discord", MACROS, template_dir=template_dir)
        self.search_path = self.words.search_path

    def render(self, view: DigestView) -> tuple[DiscordMessage, ...]:
        """The digest as one or more messages, in posting order."""
        items = tuple(item_context(number, item, view) for number, item in enumerate(view.items, 1))
        digest = DigestContext.of(view, len(items))
        links = self._links(view)
        header = "**" + escaped_within(self.words.line("header", digest), TITLE_MAX) + "**"
        if view.is_empty:
            quiet = escaped_within(self.words.line("quiet", digest, limit=1_000), 1_000)
            return (DiscordMessage(_content([header, quiet], links), (), 1, 1),)
        embeds = [(item, self._embed(item)) for item in items]
        groups = _split(embeds)
        parts = len(groups)
        messages = []
        for index, group in enumerate(groups, 1):
            if index == 1:
                intro = escaped_within(self.words.line("intro", digest), LINE_MAX * 2)
                lines = [header, intro]
            else:
                lines = [
                    "**"
                    + escaped_within(self.words.line("continued", digest, index, parts), TITLE_MAX)
                    + "**"
                ]
            messages.append(
                DiscordMessage(
                    _content(lines, links if index == parts else ""),
                    tuple(embed for _, embed in group),
                    index,
                    parts,
                    tuple(item.number for item, _ in group),
                )
            )
        return tuple(messages)

    def _embed(self, item: ItemContext) -> dict[str, Any]:
        embed: dict[str, Any] = {
            "type": "rich",
            "title": escaped_within(self.words.line("title", item, limit=TITLE_MAX), TITLE_MAX)
            or escape_markdown("(untitled)"),
            "color": COLOR,
        }
        url = safe_link(item.url)
        if url:
            embed["url"] = url
        description = escaped_within(
            self.words.line("description", item, limit=DESCRIPTION_MAX), DESCRIPTION_MAX
        )
        if description:
            embed["description"] = description
        author = self.words.line("author", item, limit=AUTHOR_MAX)
        if author:
            embed["author"] = {"name": author}
        footer = self.words.line("footer", item, limit=FOOTER_MAX)
        if footer:
            embed["footer"] = {"text": footer}
        published = _iso(item.published_iso)
        if published:
            embed["timestamp"] = published
        image = safe_link(item.image_url)
        if image:
            embed["thumbnail"] = {"url": image}
        over = embed_size(embed) - EMBED_TOTAL_MAX
        if over > 0 and description:  # only a template's long words get here: the excerpt gives way
            embed["description"] = escaped_within(
                self.words.line("description", item, limit=DESCRIPTION_MAX), max(1, len(description) - over)
            )
        return embed

    def _links(self, view: DigestView) -> str:
        links = []
        for macro, url in (
            ("footer_preferences", view.preferences_url),
            ("footer_unsubscribe", view.unsubscribe_url),
        ):
            label = escaped_within(self.words.line(macro), 80)
            link = discord_url(url)
            if label and link:
                links.append(f"[{label}](<{link}>)")  # <…>: no preview card for our own links
        return " · ".join(links)


def _content(lines: list[str], links: str) -> str:
    """The message content: the text lines shortened as needed, the links line whole or not at all."""
    budget = CONTENT_MAX - MARKER_ROOM
    if links and len(links) > budget // 2:
        links = ""  # only a template's absurd labels get here; a link is never cut
    room = budget - (len(links) + 1 if links else 0)
    kept: list[str] = []
    for line in lines:
        if not line:
            continue
        if len(line) + 1 > room:
            break
        kept.append(line)
        room -= len(line) + 1
    return "\n".join(kept + ([links] if links else [])) or BRAND


def _split(
    embeds: list[tuple[ItemContext, dict[str, Any]]],
) -> list[list[tuple[ItemContext, dict[str, Any]]]]:
    """Items grouped into parts, in order: at most 10 embeds and 6,000 embed characters each."""
    groups: list[list[tuple[ItemContext, dict[str, Any]]]] = []
    current: list[tuple[ItemContext, dict[str, Any]]] = []
    size = 0
    for item, embed in embeds:
        need = embed_size(embed)
        if need > EMBED_TOTAL_MAX:
            raise DigestTemplateError(
                f"item {item.number} alone is over Discord's limits", template=TEMPLATE, line=None
            )
        if current and (len(current) >= EMBEDS_MAX or size + need > EMBED_TOTAL_MAX):
            groups.append(current)
            current, size = [], 0
        current.append((item, embed))
        size += need
    if current:
        groups.append(current)
    return groups


def _iso(value: str) -> str | None:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _copy(inner) for key, inner in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(inner) for inner in value]
    return value
