"""The `flarestart` console script's entry point: a module that imports nothing.

The parser processes (bot/sources/parse_pool.py, a forkserver pool) run the parent's main
script again before their first job, as multiprocessing does for any script it did not start
with `-m`. The script is `from bot.script import entry`: were it `from bot.cli import entry`,
every parser process of `fetch` and `run` would import typer, rich and every command first
(40-80 ms of CPU each, on the cores the first feeds are parsed on). `python -m bot` is spared
already (multiprocessing skips a `__main__` module run by name) and comes here too.
"""

from __future__ import annotations


def entry() -> None:
    """`flarestart …`: the command line (bot.cli.entry), imported only when it runs."""
    import gc

    # Importing the command line makes modules that live as long as the process, no garbage:
    # the ~35 collections its allocations set off would only walk them (5-8 ms, every command).
    gc.disable()
    try:
        from bot.cli import entry as run_command
    finally:
        gc.enable()
    run_command()
