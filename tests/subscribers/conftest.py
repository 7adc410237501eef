"""The `cli` runner of tests/cli, on both databases."""

from __future__ import annotations

import pytest

from tests.cli.conftest import Runner, cli  # noqa: F401  (re-exported fixture)


@pytest.fixture
def run(cli: Runner, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Runner:  # noqa: F811
    """`run("subscribers", "list", "--json")` against the database of this test's parameter."""
    monkeypatch.setenv("FLARESTART_DATABASE_URL", database_url)
    return cli
