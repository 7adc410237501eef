"""The Slack channel of the registry: a digest for a Slack destination, rendered as Block Kit and
posted part by part.

    channel = SlackChannel(settings.slack, part_log=DatabasePartLog(engine))
    receipt = await channel.send(outgoing)   # outgoing.to_address: "C0123ABCD" or "webhook_env:NAME"

The address is the subscriber's: a channel id (posted with the bot token, `slack.bot_token`) or
`webhook_env:NAME`, whose URL is read from the environment variable NAME when the digest is
posted, so it is never stored. The words come from templates/slack/ (`slack.template_dir`
overrides them), rendered from the same digest view the email is made of.

Exactly once: the delivery's key is the digest's Message-ID (deterministic per subscriber and
period). Before the first part of a delivery is posted, part 0 is recorded in the part log as a
"begun" mark: a later attempt that finds it knows an earlier one may have posted a part it never
recorded, and the poster searches the channel's history before posting anything (see
bot/channels/slack.py). A first attempt costs no history request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from bot.channels.base import OutgoingDigest, Receipt
from bot.channels.parts import PartLog
from bot.channels.slack import ChannelPacer, SlackDestination, SlackPermanentError, SlackPoster
from bot.config import SlackSettings
from bot.digest.slack import SlackMessage, SlackRenderer
from bot.errors import DeliveryPermanentError

WEBHOOK_PREFIX = "webhook_env:"
BEGUN = 0  # the part number of the "an attempt began" mark


class SlackChannel:
    """Sends digests to Slack channels and webhooks; one per process, shared by all sends."""

    name = "slack"

    def __init__(
        self,
        settings: SlackSettings,
        *,
        part_log: PartLog,
        environ: Mapping[str, str] | None = None,
        pacer: ChannelPacer | None = None,
    ) -> None:
        self.settings = settings
        self.part_log = part_log
        self.environ = os.environ if environ is None else environ
        self.renderer = SlackRenderer(template_dir=settings.template_dir, thread=settings.thread)
        self.poster = SlackPoster(
            token=settings.bot_token, log=part_log, api_url=settings.api_url, pacer=pacer
        )

    def render(self, message: OutgoingDigest) -> tuple[SlackMessage, ...]:
        """The Block Kit messages of one digest (what `preview --slack-json` shows)."""
        if message.view is None:
            raise DeliveryPermanentError(
                f"only digests go to Slack; {message.period!r} for {message.to_address} is not one"
            )
        return self.renderer.render(message.view)

    def destination(self, address: str) -> SlackDestination:
        """Where `address` posts: the webhook URL from its variable, or the channel id (which
        needs the bot token). Raises SlackPermanentError saying what to set."""
        if address.startswith(WEBHOOK_PREFIX):
            variable = address.removeprefix(WEBHOOK_PREFIX)
            url = self.environ.get(variable, "").strip()
            if not url:
                raise SlackPermanentError(
                    f"the environment variable {variable} holds no Slack webhook URL: set it to the "
                    "URL Slack gave for the incoming webhook",
                    reason="webhook_env_unset",
                )
            if not url.startswith(("https://", "http://")):
                raise SlackPermanentError(
                    f"the environment variable {variable} is not a URL (an incoming webhook's URL "
                    "starts with https://hooks.slack.com/)",
                    reason="webhook_env_unset",
                )
            return SlackDestination(webhook_url=url)
        if not self.settings.bot_token:
            raise SlackPermanentError(
                f"no Slack bot token to post to channel {address}: set SLACK_BOT_TOKEN",
                reason="not_authed",
            )
        return SlackDestination(channel=address)

    async def send(self, message: OutgoingDigest) -> Receipt:
        messages = self.render(message)
        destination = self.destination(message.to_address)
        key = message.message_id
        earlier = await self.part_log.posted(key)
        if not earlier:
            await self.part_log.record(key, BEGUN, "")
        return await self.poster.post(destination, messages, key=key, resume=bool(earlier))

    async def aclose(self) -> None:
        await self.poster.aclose()
