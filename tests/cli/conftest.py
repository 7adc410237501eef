"""Run the real `flarestart` entry point in-process, in a data folder of its own."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from bot.cli.common import state


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


Runner = Callable[..., Result]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Runner:
    """`cli("sources", "list", "--json")` → Result. No default sources: tests stay on loopback."""
    config = tmp_path / "flarestart.toml"
    config.write_text("sources = []\n", encoding="utf-8")
    monkeypatch.setenv("FLARESTART_CONFIG", str(config))
    monkeypatch.setenv("FLARESTART_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FLARESTART_ALLOW_PRIVATE_URLS", "1")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("DATABASE_URL", raising=False)

    def run(*args: str) -> Result:
        state.settings = None
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["flarestart", *args])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run
