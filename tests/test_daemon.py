"""`flarestart run` as a real process: fetches on schedule, survives offline sources, stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from bot.testing.httpserver import FixtureServer, static

FEED = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>Daemon feed</title>
<item><title>Tick</title><link>https://d.example/1</link><guid>1</guid></item></channel></rss>"""


def test_run_fetches_then_stops_cleanly_on_sigterm(tmp_path: Path, feed_server: FixtureServer) -> None:
    url = feed_server.add("/feed.xml", static(FEED))
    config = tmp_path / "flarestart.toml"
    config.write_text(
        f'[[sources]]\nname = "Local"\nurl = "{url}"\n'
        '[[sources]]\nname = "Offline"\nurl = "http://127.0.0.1:9/feed"\n',
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "FLARESTART_CONFIG": str(config),
        "FLARESTART_DATA_DIR": str(tmp_path / "data"),
    }
    env.pop("DATABASE_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    database = tmp_path / "data" / "flarestart.db"
    try:
        deadline = time.monotonic() + 30
        stored = 0
        while time.monotonic() < deadline and not stored:
            time.sleep(0.2)
            if database.exists():
                try:
                    with sqlite3.connect(database) as conn:
                        stored = conn.execute("SELECT count(*) FROM articles").fetchone()[0]
                except sqlite3.OperationalError:
                    pass  # schema not created yet
        assert stored == 1, "the daemon never stored the local feed's entry"
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "source=Offline" in err and "fetch failed" in err
    assert "stopped" in err and "Traceback" not in err
