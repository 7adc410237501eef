"""`flarestart topics list` and `flarestart preview`: the digest that would be sent now, explained."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.markup import escape
from rich.text import Text

from bot.cli.common import ago, console, err_console, feed_text, open_store, print_json, state
from bot.errors import ConfigError

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.digest.compose import DigestAccount, DigestPlan, PlannedItem
    from bot.ranking.topics import Taxonomy
    from bot.store import Store
    from bot.store.models import Subscriber

topics_app = typer.Typer(help="The topics FlareStart knows.", no_args_is_help=True)
PREVIEW_ADDRESS = "preview@example.com"  # the stand-in reader of a --topics preview written with --html
STAND_IN_ID = 1  # links need an id; a throwaway key (see _write_html) keeps them from working


@topics_app.command("list")
def topics_list(
    json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """List the taxonomy: topics and kinds of article, with the tags and phrases that match them.

    Example: flarestart topics list --json | jq '.[].slug'
    """
    from rich.table import Table

    from bot.ranking.setup import taxonomy_for

    taxonomy = taxonomy_for(state.get_settings())
    if json:
        print_json(
            [
                {
                    "slug": t.slug,
                    "name": t.name,
                    "kind": t.kind,
                    "aliases": list(t.aliases),
                    "phrases": list(t.phrases),
                }
                for t in taxonomy.topics
            ]
        )
        return
    table = Table(title=f"{len(taxonomy.topics)} topics", title_justify="left")
    for column in ("slug", "name", "kind", "feed tags", "phrases"):
        table.add_column(column, overflow="fold")
    for t in taxonomy.topics:
        table.add_row(t.slug, t.name, t.kind, ", ".join(t.aliases[:6]), ", ".join(t.phrases[:6]))
    console.print(table)


def _split(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def preview(
    subscriber: Annotated[
        str | None, typer.Argument(help="A subscriber's email or id (or use --topics).")
    ] = None,
    topics: Annotated[str | None, typer.Option(help="Topics to follow, e.g. python,ai.")] = None,
    mute: Annotated[str | None, typer.Option(help="Topics or keywords to mute, e.g. crypto.")] = None,
    max_items: Annotated[int | None, typer.Option("--max", min=1, max=50, help="Items at most.")] = None,
    json: Annotated[bool, typer.Option("--json", help="Print the items as JSON.")] = False,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html", metavar="FILE", help="Also write the HTML email, exactly as it would be sent."
        ),
    ] = None,
) -> None:
    """Show the digest that would be sent now, each item with its score and why it was picked.

    Example: flarestart preview --topics python,ai --mute crypto --max 5
    (or: flarestart preview ada@example.com --html ada.html)
    """
    from bot.digest.compose import Composer, window_for
    from bot.ranking.setup import taxonomy_for
    from bot.store.models import Subscriber
    from bot.store.types import utcnow

    settings = state.get_settings()
    taxonomy = taxonomy_for(settings)
    now = utcnow()
    with open_store() as store:
        if subscriber is not None:
            from bot.cli.subscribers import describe_next, upcoming_deliveries
            from bot.delivery.ledger import DeliveryLedger
            from bot.store.subscribers import SubscriberStore

            row = SubscriberStore(store.engine).get(subscriber)
            composer = Composer(store, settings, taxonomy, now=now)
            prefs = composer.preferences_of(row)
            delivered = DeliveryLedger(store.engine).sent_article_ids(row.id or 0)
            label = f"{row.name or row.email}"
            upcoming = upcoming_deliveries(store, [row], now).get(row.id or 0)
            schedule: str | None = (
                f"next digest {describe_next(upcoming, row.timezone, now)}"
                if upcoming is not None
                else f"{row.status}: no digest goes to them"
            )
            next_json: dict[str, Any] | None = (
                {"period": upcoming.period, "at": upcoming.scheduled_at, "due_now": upcoming.due_now}
                if upcoming is not None
                else None
            )
        elif topics:
            composer = Composer(store, settings, taxonomy, now=now)
            muted_topics, keywords = _split_mutes(taxonomy, _split(mute))
            prefs = composer.preferences(
                topics={slug: 1.0 for slug in _split(topics)},
                muted_topics=muted_topics,
                muted_keywords=keywords,
                max_items=max_items,
                window=window_for("daily", settings),
            )
            delivered = set()
            label = ", ".join(_split(topics))
            schedule = next_json = None
            row = Subscriber(id=STAND_IN_ID, email=PREVIEW_ADDRESS)  # who --html addresses it to
        else:
            raise ConfigError("preview needs a SUBSCRIBER or --topics (e.g. --topics python,ai)")
        if max_items and subscriber is not None:
            prefs = replace(prefs, max_items=max_items)
        plan = composer.plan(prefs, delivered=delivered)
        account = composer.account(prefs, plan, delivered=delivered)
        written = (
            _write_html(store, settings, taxonomy, row, plan, html, now, stand_in=subscriber is None)
            if html is not None
            else None
        )
    if written is not None:
        (err_console if json else console).print(written, highlight=False, soft_wrap=True)
    if json:
        print_json(
            {"items": [_item_json(taxonomy, item) for item in plan.items], **account.as_dict()}
            | ({"next_delivery": next_json} if subscriber is not None else {})
        )
        return
    _print_plan(taxonomy, plan, account, label, schedule)


def _write_html(
    store: Store,
    settings: Settings,
    taxonomy: Taxonomy,
    reader: Subscriber,
    plan: DigestPlan,
    path: Path,
    now: datetime,
    *,
    stand_in: bool,
) -> str:
    """Render the plan the way DigestService sends it, write the HTML to `path`; say what was written."""
    import secrets

    from bot.channels.outbox import OutboxChannel
    from bot.cli.delivery import current_period
    from bot.delivery.service import DigestService

    if stand_in:  # its unsubscribe link must not work for whoever really is subscriber #1
        settings = settings.model_copy(update={"secret_key": secrets.token_hex(32)})
    # The channel is never used: the service only renders here.
    channel = OutboxChannel(settings.outbox_dir, settings=settings.email)
    service = DigestService(store, settings, channel, clock=lambda: now, taxonomy=taxonomy)
    due = None if stand_in else service.due(reader, now)
    today = now.astimezone(ZoneInfo(reader.timezone)).date()
    period = due.period if due else current_period(reader.frequency, today) or today.isoformat()
    rendered = service.outgoing(reader, period, plan).rendered
    try:
        path.write_text(rendered.html, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--html {path}: cannot write: {exc.strerror}") from None
    quiet = " (an empty digest: on a quiet day nothing is sent)" if not plan.items else ""
    return (
        f"Wrote the HTML digest for {escape(reader.email or '')} to {escape(str(path))}: "
        f'{len(plan.items)} items, subject "{escape(rendered.subject)}"{quiet}.'
    )


def _split_mutes(taxonomy: Taxonomy, words: list[str]) -> tuple[list[str], list[str]]:
    """`--mute` takes both: known topics mute the topic, anything else is a keyword."""
    topics = [w for w in words if w.casefold() in taxonomy]
    return topics, [w for w in words if w not in topics]


def _why(taxonomy: Taxonomy, item: PlannedItem) -> str:
    parts = []
    for match in item.ranked.reason.topics:
        name = taxonomy.get(match.slug).name
        terms = ", ".join(match.terms[:3])
        parts.append(f"{name} ({terms})" if terms else name)
    return "because you follow " + " and ".join(parts) if parts else "fresh and widely covered"


def _item_json(taxonomy: Taxonomy, item: PlannedItem) -> dict[str, Any]:
    article, ranked = item.article, item.ranked
    return {
        "article_id": article.id,
        "url": article.url,
        "title": article.title,
        "source": article.source_name,
        "author": article.author,
        "published": article.published,
        "score": round(ranked.score, 6),
        "topics": [
            {
                "slug": m.slug,
                "name": taxonomy.get(m.slug).name,
                "weight": round(m.weight, 4),
                "terms": list(m.terms),
            }
            for m in ranked.reason.topics
        ],
        "story_id": ranked.story_id,
        "story_size": item.story_size,
        "related_stories": list(item.related_stories),
        "coverage": ranked.reason.coverage,
        "age_hours": round(ranked.reason.age.total_seconds() / 3600, 2),
        "also_covered_by": [{"source": a.source_name, "url": a.url, "title": a.title} for a in item.also],
        "why": _why(taxonomy, item),
    }


def _print_plan(
    taxonomy: Taxonomy, plan: DigestPlan, account: DigestAccount, label: str, schedule: str | None
) -> None:
    if schedule:
        console.print(f"[dim]{escape(label)}: {escape(schedule)}[/]", highlight=False, soft_wrap=True)
    if not plan.items:
        reason = account.reason or plan.empty_reason or "nothing matched"
        console.print(f"[yellow]Empty digest[/] for {escape(label)}: {escape(reason)}", soft_wrap=True)
        return
    console.print(
        f"[bold]Digest for {escape(label)}[/] · {account.shown} of {account.candidates} candidates",
        soft_wrap=True,
    )
    if account.reason:
        console.print(f"[dim]{escape(account.reason)}[/]", highlight=False, soft_wrap=True)
    console.print()
    for number, item in enumerate(plan.items, 1):
        article = item.article
        # Feed text goes in as Text, never as markup, and nothing runs the highlighter over it.
        title = feed_text(article.title, link=article.url)
        console.print(Text.assemble(f"{number:>2}. ", title, style="bold"), highlight=False)
        console.print(
            Text.assemble(
                "    via ",
                feed_text(article.source_name),
                f" · {ago(article.published)} · score {item.ranked.score:.3f}",
            ),
            highlight=False,
        )
        console.print(feed_text(f"    {_why(taxonomy, item)}", style="dim"), highlight=False)
        if item.also:
            also = ", ".join(a.source_name for a in item.also)
            console.print(feed_text(f"    also covered by {also}", style="dim"), highlight=False)
