"""GET /metrics: what an operator graphs and alerts on, in the Prometheus text format (0.0.4).

Every figure is an aggregate: subscribers by status, deliveries by channel and status, jobs by
task and status, sources and their health, articles. No address or subscriber name is ever a
label; source names are (an operator chose them), escaped as the format says.

The figures are business figures, so the endpoint is off unless `web.metrics_token` is set, and
then answers only requests that carry `Authorization: Bearer <token>` (see `bearer_matches`).

The figures are collected by the application layer (`bot.app.metrics`); this module is the
endpoint's own part: the exposition format and the bearer check.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Iterable

from bot.app.metrics import Gauge

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def render(gauges: Iterable[Gauge]) -> str:
    """The exposition text: HELP and TYPE, then the samples, of each family that has samples."""
    lines: list[str] = []
    for family in gauges:
        if not family.samples:
            continue
        lines.append(f"# HELP {family.name} {escape_help(family.description)}")
        lines.append(f"# TYPE {family.name} gauge")
        for sample in family.samples:
            labels = ",".join(f'{name}="{escape_label_value(value)}"' for name, value in sample.labels)
            selector = f"{family.name}{{{labels}}}" if labels else family.name
            lines.append(f"{selector} {format_value(sample.value)}")
    return "\n".join(lines) + "\n" if lines else ""


def escape_label_value(value: str) -> str:
    """Backslash, double quote and line feed escaped, as the format requires of label values."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """Backslash and line feed escaped, as the format requires of HELP text."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if isinstance(value, int):  # bool too: True is 1
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def bearer_matches(authorization: str | None, token: str) -> bool:
    """Whether an Authorization header carries `Bearer <token>`, compared in constant time."""
    if not authorization:
        return False
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Headers arrive decoded as latin-1: encoding them back gives the bytes that were sent.
    return hmac.compare_digest(credentials.strip().encode("latin-1"), token.encode("utf-8"))
