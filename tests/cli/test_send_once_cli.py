"""Two real `flarestart send ADDRESS --now` processes at once against aiosmtpd, on SQLite and
PostgreSQL: one message goes out; the other process says "already being sent", exits 1 and sends
nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bot.config import load_settings
from tests.channels.smtp_server import SmtpServer
from tests.delivery.helpers import add_readers, stocked_store

TIMEOUT = 120.0  # generous: two interpreters import and compose on a loaded 2-core machine


def test_two_send_now_processes_mail_one_message(database_url: str, tmp_path: Path) -> None:
    with SmtpServer() as server:
        # The first send sits in DATA long enough for the second process to start and claim.
        server.data_delay = 6.0
        config = tmp_path / "flarestart.toml"
        config.write_text("sources = []\n", encoding="utf-8")
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("FLARESTART_")},
            "FLARESTART_CONFIG": str(config),
            "FLARESTART_DATA_DIR": str(tmp_path / "data"),
            "DATABASE_URL": database_url,
            "SMTP_URL": server.url(),
            "FLARESTART_EMAIL_ALLOW_PLAIN": "1",
            # A key given, not made: either process may otherwise be the one that creates the key
            # file and logs it, a second stderr line that is not the busy send's.
            "SECRET_KEY": "a-test-secret-key-for-signed-links",
            "COLUMNS": "200",
        }
        store = stocked_store(load_settings(env))
        add_readers(store, 1)
        store.close()

        command = [sys.executable, "-m", "bot", "send", "reader0@example.com", "--now"]
        processes = [
            subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        results = [(p.wait(timeout=TIMEOUT), *p.communicate()) for p in processes]

    codes = sorted(code for code, _, _ in results)
    busy = [err for code, _, err in results if code == 1]
    sent = [out for code, out, _ in results if code == 0]
    assert codes == [0, 1], results
    assert sent[0].startswith("Sent reader0@example.com")
    assert "already being sent" in busy[0] and len(busy[0].strip().splitlines()) == 1, busy
    assert len(server.messages) == 1
