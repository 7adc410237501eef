"""Discord destinations as a `Channel`: the delivery service hands over an `OutgoingDigest`, this
renders its view as embeds and posts every part once through `DiscordPoster`.

A Discord destination's stored address is a channel id ("112233445566778899"), "user:<id>" (a DM)
or "webhook_env:<NAME>": the webhook's URL is a secret, read from that environment variable when a
digest is posted, never stored. The delivery key of the part log is the digest's Message-ID (one
per subscriber and period), so a retried job finds the parts an earlier attempt posted. As the
Slack channel does, part 0 is recorded as a "begun" mark before anything is posted: a later attempt
that finds it searches the channel's history before posting (an earlier one may have died between
Discord taking a part and the log recording it), and a first attempt costs no history request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from bot.channels.base import OutgoingDigest, Receipt
from bot.channels.discord import DiscordDestination, DiscordPermanentError, DiscordPoster, RouteLimits
from bot.channels.parts import PartLog
from bot.digest.discord import DiscordRenderer

if TYPE_CHECKING:
    from bot.config import DiscordSettings

WEBHOOK_PREFIX = "webhook_env:"
USER_PREFIX = "user:"
BEGUN = 0  # the part number of the "an attempt began" mark


class DiscordChannel:
    """Posts digests to Discord channels, DMs and webhooks; one per process."""

    name = "discord"

    def __init__(
        self,
        settings: DiscordSettings,
        *,
        part_log: PartLog,
        env: Mapping[str, str] | None = None,
        limits: RouteLimits | None = None,
    ) -> None:
        self.renderer = DiscordRenderer(template_dir=settings.template_dir)  # a broken template fails here
        self.poster = DiscordPoster(
            token=settings.bot_token, log=part_log, api_url=settings.api_url, limits=limits
        )
        self.env = os.environ if env is None else env

    def destination(self, address: str) -> DiscordDestination:
        """Where `address` (as stored) posts; a webhook's URL is read from its variable now."""
        if address.startswith(WEBHOOK_PREFIX):
            name = address.removeprefix(WEBHOOK_PREFIX)
            url = (self.env.get(name) or "").strip()
            if not url.startswith(("https://", "http://")):
                raise DiscordPermanentError(
                    f"the environment variable {name} should hold the Discord webhook's URL"
                    + (" but is not set" if not url else " but does not hold a URL"),
                    reason="webhook_env_unset",
                )
            return DiscordDestination(webhook_url=url)
        if address.startswith(USER_PREFIX):
            return DiscordDestination(user=address.removeprefix(USER_PREFIX))
        if not address:
            raise DiscordPermanentError("no Discord channel is set for this subscriber", reason="no_address")
        return DiscordDestination(channel=address)

    async def send(self, message: OutgoingDigest) -> Receipt:
        if message.view is None:
            raise DiscordPermanentError(
                f"nothing to post to Discord {message.to_address}: only digests go to Discord",
                reason="not_a_digest",
            )
        destination = self.destination(message.to_address)
        parts = self.renderer.render(message.view)
        key = message.message_id
        earlier = await self.poster.part_log.posted(key)
        if not earlier:
            await self.poster.part_log.record(key, BEGUN, "")
        return await self.poster.post(destination, parts, key=key, resume=bool(earlier))

    async def aclose(self) -> None:
        await self.poster.aclose()
