"""FlareStart bot: where developers start their day."""

__version__ = "0.1.0"
USER_AGENT = f"FlareStartBot/{__version__} (+https://github.com/flarestart/bot)"
