"""Render a digest as Slack Block Kit messages, split into parts where Slack's limits demand.

    renderer = SlackRenderer()                         # or SlackRenderer(template_dir=Path("my/slack"))
    for message in renderer.render(view):              # SlackMessage(text, blocks, part, parts, …)
        await client.chat_postMessage(channel=..., **message.payload())

The words come from `templates/slack/digest.j2` (a user folder may override it, as with the email
templates); the block structure is built here, so a template can change what is said but can never
produce invalid JSON or a block Slack refuses.

Feed text is hostile. Slack's mrkdwn has an escape for `&`, `<` and `>` only; it has none for the
formatting characters (`*bold*`, `_x_`, `~x~`, backticks), and look-alike or zero-width characters
would change the text people copy. So feed text never goes into mrkdwn at all: titles, bylines,
excerpts and "also covered by" names travel in `rich_text` elements (`text` and `link`, the form
Slack itself stores formatted messages in: styles are flags, mentions are separate element types,
nothing in a text element is parsed), and the header and context line in `plain_text` (never parsed,
emoji off). A title like `<!channel> *bold* <https://evil|click>` therefore shows exactly as written
and pings, links and formats nothing. The one mrkdwn string left is the top-level `text` fallback
(notifications): there `&`, `<` and `>` are escaped, so it can hold no link or mention. That is also
why "also covered by" sits in the item's rich_text and not in a context block: a context block can
only link through mrkdwn. Links are http(s) only and percent-encoded (`safe_link`), so no `|`, `<`
or `>` ever reaches a URL.

Limits (Slack's, see bot/testing/fake_slack.py for where they are documented): at most 50 blocks a
message, a header's text at most 150 characters, a section's 3,000, the fallback text 40,000; and
Slack refuses a message whose blocks carry too much text in all (`msg_blocks_too_long`, seen from
about 13,000 characters), so a part carries at most `BLOCKS_TEXT_MAX`. A digest over any of these is
split into parts at item boundaries; the first part opens with the header, later ones with a
"part 2 of 3" line, the last one ends with the preferences/unsubscribe links. Thread mode makes the
header its own message and the items replies to it (`SlackMessage.in_thread`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.digest.chat_template import BRAND, LINE_MAX, TEMPLATE, ChatTemplate, DigestContext
from bot.digest.render import DigestTemplateError
from bot.digest.text import ItemContext, clean_text, item_context, safe_link
from bot.digest.view import DigestView

__all__ = [
    "BLOCKS_MAX",
    "BLOCKS_TEXT_MAX",
    "HEADER_MAX",
    "SECTION_MAX",
    "TEXT_MAX",
    "SlackMessage",
    "SlackRenderer",
    "escape_mrkdwn",
    "slack_url",
]

BLOCKS_MAX = 50
HEADER_MAX = 150
SECTION_MAX = 3_000
TEXT_MAX = 40_000
BLOCKS_TEXT_MAX = 12_000  # under the ~13,000 where Slack answers msg_blocks_too_long
FALLBACK_MAX = 3_000  # a notification shows a line or two; the rest is for clients without blocks
MACROS = (
    "header",
    "continued",
    "intro",
    "quiet",
    "byline",
    "reason",
    "also_label",
    "footer_preferences",
    "footer_unsubscribe",
    "fallback",
)


@dataclass(frozen=True, slots=True)
class SlackMessage:
    """One Slack message of a digest: part `part` of `parts` (1-based)."""

    text: str  # the notification fallback, mrkdwn-escaped
    blocks: tuple[dict[str, Any], ...]
    part: int
    parts: int
    items: tuple[int, ...] = ()  # the item numbers this part carries
    in_thread: bool = False  # thread mode: post as a reply to part 1

    def payload(self) -> dict[str, Any]:
        """The chat.postMessage arguments (no channel, thread or metadata). `mrkdwn: false` keeps
        the notification text free of formatting too (its `&`, `<`, `>` are already escaped)."""
        return {
            "text": self.text,
            "blocks": [dict(block) for block in self.blocks],
            "unfurl_links": False,
            "unfurl_media": False,
            "mrkdwn": False,
        }


def escape_mrkdwn(text: str) -> str:
    """Slack's escape for mrkdwn: `&`, `<`, `>` as entities, so the text holds no link or mention."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_url(url: str | None) -> str | None:
    """An absolute http(s) URL fit for a Slack link, or None. `safe_link` percent-encodes `|`,
    `<` and `>` (they would end a mrkdwn link early); the check says so where it matters."""
    link = safe_link(url)
    if link is None or any(char in link for char in "|<>"):
        return None
    return link


