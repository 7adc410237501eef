"""`flarestart demo`'s ingredients: self-written feeds, sample readers and a loopback inbox.

    content.py      six fictional publications and today's articles (three stories told twice)
    feeds.py        those articles as RSS 2.0, Atom and JSON Feed documents, dated from now
    subscribers.py  sample readers with different topics, time zones and schedules
    inbox.py        an SMTP server on loopback that files mail into a Maildir, and a channel
                    wrapper that keeps an HTML preview of each digest

Nothing here touches the network beyond 127.0.0.1; the command in bot/cli/demo.py runs it.
"""

from bot.demo.content import DEMO_FEEDS, DemoArticle, DemoFeed
from bot.demo.feeds import content_type, feed_path, render_feed, serve_demo_feeds
from bot.demo.inbox import (
    MaildirSmtpServer,
    Preview,
    PreviewingChannel,
    maildir_smtp_server,
    previewing_smtp_channel,
)
from bot.demo.subscribers import SAMPLE_SUBSCRIBERS, SampleSubscriber, add_sample_subscribers

__all__ = [
    "DEMO_FEEDS",
    "SAMPLE_SUBSCRIBERS",
    "DemoArticle",
    "DemoFeed",
    "MaildirSmtpServer",
    "Preview",
    "PreviewingChannel",
    "SampleSubscriber",
    "add_sample_subscribers",
    "content_type",
    "feed_path",
    "maildir_smtp_server",
    "previewing_smtp_channel",
    "render_feed",
    "serve_demo_feeds",
]
