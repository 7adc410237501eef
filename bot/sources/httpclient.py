"""httpx for the fetcher and the SSRF guard, without its command-line client.

`import httpx` also imports httpx._main, its command-line client, whenever click and pygments
are installed (uvicorn brings click): click, pygments and rich.syntax, ~10 ms of every `fetch`
and `run` before the first request, for a `main` nothing here calls. A None entry in sys.modules
makes that one import fail, and httpx falls back to its stand-in `main` (which says how to install
the client); everything else in httpx is the same module.
"""

import sys

sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import httpx  # noqa: E402  (after the entry above)

__all__ = ["httpx"]