class SlackRenderer:
    """Loads the Slack template once (a broken one fails at start, with file and line) and renders
    digests into `SlackMessage` parts."""

    def __init__(self, *, template_dir: Path | None = None, thread: bool = False) -> None:
        self.words = ChatTemplate("slack", MACROS, template_dir=template_dir)
        self.search_path: tuple[Path, ...] = self.words.search_path
        self.thread = thread

    # public ------------------------------------------------------------------------------

    def render(self, view: DigestView, *, thread: bool | None = None) -> tuple[SlackMessage, ...]:
        """The digest as one or more messages, in posting order. `thread` overrides the default."""
        threaded = self.thread if thread is None else thread
        items = tuple(item_context(number, item, view) for number, item in enumerate(view.items, 1))
        digest = DigestContext.of(view, len(items))
        header = [self._header(digest), self._context(self._line("intro", digest))]
        footer = self._footer(view)
        if view.is_empty:
            blocks = [self._header(digest), self._section(self._call("quiet", digest)), *footer]
            return (SlackMessage(self._fallback(digest, (), 1, 1), tuple(blocks), 1, 1),)
        units = [(item, self._item_blocks(item)) for item in items]
        if threaded:
            groups = _split(units, opening=0, closing=len(footer), closing_size=_text_size(footer))
            parts = len(groups) + 1
            messages = [SlackMessage(self._fallback(digest, (), 1, parts), tuple(header), 1, parts)]
            for index, group in enumerate(groups, 2):
                blocks = _join(group) + (footer if index == parts else [])
                numbers = tuple(item.number for item, _ in group)
                group_items = tuple(item for item, _ in group)
                messages.append(
                    SlackMessage(
                        self._fallback(digest, group_items, index, parts),
                        tuple(blocks),
                        index,
                        parts,
                        numbers,
                        in_thread=True,
                    )
                )
            return tuple(messages)
        groups = _split(
            units,
            opening=len(header),
            opening_size=_text_size(header) + LINE_MAX,  # the longer of the header and "part n of m"
            closing=len(footer),
            closing_size=_text_size(footer),
        )
        parts = len(groups)
        messages = []
        for index, group in enumerate(groups, 1):
            opening = header if index == 1 else [self._context(self._line("continued", digest, index, parts))]
            blocks = opening + _join(group) + (footer if index == parts else [])
            group_items = tuple(item for item, _ in group)
            messages.append(
                SlackMessage(
                    self._fallback(digest, group_items, index, parts),
                    tuple(blocks),
                    index,
                    parts,
                    tuple(item.number for item in group_items),
                )
            )
        return tuple(messages)

    # blocks ------------------------------------------------------------------------------

    def _header(self, digest: DigestContext) -> dict[str, Any]:
        text = clean_text(self._call("header", digest), HEADER_MAX) or BRAND
        return {"type": "header", "text": {"type": "plain_text", "text": text, "emoji": False}}

    def _context(self, text: str) -> dict[str, Any]:
        return {"type": "context", "elements": [{"type": "plain_text", "text": text or " ", "emoji": False}]}

    def _section(self, text: str) -> dict[str, Any]:
        text = clean_text(text, SECTION_MAX) or " "
        return {"type": "section", "text": {"type": "plain_text", "text": text, "emoji": False}}

    def _item_blocks(self, item: ItemContext) -> list[dict[str, Any]]:
        bold = {"bold": True}
        head: list[dict[str, Any]] = []
        url = slack_url(item.url)
        if url:
            head.append({"type": "link", "url": url, "text": item.title, "style": bold})
        else:
            head.append({"type": "text", "text": item.title, "style": bold})
        byline = self._line("byline", item)
        if byline:
            head.append({"type": "text", "text": "\n" + byline, "style": {"italic": True}})
        if item.excerpt:
            head.append({"type": "text", "text": "\n" + item.excerpt})
        also = [(link.name, slack_url(link.url)) for link in item.also]
        if also:
            head.append({"type": "text", "text": "\n" + self._line("also_label", item) + " "})
            for position, (name, link) in enumerate(also):
                if position:
                    head.append({"type": "text", "text": ", "})
                if link:
                    head.append({"type": "link", "url": link, "text": name})
                else:
                    head.append({"type": "text", "text": name})
        blocks: list[dict[str, Any]] = [
            {"type": "rich_text", "elements": [{"type": "rich_text_section", "elements": head}]}
        ]
        reason = self._line("reason", item)
        if reason:
            blocks.append(self._context(reason))
        return blocks

    def _footer(self, view: DigestView) -> list[dict[str, Any]]:
        links = [
            (self._line("footer_preferences"), slack_url(view.preferences_url)),
            (self._line("footer_unsubscribe"), slack_url(view.unsubscribe_url)),
        ]
        elements: list[dict[str, Any]] = []
        for label, url in links:
            if url and label:
                if elements:
                    elements.append({"type": "text", "text": " · "})
                elements.append({"type": "link", "url": url, "text": label})
        if not elements:
            return []
        return [{"type": "rich_text", "elements": [{"type": "rich_text_section", "elements": elements}]}]

    def _fallback(self, digest: DigestContext, items: tuple[ItemContext, ...], part: int, parts: int) -> str:
        text = self._call("fallback", digest, items, part, parts).strip()
        if len(text) > FALLBACK_MAX:
            cut = text[: FALLBACK_MAX - 1]
            text = cut[: cut.rfind("\n")] if "\n" in cut else cut
            text = text.rstrip() + "\n…"
        return escape_mrkdwn(text) or BRAND

    # template calls ----------------------------------------------------------------------

    def _line(self, macro: str, *args: Any) -> str:
        return self.words.line(macro, *args)

    def _call(self, macro: str, *args: Any) -> str:
        return self.words.call(macro, *args)


