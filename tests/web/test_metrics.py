"""GET /metrics as an operator's Prometheus meets it: off by default, a bearer token, and figures
that match the store, in the text exposition format (0.0.4) read by a strict parser."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from bot import __version__
from bot.config import Settings, describe, load_settings
from bot.delivery.ledger import DeliveryLedger
from bot.errors import ConfigError
from bot.jobs.queue import JobQueue
from bot.sources.types import ParsedEntry
from bot.store import NewSource, Store
from bot.store.subscribers import SubscriberStore
from bot.web.app import create_app
from bot.web.metrics import escape_label_value, render
from tests.web.conftest import Web, running

TOKEN = "a-metrics-token-for-the-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
ODD_NAME = 'Ada\'s "Weekly" C:\\Feeds\nand more'

# -- a strict reader of the text exposition format ----------------------------------------------

METRIC_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
LABEL_VALUE = r'(?:[^"\\\n]|\\[\\"n])*'
LABEL_PAIR = rf'({LABEL_NAME})="({LABEL_VALUE})"'
SAMPLE = re.compile(
    rf"({METRIC_NAME})"
    rf"(?:\{{({LABEL_NAME}=\"{LABEL_VALUE}\"(?:,{LABEL_NAME}=\"{LABEL_VALUE}\")*)?\}})?"
    r" (\S+)"
)
HELP = re.compile(rf"# HELP ({METRIC_NAME}) ((?:[^\\\n]|\\[\\n])*)")
TYPE = re.compile(rf"# TYPE ({METRIC_NAME}) (counter|gauge|histogram|summary|untyped)")
FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|Inf)|NaN")

Series = tuple[str, frozenset[tuple[str, str]]]


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], value)


def parse_exposition(body: str) -> dict[Series, float]:
    """Every line must be HELP, TYPE or a sample; a family's lines stay together, TYPE first."""
    assert body.endswith("\n"), "the last line ends with a line feed"
    samples: dict[Series, float] = {}
    types: dict[str, str] = {}
    helps: set[str] = set()
    done: set[str] = set()  # families whose lines are behind us
    current: str | None = None
    for number, line in enumerate(body[:-1].split("\n"), 1):
        where = f"line {number}: {line!r}"
        if match := HELP.fullmatch(line):
            name = match[1]
        elif match := TYPE.fullmatch(line):
            name = match[1]
            assert name not in types, f"{where}: a second TYPE"
            types[name] = match[2]
        elif match := SAMPLE.fullmatch(line):
            name = match[1]
            assert name in types, f"{where}: a sample before its TYPE"
            pairs = re.findall(LABEL_PAIR, match[2] or "")
            labels = frozenset((label, _unescape(value)) for label, value in pairs)
            assert len(labels) == len(pairs) == len({label for label, _ in pairs}), f"{where}: label twice"
            assert FLOAT.fullmatch(match[3]), f"{where}: not a number"
            assert (name, labels) not in samples, f"{where}: the same series twice"
            samples[name, labels] = float(match[3])
        else:
            raise AssertionError(f"{where}: not HELP, TYPE or a sample")
        if line.startswith("# HELP"):
            assert name not in helps, f"{where}: a second HELP"
            helps.add(name)
        if name != current:
            assert name not in done, f"{where}: the family's lines are split"
            if current is not None:
                done.add(current)
            current = name
    return samples


def series(name: str, **labels: str) -> Series:
    return name, frozenset(labels.items())


def family(samples: dict[Series, float], name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: value for (found, labels), value in samples.items() if found == name}


def by(samples: dict[Series, float], name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: value for labels, value in family(samples, name).items()}


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def metrics_web(web_settings: Settings) -> Iterator[Web]:
    """The web app with /metrics turned on by TOKEN."""
    web = web_settings.web.model_copy(update={"metrics_token": TOKEN})
    app = create_app(web_settings.model_copy(update={"web": web}))
    with running(app) as url, httpx.Client(base_url=url, follow_redirects=False, timeout=10) as client:
        yield Web(app, client, SubscriberStore(app.state.store.engine))


def entry(key: str, published: datetime) -> ParsedEntry:
    return ParsedEntry(
        key=f"guid:{key}",
        guid=key,
        url=f"https://example.com/{key}",
        title=f"Title {key}",
        excerpt="An excerpt.",
        author=None,
        published=published,
        content_hash=f"hash-{key}",
    )


# -- tests --------------------------------------------------------------------------------------


def test_metrics_are_off_by_default(web: Web) -> None:
    web.add()

    response = web.client.get("/metrics", headers=AUTH)

    assert response.status_code == 404
    assert "flarestart_" not in response.text


