"""`flarestart topics list` and `flarestart preview`: the digest that would be sent now, explained."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.text import Text

from bot.cli.common import ago, console, err_console, feed_text, open_app, print_json, state
from bot.errors import ConfigError

if TYPE_CHECKING:
    from bot.app import FlareStart
    from bot.app.types import DigestAccount, DigestPlan, PlannedItem, Preview, Taxonomy

topics_app = typer.Typer(help="The topics FlareStart knows.", no_args_is_help=True)


@topics_app.command("list")
def topics_list(
    json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """List the taxonomy: topics and kinds of article, with the tags and phrases that match them.

    Example: flarestart topics list --json | jq '.[].slug'
    """
    from rich.table import Table

    from bot.app import FlareStart

    topics = FlareStart(state.get_settings()).topics()
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
                for t in topics
            ]
        )
        return
    table = Table(title=f"{len(topics)} topics", title_justify="left")
    for column in ("slug", "name", "kind", "feed tags", "phrases"):
        table.add_column(column, overflow="fold")
    for t in topics:
        table.add_row(t.slug, t.name, t.kind, ", ".join(t.aliases[:6]), ", ".join(t.phrases[:6]))
    console.print(table)


def _split(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def preview(
    subscriber: Annotated[
        str | None,
        typer.Argument(help="A subscriber's email, id or slack:CHANNEL_ID (or use --topics)."),
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
    slack_json: Annotated[
        bool,
        typer.Option(
            "--slack-json", help="Print the Slack messages (Block Kit payloads) it is posted as, as JSON."
        ),
    ] = False,
) -> None:
    """Show the digest that would be sent now, each item with its score and why it was picked.

    Example: flarestart preview --topics python,ai --mute crypto --max 5
    (or: flarestart preview ada@example.com --html ada.html;
    flarestart preview slack:C0123ABCD --slack-json | jq '.[0].blocks')
    """
    with open_app() as flarestart:
        if subscriber is not None:
            found = flarestart.preview_subscriber(subscriber, max_items=max_items)
        elif topics:
            found = flarestart.preview_preferences(_split(topics), mute=_split(mute), max_items=max_items)
        else:
            raise ConfigError("preview needs a SUBSCRIBER or --topics (e.g. --topics python,ai)")
        written = _write_html(flarestart, found, html) if html is not None else None
        if slack_json:
            if json:
                raise ConfigError("--slack-json and --json both print JSON: give one of them")
            payloads = flarestart.render_slack_preview(found)
    if slack_json:
        if written is not None:
            err_console.print(written, highlight=False, soft_wrap=True)
        print_json(payloads)
        return
    taxonomy, plan, account, label = found.taxonomy, found.plan, found.account, found.label
    schedule: str | None = None
    next_json: dict[str, Any] | None = None
    if not found.stand_in:
        from bot.app.words import describe_next

        upcoming, row = found.next_delivery, found.reader
        schedule = (
            f"next digest {describe_next(upcoming, row.timezone, found.now)}"
            if upcoming is not None
            else f"{row.status}: no digest goes to them"
        )
        next_json = (
            {"period": upcoming.period, "at": upcoming.scheduled_at, "due_now": upcoming.due_now}
            if upcoming is not None
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


def _write_html(flarestart: FlareStart, preview: Preview, path: Path) -> str:
    """Write the preview's HTML email, exactly as it would be sent, to `path`; say what was written."""
    rendered = flarestart.render_preview(preview)
    try:
        path.write_text(rendered.html, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--html {path}: cannot write: {exc.strerror}") from None
    quiet = " (an empty digest: on a quiet day nothing is sent)" if not rendered.items else ""
    return (
        f"Wrote the HTML digest for {escape(preview.reader.email or preview.label)} to {escape(str(path))}: "
        f'{rendered.items} items, subject "{escape(rendered.subject)}"{quiet}.'
    )


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