Unit = tuple[ItemContext, list[dict[str, Any]]]


def _split(
    units: list[Unit], *, opening: int, closing: int, opening_size: int = 0, closing_size: int = 0
) -> list[list[Unit]]:
    """Items grouped into parts, in order, each part under the block count and text budget with
    room for its opening and closing blocks (reserved in every part: the last is not known yet)."""
    groups: list[list[Unit]] = []
    current: list[Unit] = []
    blocks, size = opening + closing, opening_size + closing_size
    for unit in units:
        need = len(unit[1]) + (1 if current else 0)  # a divider between items
        need_size = _text_size(unit[1])
        if current and (blocks + need > BLOCKS_MAX or size + need_size > BLOCKS_TEXT_MAX):
            groups.append(current)
            current, blocks, size = [], opening + closing, opening_size + closing_size
            need -= 1
        if blocks + need > BLOCKS_MAX or size + need_size > BLOCKS_TEXT_MAX:
            raise DigestTemplateError(
                f"item {unit[0].number} alone is over Slack's limits", template=TEMPLATE, line=None
            )
        current.append(unit)
        blocks += need
        size += need_size
    if current:
        groups.append(current)
    return groups


def _join(group: list[Unit]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for position, (_, unit) in enumerate(group):
        if position:
            blocks.append({"type": "divider"})
        blocks.extend(unit)
    return blocks


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "text" and isinstance(inner, str):
                yield inner
            else:
                yield from _strings(inner)
    elif isinstance(value, list | tuple):
        for inner in value:
            yield from _strings(inner)


def _text_size(blocks: list[dict[str, Any]]) -> int:
    """The characters of text the blocks carry, as Slack counts toward msg_blocks_too_long."""
    return sum(len(text) for text in _strings(blocks))
