"""`flarestart subscribers suppressions …`: the addresses no digest goes to, for the operator."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from bot.cli.common import ago, console, err_console, open_app, print_json

app = typer.Typer(
    help="Addresses no digest goes to (unsubscribed, bounced), kept whatever the subscriber rows say.",
    no_args_is_help=True,
)


@app.command("list")
def list_(json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False) -> None:
    """List suppressed addresses: why, since when, and what recorded it.

    Example: flarestart subscribers suppressions list --json | jq -r '.[].address'
    """
    from rich.table import Table

    with open_app(seed=False) as flarestart:
        found = flarestart.list_suppressions()
        now = flarestart.now()
    if json:
        print_json([_as_dict(s) for s in found])
        return
    if not found:
        console.print("No suppressed addresses.")
        return
    table = Table(title=f"{len(found)} suppressed", title_justify="left")
    for column in ("address", "reason", "since", "source", "note"):
        table.add_column(column, overflow="fold")
    for s in found:
        table.add_row(
            escape(s.address), s.reason, ago(s.created_at, now), escape(s.source), escape(s.note[:120])
        )
    console.print(table)


@app.command("remove")
def remove(
    address: Annotated[str, typer.Argument(help="The suppressed email address.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Remove without asking.")] = False,
) -> None:
    """Lift a suppression, so digests may go to the address again. Asks first unless --yes.

    A reader who unsubscribed lifts their own from an unsubscribe link ("subscribe again"); remove
    one yourself only when it was a mistake (a bounce that was the server's fault, say).

    Example: flarestart subscribers suppressions remove ada@example.com --yes
    """
    with open_app(seed=False) as flarestart:
        found = flarestart.suppression(address)
        if found is None:
            flarestart.remove_suppression(address)  # raises the one-line "not suppressed"
            return
        if not yes and not typer.confirm(
            f"Remove the suppression of {found.address} ({found.reason})? Digests may go to it again",
            default=False,
            err=True,
        ):
            err_console.print("Nothing removed.", highlight=False)
            raise typer.Exit(1)
        removed = flarestart.remove_suppression(address)
    console.print(
        f"Removed the suppression of {removed.suppression.address} ({removed.suppression.reason}).",
        highlight=False,
        soft_wrap=True,
    )
    if removed.subscriber_status in ("unsubscribed", "bouncing"):
        err_console.print(
            f"[yellow]note:[/] the subscriber {removed.suppression.address} is still "
            f"{removed.subscriber_status}: "
            + (
                "resume them with `flarestart subscribers resume`."
                if removed.subscriber_status == "bouncing"
                else "they subscribe again from an unsubscribe link."
            ),
            highlight=False,
            soft_wrap=True,
        )


def _as_dict(s: Any) -> dict[str, Any]:
    return {
        "address": s.address,
        "reason": s.reason,
        "created_at": s.created_at,
        "source": s.source,
        "note": s.note,
        "subscriber_id": s.subscriber_id,
    }