def test_without_the_right_token_the_answer_is_401_and_no_figures(metrics_web: Web) -> None:
    metrics_web.add(email="ada@example.com")
    refused = [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not-the-metrics-token"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
    ]

    responses = [metrics_web.client.get("/metrics", headers=headers) for headers in refused]

    for headers, response in zip(refused, responses, strict=True):
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.headers["content-type"].startswith("text/plain")
        assert "flarestart_" not in response.text and "# " not in response.text
        assert "ada@example.com" not in response.text


def test_the_figures_match_the_store(metrics_web: Web) -> None:
    engine = metrics_web.app.state.store.engine
    people = {
        "ada@example.com": "active",
        "grace@example.com": "active",
        "linus@example.com": "paused",
        "margaret@example.com": "pending",
        "dennis@example.com": "bouncing",
    }
    ids = {
        email: metrics_web.add(status, email=email, name=email.split("@")[0].title())
        for email, status in people.items()
    }
    ada, grace, linus, margaret, dennis = ids.values()
    ledger = DeliveryLedger(engine)
    sent = ledger.begin(ada, "2026-03-01", "email", now=NOW).id
    ledger.mark_sent(sent, message_id="<1@flarestart.test>", article_ids=[], now=NOW)
    failed = ledger.begin(grace, "2026-03-01", "email", now=NOW).id
    ledger.mark_failed(failed, error="550 no such user", permanent=True, now=NOW)
    ledger.open(linus, "2026-03-01", "email", article_ids=[], now=NOW)  # stays pending
    ledger.begin(margaret, "2026-03-01", "email", now=NOW)  # stays sending
    skipped = ledger.open(dennis, "2026-03-01", "email", article_ids=[], now=NOW).id
    ledger.mark_skipped(skipped, reason="a quiet day", now=NOW)
    outbox = ledger.begin(ada, "2026-03-02", "outbox", now=NOW).id
    ledger.mark_sent(outbox, message_id="<2@flarestart.test>", article_ids=[], now=NOW)
    queue = JobQueue(engine)
    for n in range(3):
        queue.enqueue("send_digest", {"subscriber": n}, run_at=NOW - timedelta(minutes=n))
    queue.enqueue("plan_digests", run_at=NOW)
    (claimed,) = queue.claim("worker-1", now=NOW, lease=timedelta(minutes=2), tasks=["send_digest"])
    store = Store(engine)
    healthy, flaky, retired, odd = (
        store.add_source(NewSource(name, f"https://feeds.example.com/{n}.xml")).id
        for n, name in enumerate(["Healthy", "Flaky", "Retired", ODD_NAME])
    )
    assert healthy and flaky and retired and odd
    store.update_source(healthy, last_success_at=NOW - timedelta(minutes=5), last_fetch_at=NOW)
    store.update_source(flaky, error_count=3, last_error="HTTP 503", last_success_at=NOW - timedelta(hours=6))
    store.update_source(odd, error_count=1, last_error="not a readable feed")
    store.set_enabled("Retired", False)
    newest = NOW - timedelta(minutes=30)
    store.save_entries(
        healthy,
        [entry("a", NOW - timedelta(hours=2)), entry("b", newest), entry("c", NOW - timedelta(days=1))],
        now=NOW,
    )

    response = metrics_web.client.get("/metrics", headers=AUTH)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == CONTENT_TYPE
    samples = parse_exposition(response.text)
    assert by(samples, "flarestart_subscribers", "status") == {
        "active": 2,
        "paused": 1,
        "pending": 1,
        "bouncing": 1,
        "unsubscribed": 0,
    }
    assert family(samples, "flarestart_deliveries") == {
        frozenset({("channel", channel), ("status", status)}): count
        for channel, counts in {
            "email": {"pending": 1, "sending": 1, "sent": 1, "failed": 1, "skipped": 1},
            "outbox": {"pending": 0, "sending": 0, "sent": 1, "failed": 0, "skipped": 0},
        }.items()
        for status, count in counts.items()
    }
    assert family(samples, "flarestart_jobs") == {
        frozenset({("task", task), ("status", status)}): count
        for task, counts in {
            "send_digest": {"queued": 2, "running": 1, "done": 0, "failed": 0},
            "plan_digests": {"queued": 1, "running": 0, "done": 0, "failed": 0},
        }.items()
        for status, count in counts.items()
    }
    assert claimed.task == "send_digest"
    assert by(samples, "flarestart_sources", "state") == {"enabled": 3, "disabled": 1}
    assert by(samples, "flarestart_source_failing", "source") == {"Healthy": 0, "Flaky": 1, ODD_NAME: 1}
    assert by(samples, "flarestart_source_consecutive_failures", "source") == {
        "Healthy": 0,
        "Flaky": 3,
        ODD_NAME: 1,
    }
    assert by(samples, "flarestart_source_last_success_timestamp_seconds", "source") == {
        "Healthy": (NOW - timedelta(minutes=5)).timestamp(),
        "Flaky": (NOW - timedelta(hours=6)).timestamp(),
    }
    assert samples[series("flarestart_articles")] == 3
    assert samples[series("flarestart_articles_newest_timestamp_seconds")] == newest.timestamp()
    assert samples[series("flarestart_build_info", version=__version__)] == 1
    for email in people:
        assert email not in response.text
    assert "@" not in response.text


