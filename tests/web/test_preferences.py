"""The preferences page as a reader meets it: open the footer's link, change the form, save."""

from __future__ import annotations

import email.message
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import lxml.html
import pytest

from bot.app import preferences
from bot.app.preferences import topic_groups
from bot.channels.outbox import OutboxChannel
from bot.config import Settings, UserTopic
from bot.delivery.service import DigestService
from bot.errors import ConfigError
from bot.links.tokens import make_token, read_token
from bot.ranking.setup import taxonomy_for
from bot.ranking.topics import load_taxonomy
from bot.store import NewSource, Store
from bot.store.models import Subscriber
from bot.store.subscribers import StatusChangedError, SubscriberStore
from bot.subscribers.files import make_spec
from tests.delivery.helpers import NOW, article
from tests.delivery.test_service import add_reader, outbox_messages
from tests.web.conftest import SECRET, Web, assert_page

GRACE: dict[str, Any] = {
    "email": "grace@example.com",
    "name": "Grace",
    "timezone": "America/New_York",
    "delivery_time": "06:30",
    "frequency": "weekdays",
    "topics": {"python": 2.0, "ai": 1.0},
    "muted_topics": ["crypto"],
    "muted_keywords": ["layoffs", "funding round"],
    "muted_sources": ["TechCrunch"],
    "source_weights": {"Hacker News": 1.5},
    "max_items": 15,
}
TEAM_FILE = "file:subscribers/team.toml"
FORM = {"content-type": "application/x-www-form-urlencoded"}
# Fields that take any text (or any checkbox value), so they come back exactly as sent.
TYPED_FIELDS = ("topics", "muted_topics", "muted_keywords", "delivery_time", "timezone", "max_items")


@pytest.fixture
def web_settings(web_settings: Settings) -> Settings:
    """The shared settings, with one topic of the team's own."""
    return web_settings.model_copy(update={"topics": [UserTopic(name="Home Lab", phrases=["homelab"])]})


def url(web: Web, subscriber: int) -> str:
    return f"/p/{web.token('preferences', subscriber)}"


def form_of(page: str) -> dict[str, list[str]]:
    """What a browser would send for the page's preferences form, as it stands."""
    found = lxml.html.fromstring(page).xpath("//form[.//button[@value='save']]")
    assert len(found) == 1, "no preferences form on the page"
    fields: dict[str, list[str]] = {}
    for name, value in found[0].form_values():
        fields.setdefault(name, []).append(value)
    return fields


def save(web: Web, subscriber: int, **changes: str | list[str]) -> httpx.Response:
    """Open the page, change some fields, press Save."""
    fields: dict[str, Any] = form_of(web.client.get(url(web, subscriber)).text)
    fields.update(changes)
    return web.client.post(url(web, subscriber), data={**fields, "action": "save"})


def press(web: Web, subscriber: int, action: str) -> httpx.Response:
    return web.client.post(url(web, subscriber), data={"action": action})


def follow(web: Web, response: httpx.Response, done: str) -> httpx.Response:
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.endswith(f"?done={done}")
    return web.client.get(location)


# -- showing and saving -------------------------------------------------------------------------


def test_the_page_shows_the_current_preferences(web: Web) -> None:
    grace = web.add(**GRACE)

    response = web.client.get(url(web, grace))

    assert_page(response, 200, "Your digest preferences", "Hi Grace", "g***@example.com")
    assert "grace@example.com" not in response.text
    fields = form_of(response.text)
    assert set(fields["topics"]) == {"python", "ai"}
    assert fields["muted_topics"] == ["crypto"]
    assert fields["muted_keywords"] == ["layoffs, funding round"]
    assert (fields["delivery_time"], fields["timezone"]) == (["06:30"], ["America/New_York"])
    assert (fields["frequency"], fields["max_items"]) == (["weekdays"], ["15"])
    assert "Your team&#39;s topics" in response.text and 'value="home-lab"' in response.text
    assert '<button type="submit" name="action" value="pause">' in response.text


