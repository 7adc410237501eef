"""Destinations as subscriber files spell them: the cases are data (data/destinations.toml)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from bot.subscribers.destinations import check_destination, destination_entry, parse_destination
from bot.types import Destination

CASES: list[dict[str, Any]] = tomllib.loads(
    (Path(__file__).parent / "data" / "destinations.toml").read_text(encoding="utf-8")
)["case"]


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_destination_case(case: dict[str, Any]) -> None:
    destination, problems = parse_destination(case["entry"])
    if "ref" in case:
        assert problems == []
        assert destination is not None and str(destination) == case["ref"]
        # The same destination given as a ref (CLI, chat) and spelled back as a file entry
        assert check_destination(Destination.from_ref(case["ref"])) == destination
        assert parse_destination(destination_entry(destination)) == (destination, [])
    else:
        assert destination is None
        [(key, message)] = problems
        assert (key or "", case["error"] in message) == (case["key"], True), message


def test_every_case_has_an_outcome() -> None:
    assert all(("ref" in case) != ("error" in case) for case in CASES)
    assert sum("ref" in case for case in CASES) >= 5 and sum("error" in case for case in CASES) >= 5
