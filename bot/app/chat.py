"""The chat commands, once, for every chat: `/flarestart time 08:30 Europe/Berlin` in Slack and
`/schedule` in Discord both end here. Adapters only translate: they verify the request, hand the
verb and its words to `ChatCommands.run`, and turn the `ChatReply` into their own markup
(escaping every line: replies echo what users and feeds wrote).

One chat channel is one subscriber: its destination is (`prefix`, channel id), the ref the
application layer knows as "slack:C0123". The commands change that subscriber through the same
validators as subscriber files, the CLI and the preferences page (`parse_preferences`, the
taxonomy's did-you-mean), and say when its next digest goes with the one schedule function
(`FlareStart.upcoming_deliveries` → `next_delivery`).

No chat library is imported here; nothing here knows Slack or Discord.
"""

from __future__ import annotations

import difflib
import logging
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.errors import ConfigError, FlareStartError, NotFoundError

if TYPE_CHECKING:
    from bot.app.core import FlareStart
    from bot.app.types import Preview, Subscriber
    from bot.ranking.topics import UnknownTopicError

log = logging.getLogger(__name__)

MAX_TEXT = 500  # characters of a whole command: a verb and a few words or a URL
MAX_ARGS = 20
MAX_WORD = 100  # a topic, a keyword, a time zone; a URL may be longer (MAX_URL)
MAX_URL = 2_000
MAX_LISTED = 40  # topics or sources a reply lists before "… and N more"
PREVIEW_ITEMS = 10

# The verbs and what each takes, in the order `help` lists them. `time` and `preview` may be
# renamed by an adapter (Discord: /schedule, /digest); the meaning stays.
VERBS: dict[str, tuple[str, str]] = {
    "subscribe": ("[topics…]", "send this channel a digest (topics optional: a default set applies)"),
    "unsubscribe": ("", "stop this channel's digest"),
    "topics": ("", "the topics you can follow, and the ones this channel follows"),
    "follow": ("<topic…>", "add topics to this channel's digest"),
    "unfollow": ("<topic…>", "remove topics from this channel's digest"),
    "mute": ("<word|topic|source>", "hide articles about a topic, from a source, or with a word"),
    "unmute": ("<word|topic|source>", "show them again"),
    "time": ("HH:MM [Zone]", "when the digest arrives, e.g. 08:30 Europe/Berlin"),
    "frequency": ("daily|weekdays|weekly:mon", "how often the digest arrives"),
    "preview": ("", "the digest as it would go now (only you see it)"),
    "sources": ("[add <url>]", "the sources articles come from; add a feed or a site"),
    "pause": ("", "stop sending until resume"),
    "resume": ("", "send again"),
    "status": ("", "what this channel gets, and when the next digest goes"),
    "help": ("", "this list"),
}
# Verbs that change the channel's digest: their answer is public (the channel sees who changed
# it), and a chat may ask for a permission before running them (Discord: Manage Server).
CHANGES = frozenset(
    {
        "subscribe",
        "unsubscribe",
        "follow",
        "unfollow",
        "mute",
        "unmute",
        "time",
        "frequency",
        "pause",
        "resume",
    }
)
SLOW = frozenset({"preview", "sources add"})  # finished by `finish`, after the first answer


@dataclass(frozen=True, slots=True)
class ChatItem:
    """One article of a preview, as plain text: the adapter links and escapes it."""

    title: str
    url: str | None
    source: str
    why: str  # "python, rust · covered by 3 sources"


@dataclass(frozen=True, slots=True)
class ChatReply:
    """What to answer: plain-text lines (user and feed text inside, unescaped), preview items.

    `public`: the command changed the channel's digest, so the channel sees the answer.
    `later`: slow work remains (`ChatCommands.finish` does it); the lines say it is coming.
    """

    lines: tuple[str, ...]
    items: tuple[ChatItem, ...] = ()
    public: bool = False
    later: bool = False
    verb: str = ""
    args: tuple[str, ...] = ()
    ok: bool = True

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass(frozen=True, slots=True)
class _Call:
    verb: str
    args: tuple[str, ...]
    ref: str  # the channel's subscriber as the application layer finds it
    channel: str
    user: str
    channel_name: str


class ChatUsageError(FlareStartError):
    """The command is not one the core can run: its message is the one line to answer."""