def test_a_source_name_is_escaped_as_the_format_says(metrics_web: Web) -> None:
    store = Store(metrics_web.app.state.store.engine)
    source = store.add_source(NewSource(ODD_NAME, "https://feeds.example.com/odd.xml")).id
    assert source is not None
    store.update_source(source, error_count=2)

    body = metrics_web.client.get("/metrics", headers=AUTH).text

    assert 'flarestart_source_failing{source="Ada\'s \\"Weekly\\" C:\\\\Feeds\\nand more"} 1\n' in body
    assert escape_label_value(ODD_NAME) == 'Ada\'s \\"Weekly\\" C:\\\\Feeds\\nand more'
    assert by(parse_exposition(body), "flarestart_source_consecutive_failures", "source") == {ODD_NAME: 2}


def test_an_empty_store_still_reads_as_the_format(metrics_web: Web) -> None:
    response = metrics_web.client.get("/metrics", headers=AUTH)

    samples = parse_exposition(response.text)
    assert by(samples, "flarestart_subscribers", "status") == dict.fromkeys(
        ["active", "paused", "pending", "bouncing", "unsubscribed"], 0
    )
    assert by(samples, "flarestart_sources", "state") == {"enabled": 0, "disabled": 0}
    assert samples[series("flarestart_articles")] == 0
    assert not family(samples, "flarestart_articles_newest_timestamp_seconds")
    assert not family(samples, "flarestart_deliveries")


def test_the_parser_refuses_what_the_format_does_not_allow() -> None:
    good = '# HELP m A help\\\\text.\n# TYPE m gauge\nm{a="x\\"y"} 1.5e3\nm 2\n'
    bad = [
        "# TYPE m gauge\nm 1",  # no final line feed
        "m 1\n",  # a sample before its TYPE
        '# TYPE m gauge\nm{a="x"y"} 1\n',  # an unescaped quote
        '# TYPE m gauge\nm{a="x"} one\n',  # not a number
        "# TYPE m gauge\nm 1_0\n",  # Python reads it, Prometheus does not
        "# TYPE 1m gauge\n1m 1\n",  # a metric name may not start with a digit
        '# TYPE m gauge\nm{a="1",a="2"} 1\n',  # a label twice
        "# TYPE m gauge\n# TYPE n gauge\nm 1\n",  # a family's lines split
        "# TYPE m gauge\n\nm 1\n",  # an empty line
    ]

    assert parse_exposition(good) == {series("m", a='x"y'): 1500.0, series("m"): 2.0}
    for body in bad:
        with pytest.raises(AssertionError):
            parse_exposition(body)


def test_render_writes_special_values_and_skips_empty_families() -> None:
    from bot.app.metrics import gauge

    body = render(
        [
            gauge("empty", "Nothing yet.", []),
            gauge(
                "odd",
                "Line one\nand a \\ backslash.",
                [({"k": "inf"}, float("inf")), ({"k": "nan"}, float("nan"))],
            ),
        ]
    )

    assert body == (
        "# HELP flarestart_odd Line one\\nand a \\\\ backslash.\n"
        "# TYPE flarestart_odd gauge\n"
        'flarestart_odd{k="inf"} +Inf\n'
        'flarestart_odd{k="nan"} NaN\n'
    )
    assert len(parse_exposition(body)) == 2


def test_the_token_is_a_secret_of_the_configuration(tmp_path: Path) -> None:
    env = {"FLARESTART_DATA_DIR": str(tmp_path), "FLARESTART_WEB_METRICS_TOKEN": TOKEN}

    rows = {key: (value, origin) for key, value, origin in describe(load_settings(env))}

    assert rows["web.metrics_token"] == ("********", "environment FLARESTART_WEB_METRICS_TOKEN")
    assert load_settings({"FLARESTART_DATA_DIR": str(tmp_path)}).web.metrics_token is None
    with pytest.raises(ConfigError, match=r"web\.metrics_token"):
        load_settings({**env, "FLARESTART_WEB_METRICS_TOKEN": "short"})
