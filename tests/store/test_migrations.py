"""The migration chain runs on SQLite and PostgreSQL and yields exactly the models' schema."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

from bot.store.engine import make_engine
from bot.store.migrate import current_revision, downgrade, head_revision, shipped_head, upgrade
from bot.store.subscribers import DuplicateSubscriberError, SubscriberStore


def test_upgrade_from_empty_reaches_head_and_matches_models(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        before, after = upgrade(engine)
        assert before is None
        assert after == head_revision()
        with engine.connect() as connection:
            diff = compare_metadata(
                MigrationContext.configure(connection, opts={"compare_type": True}),
                SQLModel.metadata,
            )
        assert diff == [], f"migrations and models disagree: {diff}"
    finally:
        engine.dispose()


def test_downgrade_to_base_and_up_again(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        downgrade(engine, "base")
        assert current_revision(engine) is None
        assert "sources" not in inspect(engine).get_table_names()
        upgrade(engine)
        assert {"sources", "articles", "meta"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_twice_is_a_no_op(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        assert upgrade(engine) == (head_revision(), head_revision())
    finally:
        engine.dispose()


def test_sqlite_runs_in_wal_with_foreign_keys(tmp_path: object) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/wal.db")
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000
    finally:
        engine.dispose()


def test_the_head_read_without_alembic_is_alembics_head() -> None:
    assert shipped_head() == head_revision() is not None


def test_a_database_behind_the_head_is_still_upgraded(database_url: str) -> None:
    """The quick check at start only skips a database already at the head."""
    engine = make_engine(database_url)
    try:
        upgrade(engine, "0003")
        assert upgrade(engine) == ("0003", head_revision())
        assert upgrade(engine) == (head_revision(), head_revision())
    finally:
        engine.dispose()


def test_0006_makes_every_existing_subscriber_an_email_destination(database_url: str) -> None:
    """Upgrading a database with subscribers: their address is their email, their kind email,
    and a Slack channel can then join beside them (but not twice)."""
    engine = make_engine(database_url)
    try:
        upgrade(engine, "0005")
        with engine.begin() as conn:
            for email in ("ada@example.com", "grace@example.com"):
                conn.execute(
                    text(
                        "INSERT INTO subscribers (email, name, timezone, delivery_time, frequency, topics,"
                        " muted_topics, muted_keywords, muted_sources, source_weights, max_items, status,"
                        " origin, consecutive_bounces, created_at, updated_at) VALUES (:email, '',"
                        " 'UTC', '07:00', 'daily', '{}', '[]', '[]', '[]', '{}', 10, 'active', 'cli', 0,"
                        " :now, :now)"
                    ),
                    {"email": email, "now": "2026-12-01 07:00:00"},
                )
        assert upgrade(engine) == ("0005", head_revision())
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT email, destination_kind, address, status_reason FROM subscribers ORDER BY id")
            ).all()
        assert [tuple(row) for row in rows] == [
            ("ada@example.com", "email", "ada@example.com", None),
            ("grace@example.com", "email", "grace@example.com", None),
        ]
        store = SubscriberStore(engine)
        store.add({"destination_kind": "slack", "address": "C0PLATFORM", "name": "Platform"})
        assert store.get("slack:C0PLATFORM").email is None
        with pytest.raises(DuplicateSubscriberError):
            store.add({"destination_kind": "slack", "address": "C0PLATFORM"})
        downgrade(engine, "0005")
        assert "delivery_parts" not in inspect(engine).get_table_names()
        assert "address" not in {c["name"] for c in inspect(engine).get_columns("subscribers")}
    finally:
        engine.dispose()