@dataclass
class ChatCommands:
    """The verbs of every chat over one `FlareStart`.

    `prefix`: the destination kind of this chat's channels ("slack", "discord"). `origin`: what
    subscribers added here record as their origin ("slack", "discord"). `names`: the adapter's
    words for verbs it renames ({"time": "schedule", "preview": "digest"}), used in help and hints
    and accepted as input. `command`: how users type the command ("/flarestart"), for hints.
    """

    app: FlareStart
    prefix: str
    origin: str = "chat"
    names: Mapping[str, str] = field(default_factory=dict)
    command: str = "/flarestart"
    _by_name: dict[str, str] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._by_name = {self.names.get(verb, verb): verb for verb in VERBS}
        self._by_name.update({verb: verb for verb in VERBS})

    # -- entry points ------------------------------------------------------------------------

    def run_text(self, text: str, *, channel: str, user: str, channel_name: str = "") -> ChatReply:
        """A command as typed after the slash command: "time 08:30 Europe/Berlin"."""
        try:
            words = split_words(text)
        except ChatUsageError as exc:
            return self._refusal(str(exc))
        if not words:
            return self.run("help", (), channel=channel, user=user, channel_name=channel_name)
        return self.run(words[0], words[1:], channel=channel, user=user, channel_name=channel_name)

    def run(
        self, verb: str, args: Sequence[str], *, channel: str, user: str, channel_name: str = ""
    ) -> ChatReply:
        """Run one verb for the subscriber of `channel`; every problem is one line, never raised."""
        try:
            call = self._call(verb, args, channel=channel, user=user, channel_name=channel_name)
        except ChatUsageError as exc:
            return self._refusal(str(exc))
        if self._slow(call):
            return ChatReply(
                (self._working_on(call),), later=True, verb=call.verb, args=call.args, public=False
            )
        return self._answer(call, self._handlers()[call.verb])

    def finish(
        self, verb: str, args: Sequence[str], *, channel: str, user: str, channel_name: str = ""
    ) -> ChatReply:
        """The slow part of a reply that came back with `later` (preview, sources add)."""
        try:
            call = self._call(verb, args, channel=channel, user=user, channel_name=channel_name)
        except ChatUsageError as exc:
            return self._refusal(str(exc))
        handler = self._preview if call.verb == "preview" else self._add_source
        return self._answer(call, handler)

    def changes_digest(self, verb: str) -> bool:
        """Whether `verb` (or the adapter's name for it) changes the channel's digest."""
        return self._by_name.get(verb.lower(), verb) in CHANGES

    def privileged(self, verb: str, args: Sequence[str] = ()) -> bool:
        """Whether a chat that guards changes (Discord: Manage Server) should ask for its
        permission first: the verbs that change the channel's digest, and adding a source."""
        name = self._by_name.get(verb.lower(), verb)
        return name in CHANGES or (name == "sources" and bool(args) and args[0].lower() == "add")

    def display(self, verb: str) -> str:
        """The adapter's name for a verb."""
        return self.names.get(verb, verb)

    # -- plumbing ----------------------------------------------------------------------------

    def _call(self, verb: str, args: Sequence[str], *, channel: str, user: str, channel_name: str) -> _Call:
        words = tuple(str(arg) for arg in args)
        if len(words) > MAX_ARGS:
            raise ChatUsageError(f"too many words ({len(words)}); at most {MAX_ARGS}")
        for word in (verb, *words):
            limit = MAX_URL if word.lower().startswith(("http://", "https://")) else MAX_WORD
            if len(word) > limit:
                raise ChatUsageError(f"'{shorten(word, 30)}' is too long (at most {limit} characters)")
        if not channel or len(channel) > MAX_WORD or not channel.isprintable():
            raise ChatUsageError("this command needs a channel to act on")
        name = verb.strip().lower()
        known = self._by_name.get(name)
        if known is None:
            return self._unknown_verb(verb.strip())
        return _Call(known, words, self._ref(channel), channel, user, channel_name)

    def _ref(self, channel: str) -> str:
        from bot.types import Destination

        return str(Destination(self.prefix, channel))  # type: ignore[arg-type]

    def _unknown_verb(self, name: str) -> _Call:
        close = difflib.get_close_matches(name.lower(), list(self._by_name), n=1, cutoff=0.6)
        hint = f"did you mean `{self.command} {self.display(self._by_name[close[0]])}`?" if close else ""
        hint = hint or f"`{self.command} help` lists the commands"
        raise ChatUsageError(f"there is no command '{shorten(name, 30)}'; {hint}")

    def _slow(self, call: _Call) -> bool:
        if call.verb == "preview":
            return True
        return (
            call.verb == "sources"
            and bool(call.args)
            and call.args[0].lower() == "add"
            and len(call.args) == 2
        )

    def _working_on(self, call: _Call) -> str:
        if call.verb == "preview":
            return "Composing the digest this channel would get now…"
        return f"Looking for a feed at {call.args[1]}…"

    def _answer(self, call: _Call, handler: Callable[[_Call], ChatReply]) -> ChatReply:
        try:
            reply = handler(call)
        except ChatUsageError as exc:
            return self._refusal(str(exc), call)
        except NotFoundError:
            return self._refusal(
                f"this channel has no digest yet; `{self.command} subscribe` starts one", call
            )
        except FlareStartError as exc:
            return self._refusal(one_line(str(exc)), call)
        log.info(
            "chat command",
            extra={"chat": self.prefix, "channel": call.channel, "user": call.user, "verb": call.verb},
        )
        public = reply.public and call.verb in CHANGES
        return ChatReply(reply.lines, reply.items, public, reply.later, call.verb, call.args)

    def _refusal(self, message: str, call: _Call | None = None) -> ChatReply:
        if call is not None:
            log.info(
                "chat command refused",
                extra={"chat": self.prefix, "channel": call.channel, "verb": call.verb, "reason": message},
            )
        return ChatReply((message,), verb=call.verb if call else "", ok=False)

    def _handlers(self) -> dict[str, Callable[[_Call], ChatReply]]:
        return {
            "subscribe": self._subscribe,
            "unsubscribe": self._unsubscribe,
            "topics": self._topics,
            "follow": self._follow,
            "unfollow": self._unfollow,
            "mute": self._mute,
            "unmute": self._unmute,
            "time": self._time,
            "frequency": self._frequency,
            "sources": self._sources,
            "pause": self._pause,
            "resume": self._resume,
            "status": self._status,
            "help": self._help,
        }

    def _subscriber(self, call: _Call) -> Subscriber:
        return self.app.get_subscriber(call.ref)

    def _save(self, row: Subscriber, **changes: Any) -> Subscriber:
        """Validate the subscriber's preferences with `changes` applied (as files and the web do)
        and store the columns that changed. A channel declared in a subscribers file keeps the
        file's preferences (the next sync would undo an edit made here), as on the web page."""
        from bot.app.preferences import managed_file
        from bot.subscribers.files import parse_preferences

        path = managed_file(row)
        if path is not None:
            raise ChatUsageError(
                f"this channel's topics and schedule are kept in the subscribers file {path}: change "
                "them there (the next sync would undo a change made here); pause, resume and "
                "unsubscribe work here"
            )

        data: dict[str, Any] = {
            "timezone": row.timezone,
            "delivery_time": row.delivery_time,
            "frequency": row.frequency,
            "topics": dict(row.topics),
            "mute": {
                "topics": list(row.muted_topics),
                "keywords": list(row.muted_keywords),
                "sources": list(row.muted_sources),
            },
            "source_weights": dict(row.source_weights),
            "max_items": row.max_items,
        }
        for key, value in changes.items():
            if key.startswith("mute_"):
                data["mute"][key.removeprefix("mute_")] = value
            else:
                data[key] = value
        preferences, problems = parse_preferences(data, validate_topics=self._validate_topics)
        if problems or preferences is None:
            raise ChatUsageError("; ".join(dict.fromkeys(message for _, message in problems)))
        columns = preferences.column_values()
        changed = {key: value for key, value in columns.items() if getattr(row, key) != value}
        if not changed:
            return row
        assert row.id is not None
        return self.app.update_preferences(row.id, changed)

    def _validate_topics(self, slugs: Iterable[str]) -> None:
        from bot.ranking.topics import UnknownTopicError

        try:
            self.app.taxonomy.resolve(slugs)
        except UnknownTopicError as exc:
            raise ConfigError(self._topic_hint(exc)) from None

    def _topic_hint(self, exc: UnknownTopicError) -> str:
        parts = []
        for name in exc.unknown:
            close = exc.suggestions.get(name, ())
            hint = f"did you mean {' or '.join(close)}?" if close else f"`{self.command} topics` lists them"
            parts.append(f"there is no topic '{shorten(name, 40)}'; {hint}")
        return "; ".join(parts)

    def _slugs(self, words: Sequence[str]) -> list[str]:
        """Topic slugs for what users typed ("Python", "python,rust"): names and aliases resolve."""
        from bot.ranking.topics import UnknownTopicError

        names = [part.strip() for word in words for part in word.split(",") if part.strip()]
        try:
            return [topic.slug for topic in self.app.taxonomy.resolve(names)]
        except UnknownTopicError as exc:
            raise ChatUsageError(self._topic_hint(exc)) from None

    def _usage(self, verb: str) -> ChatUsageError:
        shape, _ = VERBS[verb]
        return ChatUsageError(f"usage: `{self.command} {self.display(verb)} {shape}`".rstrip())

    # -- the verbs ---------------------------------------------------------------------------

    def _subscribe(self, call: _Call) -> ChatReply:
        from bot.types import Destination

        slugs = self._slugs(call.args)
        try:
            row = self._subscriber(call)
        except NotFoundError:
            view = self.app.subscribe(
                Destination(self.prefix, call.channel),  # type: ignore[arg-type]
                name=call.channel_name,
                topics={slug: 1.0 for slug in slugs},
                origin=self.origin,
            )
            log.info(
                "chat subscribed", extra={"chat": self.prefix, "channel": call.channel, "user": call.user}
            )
            lines = ["This channel now gets a FlareStart digest.", *self._describe(view.subscriber)]
            return ChatReply(tuple(lines), public=True)
        again = row.status == "unsubscribed"
        if again:  # the channel itself asks again: the unsubscribe was its own
            assert row.id is not None
            row = self.app.change_status(row.id, "active", expect="unsubscribed")
        if slugs:
            row = self._save(
                row, topics={**row.topics, **{slug: row.topics.get(slug, 1.0) for slug in slugs}}
            )
        if again:
            lines = ["This channel gets a FlareStart digest again.", *self._describe(row)]
            return ChatReply(tuple(lines), public=True)
        lines = ["This channel already gets a FlareStart digest.", *self._describe(row)]
        return ChatReply(tuple(lines), public=bool(slugs))

    def _unsubscribe(self, call: _Call) -> ChatReply:
        row = self._subscriber(call)
        assert row.id is not None
        change = self.app.unsubscribe(row.id)
        if not change.changed:
            return ChatReply(("This channel is already unsubscribed.",))
        return ChatReply(
            (f"This channel gets no more digests. `{self.command} subscribe` starts them again.",),
            public=True,
        )

    def _topics(self, call: _Call) -> ChatReply:
        topics = [t for t in self.app.topics() if t.kind != "kind"]
        try:
            followed = set(self._subscriber(call).topics)
        except NotFoundError:
            followed = set()
        names = [f"{t.slug}{' (followed)' if t.slug in followed else ''}" for t in topics]
        lines = [f"Topics you can follow ({len(names)}): {listing(names)}"]
        lines.append(f"`{self.command} follow <topic>` adds one to this channel's digest.")
        return ChatReply(tuple(lines))

    def _follow(self, call: _Call) -> ChatReply:
        if not call.args:
            raise self._usage("follow")
        slugs = self._slugs(call.args)
        row = self._subscriber(call)
        new = [slug for slug in slugs if slug not in row.topics]
        if not new:
            return ChatReply((f"This channel already follows {', '.join(slugs)}.",))
        row = self._save(row, topics={**row.topics, **{slug: 1.0 for slug in new}})
        return ChatReply((f"Following {', '.join(new)}.", self._topics_line(row)), public=True)

    def _unfollow(self, call: _Call) -> ChatReply:
        if not call.args:
            raise self._usage("unfollow")
        slugs = self._slugs(call.args)
        row = self._subscriber(call)
        gone = [slug for slug in slugs if slug in row.topics]
        if not gone:
            return ChatReply((f"This channel does not follow {', '.join(slugs)}.",))
        row = self._save(row, topics={k: v for k, v in row.topics.items() if k not in gone})
        return ChatReply((f"No longer following {', '.join(gone)}.", self._topics_line(row)), public=True)

    def _mute(self, call: _Call) -> ChatReply:
        if not call.args:
            raise self._usage("mute")
        row = self._subscriber(call)
        kind, value = self._muted_thing(" ".join(call.args))
        current = list(getattr(row, f"muted_{kind}"))
        if value in current:
            return ChatReply((f"{describe_mute(kind, value)} is already muted.",))
        self._save(row, **{f"mute_{kind}": [*current, value]})
        return ChatReply((f"Muted {describe_mute(kind, value)}.",), public=True)

    def _unmute(self, call: _Call) -> ChatReply:
        if not call.args:
            raise self._usage("unmute")
        row = self._subscriber(call)
        text = " ".join(call.args)
        for kind in ("topics", "sources", "keywords"):
            current = list(getattr(row, f"muted_{kind}"))
            match = [value for value in current if value.casefold() == text.casefold()]
            if match:
                self._save(row, **{f"mute_{kind}": [v for v in current if v not in match]})
                return ChatReply((f"Unmuted {describe_mute(kind, match[0])}.",), public=True)
        muted = [*row.muted_topics, *row.muted_sources, *row.muted_keywords]
        close = difflib.get_close_matches(text.casefold(), [m.casefold() for m in muted], n=1, cutoff=0.6)
        hint = f"; did you mean '{next(m for m in muted if m.casefold() == close[0])}'?" if close else ""
        return ChatReply((f"'{shorten(text, 40)}' is not muted here{hint}",), ok=False)

    def _muted_thing(self, text: str) -> tuple[str, str]:
        """("topics", slug), ("sources", name) or ("keywords", word): a known topic or source
        first, as people mean "mute ai" or "mute The Verge"."""
        from bot.ranking.topics import UnknownTopicError
        from bot.sources.defaults import source_names

        try:
            return "topics", self.app.taxonomy.get(text).slug
        except UnknownTopicError:
            pass
        by_case = {name.casefold(): name for name in source_names(self.app.store, self.app.settings)}
        if text.casefold() in by_case:
            return "sources", by_case[text.casefold()]
        return "keywords", text

    def _time(self, call: _Call) -> ChatReply:
        if not 1 <= len(call.args) <= 2:
            raise self._usage("time")
        row = self._subscriber(call)
        changes: dict[str, Any] = {"delivery_time": call.args[0]}
        if len(call.args) == 2:
            changes["timezone"] = call.args[1]
        row = self._save(row, **changes)
        return ChatReply(
            (f"Digests now arrive at {row.delivery_time} ({row.timezone}).", self._next_line(row)),
            public=True,
        )

    def _frequency(self, call: _Call) -> ChatReply:
        if len(call.args) != 1:
            raise self._usage("frequency")
        row = self._save(self._subscriber(call), frequency=call.args[0])
        return ChatReply(
            (f"Digests now arrive {how_often(row.frequency)}.", self._next_line(row)), public=True
        )

    def _sources(self, call: _Call) -> ChatReply:
        if call.args:
            if call.args[0].lower() == "add" and len(call.args) != 2:
                raise ChatUsageError(f"usage: `{self.command} sources add <url>`")
            raise ChatUsageError(f"usage: `{self.command} sources` or `{self.command} sources add <url>`")
        statuses = [s for s in self.app.list_sources() if s.source.enabled]
        names = [s.source.name for s in statuses]
        if not names:
            return ChatReply((f"There are no sources yet; `{self.command} sources add <url>` adds one.",))
        return ChatReply((f"Sources ({len(names)}): {listing(names)}",))

    def _add_source(self, call: _Call) -> ChatReply:
        url = call.args[1]
        added = self.app.add_source(url, trusted=False)
        log.info(
            "chat source added",
            extra={"chat": self.prefix, "channel": call.channel, "user": call.user, "source": added.feed_url},
        )
        found = "" if added.feed_url == added.asked_url else f" (the feed of {added.asked_url})"
        return ChatReply(
            (f"Added the source {added.source.name}: {added.feed_url}{found}, {added.entries} entries now.",)
        )

    def _pause(self, call: _Call) -> ChatReply:
        change = self.app.pause(call.ref)
        if not change.changed:
            return ChatReply(("This channel's digest is already paused.",))
        return ChatReply((f"Paused: no digests until `{self.command} resume`.",), public=True)

    def _resume(self, call: _Call) -> ChatReply:
        change = self.app.resume(call.ref)
        if not change.changed:
            return ChatReply(("This channel's digest is already on.",))
        return ChatReply(("Resumed.", self._next_line(change.subscriber)), public=True)

    def _status(self, call: _Call) -> ChatReply:
        try:
            row = self._subscriber(call)
        except NotFoundError:
            return ChatReply((f"This channel gets no digest. `{self.command} subscribe` starts one.",))
        return ChatReply(tuple(self._describe(row)))

    def _help(self, call: _Call) -> ChatReply:
        lines = [f"`{self.command} <command>`, where the command is one of:"]
        for verb, (shape, what) in VERBS.items():
            lines.append(f"`{self.display(verb)}{' ' + shape if shape else ''}`: {what}")
        return ChatReply(tuple(lines))

    def _preview(self, call: _Call) -> ChatReply:
        try:
            preview = self.app.preview_subscriber(call.ref, max_items=PREVIEW_ITEMS)
        except NotFoundError:
            preview = self.app.preview_preferences(self._default_topics(), max_items=PREVIEW_ITEMS)
            head = "This channel has no digest yet; with the default topics it would get:"
            return ChatReply((head,), items=preview_items(preview))
        items = preview_items(preview)
        if not items:
            reason = preview.account.reason or "there are no articles on its topics yet"
            return ChatReply((f"The digest would be empty now: {reason}",))
        return ChatReply((f"The digest this channel would get now ({len(items)} items):",), items=items)

    # -- words -------------------------------------------------------------------------------

    def _default_topics(self) -> list[str]:
        from bot.app.types import DEFAULT_CHAT_TOPICS

        return [slug for slug in DEFAULT_CHAT_TOPICS if slug in self.app.taxonomy]

    def _topics_line(self, row: Subscriber) -> str:
        from bot.app.types import SubscriberView

        if SubscriberView(row, None).default_topics:
            return (
                f"Topics: the default set ({', '.join(row.topics)}), as none were chosen; "
                f"`{self.command} {self.display('follow')} <topic>` and "
                f"`{self.command} {self.display('unfollow')} <topic>` change it."
            )
        if row.topics:
            return f"Topics: {listing(list(row.topics))}."
        return "Topics: none, so the digest has the best of every topic."

    def _next_line(self, row: Subscriber) -> str:
        from bot.app.words import describe_next

        upcoming = self.app.upcoming_deliveries([row]).get(row.id or 0)
        if upcoming is None:
            return f"No digest is scheduled: this channel's digest is {row.status}."
        return f"Next digest: {describe_next(upcoming, row.timezone, self.app.now())}."

    def _describe(self, row: Subscriber) -> list[str]:
        lines = [self._topics_line(row)]
        muted = [*row.muted_topics, *row.muted_sources, *row.muted_keywords]
        if muted:
            lines.append(f"Muted: {listing(muted)}.")
        lines.append(
            f"When: {how_often(row.frequency)} at {row.delivery_time} ({row.timezone}), "
            f"up to {row.max_items} stories."
        )
        if row.status != "active":
            reason = row.status_reason
            lines.append(f"Status: {row.status}{f' ({reason})' if reason else ''}.")
        lines.append(self._next_line(row))
        return lines