def test_saved_changes_are_stored_and_the_page_says_saved(web: Web) -> None:
    grace = web.add(**GRACE)
    before = web.get(grace)

    response = save(
        web,
        grace,
        topics=["python", "rust", "home-lab"],
        muted_topics=["crypto", "opinion"],
        muted_keywords="layoffs ,  rumour,,",
        delivery_time="18:15",
        timezone="Asia/Kolkata",
        frequency="weekly",
        weekly_day="sun",
        max_items="25",
    )

    page = follow(web, response, "saved")
    assert_page(page, 200, "Saved.")
    after = web.get(grace)
    assert after.topics == {"python": 2.0, "rust": 1.0, "home-lab": 1.0}  # python keeps its weight
    assert (after.muted_topics, after.muted_keywords) == (["crypto", "opinion"], ["layoffs", "rumour"])
    assert (after.delivery_time, after.timezone, after.frequency) == ("18:15", "Asia/Kolkata", "weekly:sun")
    assert after.max_items == 25 and after.updated_at > before.updated_at
    untouched = ("email", "name", "status", "origin", "muted_sources", "source_weights", "created_at")
    assert {k: getattr(after, k) for k in untouched} == {k: getattr(before, k) for k in untouched}
    assert form_of(page.text)["frequency"] == ["weekly"] and form_of(page.text)["weekly_day"] == ["sun"]


def test_following_nothing_is_allowed(web: Web) -> None:
    grace = web.add(**GRACE)

    follow(web, save(web, grace, topics=[], muted_topics=[], muted_keywords=""), "saved")

    after = web.get(grace)
    assert (after.topics, after.muted_topics, after.muted_keywords) == ({}, [], [])


def test_saving_logs_the_subscriber_and_what_changed(web: Web, caplog: pytest.LogCaptureFixture) -> None:
    grace = web.add(**GRACE)
    caplog.set_level(logging.INFO, logger="bot.web")

    save(web, grace, delivery_time="07:45", timezone="Europe/Berlin")
    save(web, grace)  # the same values again

    messages = [
        (r.getMessage(), r.__dict__.get("changed")) for r in caplog.records if r.name == "bot.web.app"
    ]
    assert ("preferences saved", "timezone,delivery_time") in messages
    assert ("preferences saved: nothing changed", None) in messages
    assert {r.subscriber for r in caplog.records if r.getMessage().startswith("preferences")} == {grace}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"timezone": "Mars/Olympus"}, "Time zone", "is not an IANA time zone name"),
        ({"timezone": "../../etc/passwd"}, "Time zone", "is not an IANA time zone name"),
        ({"timezone": "localtime"}, "Time zone", "is not an IANA time zone name"),
        ({"timezone": "Factory"}, "Time zone", "is not an IANA time zone name"),
        ({"timezone": "right/UTC"}, "Time zone", "is not an IANA time zone name"),
        ({"timezone": "posix/Europe/Berlin"}, "Time zone", "is not an IANA time zone name"),
        (
            {"topics": ["python", "pythn"]},
            "Topics you follow",
            "there is no topic &#39;pythn&#39;; did you mean python",
        ),
        (
            {"topics": ["zzqx"]},
            "Topics you follow",
            "there is no topic &#39;zzqx&#39;; choose from the topics listed on this page",
        ),
        ({"muted_topics": ["Not A Slug!"]}, "Muted topics", "is not a topic slug"),
        ({"delivery_time": "25:61"}, "Delivery time", "delivery time must be HH:MM"),
        ({"delivery_time": ""}, "Delivery time", "delivery time must be HH:MM"),
        ({"muted_keywords": ", ".join(f"word{n}" for n in range(21))}, "Muted keywords", "at most 20"),
        ({"muted_keywords": "x" * 41}, "Muted keywords", "at most 40 characters"),
        ({"max_items": "51"}, "Stories per digest", "from 1 to 50"),
        ({"max_items": "ten"}, "Stories per digest", "from 1 to 50"),
        ({"frequency": "monthly"}, "How often", "frequency must be daily, weekdays or weekly"),
        ({"frequency": "weekly", "weekly_day": ""}, "How often", "say on which day"),
    ],
    ids=[
        "time zone",
        "time zone path",
        "the machine's own zone",
        "tzdata's placeholder",
        "leap-second copy",
        "posix copy",
        "unknown topic",
        "unknown topic, nothing close",
        "bad muted topic",
        "bad time",
        "no time",
        "too many keywords",
        "long keyword",
        "too many items",
        "items not a number",
        "frequency",
        "weekly without a day",
    ],
)
def test_invalid_input_is_refused_with_400_naming_the_field(
    web: Web, changes: dict[str, Any], field: str, message: str
) -> None:
    grace = web.add(**GRACE)
    before = web.get(grace).model_dump()

    response = save(web, grace, **changes)

    assert_page(response, 400, "Nothing was saved", f">{field}</a>: ", message)
    assert "`flarestart" not in response.text  # a reader runs no commands
    assert web.get(grace).model_dump() == before
    sent = form_of(response.text)  # the form comes back as the reader left it
    for name, value in changes.items():
        if name in TYPED_FIELDS and value:
            assert sent[name] == (value if isinstance(value, list) else [value])


