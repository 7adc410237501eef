"""The `flarestart` console script's entry point: a module that imports nothing.

The parser processes (bot/sources/parse_pool.py, a forkserver pool) run the parent's main
script again before their first job, as multiprocessing does for any script it did not start
with `-m`. The script is `from bot.script import entry`: were it `from bot.cli import entry`,
every parser process of `fetch` and `run` would import typer, rich and every command first
(40-70 ms of CPU each, on the cores the first feeds are parsed on). `python -m bot` is spared
already: multiprocessing skips a `__main__` module run by name.
"""

from __future__ import annotations


def entry() -> None:
    """`flarestart …`: the command line (bot.cli.entry), imported only when it runs."""
    from bot.cli import entry as run_command

    run_command()