# -- helpers the adapters share -------------------------------------------------------------------


def split_words(text: str) -> list[str]:
    """The words of a command; quotes group ("mute 'The Verge'"). ChatUsageError when too long
    or unbalanced."""
    if len(text) > MAX_TEXT:
        raise ChatUsageError(f"that command is too long ({len(text)} characters; at most {MAX_TEXT})")
    cleaned = "".join(ch if ch.isprintable() else " " for ch in text)
    try:
        return shlex.split(cleaned.replace("“", '"').replace("”", '"').replace("’", "'"))
    except ValueError:
        raise ChatUsageError("a quote is not closed; put names with spaces in matching quotes") from None


def preview_items(preview: Preview) -> tuple[ChatItem, ...]:
    items = []
    for planned in preview.plan.items:
        article = planned.article
        topics = [match.slug for match in planned.ranked.reason.topics]
        why = ", ".join(topics) or "top story"
        if planned.also:
            why += f" · also covered by {', '.join(dict.fromkeys(a.source_name for a in planned.also))}"
        items.append(ChatItem(article.title, article.url, article.source_name, why))
    return tuple(items)


def describe_mute(kind: str, value: str) -> str:
    return {"topics": f"the topic {value}", "sources": f"the source {value}"}.get(kind, f"the word '{value}'")


def how_often(frequency: str) -> str:
    kind, _, day = frequency.partition(":")
    if kind == "weekly":
        return f"weekly on {day or 'mon'}"
    return {"daily": "daily", "weekdays": "on weekdays"}.get(kind, kind)


def listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED])
    return shown + (f" … and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else "")


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def one_line(text: str) -> str:
    return " ".join(text.split())[:400]