def test_every_problem_is_reported_at_once(web: Web) -> None:
    grace = web.add(**GRACE)

    response = save(web, grace, timezone="Nowhere", delivery_time="7pm", max_items="0")

    assert_page(response, 400)
    assert {"error-timezone", "error-delivery_time", "error-max_items"} <= set(
        re.findall(r'id="(error-[a-z_]+)"', response.text)
    )


# -- file subscribers ---------------------------------------------------------------------------


def test_a_file_subscribers_page_is_read_only_and_names_the_file(web: Web) -> None:
    grace = web.add(**GRACE, origin=TEAM_FILE)

    response = web.client.get(url(web, grace))

    assert_page(
        response,
        200,
        "managed in your team's subscribers file",
        "subscribers/team.toml",
        "Python, Artificial Intelligence",
        "layoffs, funding round",
        "06:30 (America/New_York)",
        'value="pause"',
        "Unsubscribe from FlareStart",
    )
    assert 'name="topics"' not in response.text and 'value="save"' not in response.text


def test_editing_a_file_subscriber_is_refused_with_409(web: Web) -> None:
    grace = web.add(**GRACE, origin=TEAM_FILE)
    before = web.get(grace).model_dump()
    fields = form_of(web.client.get(url(web, web.add(email="other@example.com"))).text)

    response = web.client.post(
        url(web, grace), data={**fields, "timezone": "Europe/Berlin", "action": "save"}
    )

    assert_page(response, 409, "Nothing was changed", "subscribers/team.toml", "overwritten by the next sync")
    assert web.get(grace).model_dump() == before


def test_an_absolute_file_origin_shows_only_the_file_name(web: Web) -> None:
    grace = web.add(**GRACE, origin="file:/srv/flarestart/subscribers/ops.toml")

    response = web.client.get(url(web, grace))

    assert_page(response, 200, "ops.toml")
    assert "/srv/" not in response.text


def test_a_file_subscriber_can_pause_and_resume(web: Web) -> None:
    grace = web.add(**GRACE, origin=TEAM_FILE)
    preferences_before = {
        k: v for k, v in web.get(grace).model_dump().items() if k not in ("status", "updated_at")
    }

    paused = follow(web, press(web, grace, "pause"), "paused")
    status_paused = web.get(grace).status
    again = follow(web, press(web, grace, "pause"), "paused")  # a second click changes nothing
    resumed = follow(web, press(web, grace, "resume"), "resumed")

    assert status_paused == "paused"
    assert_page(paused, 200, "Paused.", 'value="resume"')
    assert_page(again, 200, "Your digests are paused")
    assert_page(resumed, 200, "Resumed.", 'value="pause"')
    after = web.get(grace).model_dump()
    assert after["status"] == "active"
    assert {k: v for k, v in after.items() if k not in ("status", "updated_at")} == preferences_before


def test_pause_and_resume_are_logged(web: Web, caplog: pytest.LogCaptureFixture) -> None:
    grace = web.add(**GRACE)
    caplog.set_level(logging.INFO, logger="bot.web")

    press(web, grace, "pause")
    press(web, grace, "resume")

    records = [r for r in caplog.records if r.getMessage() in ("paused", "resumed")]
    assert [(r.getMessage(), r.subscriber, r.previous, r.via) for r in records] == [  # type: ignore[attr-defined]
        ("paused", grace, "active", "preferences"),
        ("resumed", grace, "paused", "preferences"),
    ]


# -- states that must not be resumed from here --------------------------------------------------


@pytest.mark.parametrize(
    ("status", "says"),
    [
        ("unsubscribed", "This address is unsubscribed"),
        ("bouncing", "mail to this address bounced"),
        ("pending", "waiting for you to confirm"),
    ],
)
def test_unsubscribed_bouncing_and_pending_pages_offer_nothing_that_sends(
    web: Web, status: str, says: str
) -> None:
    grace = web.add(status, **GRACE)
    before = web.get(grace).model_dump()

    page = web.client.get(url(web, grace))
    posts = [press(web, grace, action) for action in ("resume", "pause", "save")]

    assert_page(page, 200, says)
    assert "<form" not in page.text and "<button" not in page.text
    for response in posts:
        assert_page(response, 409, "Nothing was changed", says)
    assert web.get(grace).model_dump() == before


def test_an_unsubscribed_page_offers_no_unsubscribe_either(web: Web) -> None:
    grace = web.add("unsubscribed", **GRACE)

    response = web.client.get(url(web, grace))

    assert_page(response, 200)
    assert "/u/" not in response.text and "layoffs" not in response.text


