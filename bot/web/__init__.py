"""The web side of the subscriber lifecycle: one-click unsubscribe, double opt-in and the
preferences page.

The app itself is `bot.web.app.create_app` (Starlette). The signed links it reads are made and
checked in `bot.links`, which mail rendering and delivery use too.
"""