def test_a_pause_never_overwrites_an_unsubscribe_that_came_first(web: Web) -> None:
    """The page reads the subscriber, then writes: an unsubscribe in between must win."""
    grace = web.add(**GRACE)
    subscribers = web.subscribers
    seen_active = subscribers.get(grace)
    subscribers.set_status(grace, "unsubscribed", now=datetime.now(UTC))

    class Stale(SubscriberStore):
        def get(self, ref: str | int) -> Subscriber:
            return seen_active

    with pytest.raises(StatusChangedError):
        Stale(subscribers.engine).set_status(grace, "paused", now=datetime.now(UTC), expect=("active",))
    with pytest.raises(StatusChangedError):
        subscribers.set_status(grace, "paused", now=datetime.now(UTC), expect=("active",))
    assert web.get(grace).status == "unsubscribed"


# -- refused requests ---------------------------------------------------------------------------


def test_forged_and_other_purpose_tokens_are_refused(web: Web) -> None:
    grace = web.add(**GRACE)
    before = web.get(grace).model_dump()
    forged = make_token(b"not-our-secret-at-all-0123456789", purpose="preferences", subscriber_id=grace)
    preferences_token = web.token("preferences", grace)

    responses = [
        web.client.get(f"/p/{forged}"),
        web.client.post(f"/p/{forged}", data={"action": "pause"}),
        web.client.get(f"/p/{web.token('unsubscribe', grace)}"),
        web.client.post(f"/p/{web.token('unsubscribe', grace)}", data={"action": "pause"}),
        web.client.get(f"/p/{web.token('confirm', grace)}"),
        # and a preferences link neither unsubscribes nor confirms
        web.client.post(f"/u/{preferences_token}", data={"List-Unsubscribe": "One-Click"}),
        web.client.get(f"/confirm/{preferences_token}"),
        web.client.post(f"/confirm/{preferences_token}"),
    ]

    for response in responses:
        assert_page(response, 400, "This link does not work", "Nothing was changed")
    assert web.get(grace).model_dump() == before


def test_an_unknown_subscriber_gets_a_404_page(web: Web) -> None:
    token = web.token("preferences", 987_654)

    assert_page(web.client.get(f"/p/{token}"), 404, "Subscription not found")
    assert_page(web.client.post(f"/p/{token}", data={"action": "pause"}), 404, "Subscription not found")


def test_an_oversized_form_is_refused_with_413(web: Web) -> None:
    grace = web.add(**GRACE)
    before = web.get(grace).model_dump()
    too_big = preferences.MAX_BODY_BYTES + 1

    def chunks() -> Iterator[bytes]:
        yield b"action=save&muted_keywords="
        for _ in range(too_big // 1000 + 1):
            yield b"x" * 1000

    declared = web.client.post(url(web, grace), content=b"a" * too_big, headers=FORM)
    streamed = web.client.post(url(web, grace), content=chunks(), headers=FORM)

    assert_page(declared, 413, "Request too large")
    assert_page(streamed, 413, "Request too large")
    assert web.get(grace).model_dump() == before


def test_a_full_form_fits_under_the_cap(web: Web, web_settings: Settings) -> None:
    grace = web.add(**GRACE)
    every = list(taxonomy_for(web_settings).slugs)
    widest = ", ".join("😀" * 40 for _ in range(20))

    response = save(web, grace, topics=every, muted_topics=every, muted_keywords=widest)

    # Following and muting everything is allowed (muting wins); the body was read, not refused.
    follow(web, response, "saved")
    assert len(web.get(grace).muted_keywords) == 1  # twenty identical keywords are one


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (
            b'--XyZ\r\nContent-Disposition: form-data; name="action"\r\n\r\npause\r\n--XyZ--\r\n',
            "multipart/form-data; boundary=XyZ",
        ),
        (b'{"action": "pause"}', "application/json"),
        (b"action=pause", "text/plain"),
        (b"action=pause", None),
    ],
    ids=["multipart", "json", "text", "none"],
)
def test_only_url_encoded_forms_are_accepted(web: Web, content: bytes, content_type: str | None) -> None:
    grace = web.add(**GRACE)
    headers = {"content-type": content_type} if content_type else {}

    response = web.client.post(url(web, grace), content=content, headers=headers)

    assert_page(response, 415, "Unsupported form", "Nothing was changed")
    assert web.get(grace).status == "active"


@pytest.mark.parametrize(
    "content",
    [b"action=save&timezone=%ff%fe", b"action=save&timezone=\xff", b"action=delete", b"a=1&" * 1001],
    ids=["bad percent-escape", "bad utf-8", "unknown action", "too many fields"],
)
def test_an_unreadable_form_is_refused_with_400(web: Web, content: bytes) -> None:
    grace = web.add(**GRACE)
    before = web.get(grace).model_dump()

    response = web.client.post(url(web, grace), content=content, headers=FORM)

    assert_page(response, 400, "This form could not be read", "Nothing was changed")
    assert web.get(grace).model_dump() == before


# -- hostile input, headers ---------------------------------------------------------------------


def test_html_in_keywords_and_topics_is_escaped_in_the_page(web: Web) -> None:
    grace = web.add(**GRACE)
    hostile = '<script>alert(1)</script>, "><img src=x onerror=alert(2)>'

    refused = save(web, grace, muted_keywords=hostile, topics=["<b>bold</b>"], timezone="Nowhere")
    follow(web, save(web, grace, muted_keywords=hostile), "saved")
    shown = web.client.get(url(web, grace))

    for response in (refused, shown):
        assert "<script>alert" not in response.text and "<img src=x" not in response.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text
        assert form_of(response.text)["muted_keywords"] == [
            '<script>alert(1)</script>, "><img src=x onerror=alert(2)>'
        ]
    assert_page(refused, 400, "&lt;b&gt;bold&lt;/b&gt;")
    assert "<b>bold" not in refused.text
    assert web.get(grace).muted_keywords == ["<script>alert(1)</script>", '"><img src=x onerror=alert(2)>']


def test_preferences_responses_carry_the_security_headers(web: Web) -> None:
    grace = web.add(**GRACE)
    file_subscriber = web.add(email="team@example.com", origin=TEAM_FILE)
    responses = [
        web.client.get(url(web, grace)),
        save(web, grace, timezone="Nowhere"),
        web.client.post(url(web, file_subscriber), data={"action": "save"}),
        web.client.post(url(web, grace), content=b"{}", headers={"content-type": "application/json"}),
        press(web, grace, "pause"),
        web.client.put(url(web, grace)),
    ]

    assert [r.status_code for r in responses] == [200, 400, 409, 415, 303, 405]
    for response in responses:
        policy = response.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "form-action 'self'" in policy and "script" not in policy
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["cache-control"] == "no-store"
    assert "<script" not in responses[0].text and 'style="' not in responses[0].text


# -- the digest footer ----------------------------------------------------------------------------


async def test_the_digest_footer_links_to_this_page(web: Web, web_settings: Settings) -> None:
    store = Store.open(web_settings)
    try:
        source = store.add_source(NewSource("Py Weekly", "https://py.example/feed")).id
        assert source
        store.save_entries(source, [article("a", "Python 3.14 is out", 2)], now=NOW)
        reader = add_reader(store, "ada@example.com")
        channel = OutboxChannel(web_settings.outbox_dir, settings=web_settings.email)
        result = await DigestService(store, web_settings, channel).send(reader, NOW.strftime("%Y-%m-%d"))
    finally:
        store.close()
    assert result.status == "sent"

    [message] = outbox_messages(web_settings.outbox_dir)
    parts = {part.get_content_type(): part for part in message.walk() if not part.is_multipart()}
    texts = {kind: _decoded(part) for kind, part in parts.items()}
    link = re.search(r"Choose your topics and time: (\S+)", texts["text/plain"])
    assert link is not None
    address = link.group(1)
    assert address.startswith(f"{web_settings.web.base_url}/p/")
    assert address in texts["text/html"]
    token = address.rsplit("/", 1)[1]
    assert (
        read_token(SECRET.encode(), token, purpose="preferences", max_age=None, now=datetime.now(UTC))
        == reader
    )
    assert_page(web.client.get(f"/p/{token}"), 200, "Your digest preferences", "a***@example.com")


def _decoded(part: email.message.Message) -> str:
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode(part.get_content_charset() or "utf-8")


# -- the pieces ---------------------------------------------------------------------------------


def test_the_topic_groups_list_every_topic_once() -> None:
    taxonomy = load_taxonomy()

    groups = topic_groups(taxonomy, shipped=taxonomy.slugs)

    listed = [topic.slug for group in groups for topic in group.topics]
    assert sorted(listed) == sorted(taxonomy.slugs)
    titles = [group.title for group in groups]
    assert titles[0] == "Programming" and titles[-1] == "Kinds of article"
    assert next(g for g in groups if g.title == "Programming").topics[0].slug == "programming"


def test_files_and_the_page_share_one_validator() -> None:
    with pytest.raises(ConfigError, match="at most 20 muted keywords, got 21"):
        make_spec(email="ada@example.com", muted_keywords=[f"word{n}" for n in range(21)])
