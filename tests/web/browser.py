"""A small W3C WebDriver client (httpx) for Debian's chromium + chromedriver, for the browser tests.

No browser is downloaded: the tests use the machine's `chromium` and `chromedriver` packages and
are skipped, with the reason, where either is missing. Only what the tests need is here: open a
page, find and click elements, type, press keys, run a script, resize, take a screenshot.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
KEYS = {"tab": "\ue004", "enter": "\ue007", "space": "\ue00d", "shift": "\ue008"}


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None."""
    for program in ("chromium", "chromedriver"):
        if shutil.which(program) is None:
            return f"{program} is not installed (apt-get install chromium chromium-driver)"
    return None


class BrowserError(RuntimeError):
    pass


class Browser:
    """One headless chromium session driven through chromedriver on a loopback port."""

    def __init__(self, *, width: int = 1280, height: int = 900, timezone: str = "Europe/Berlin") -> None:
        self.width, self.height, self.timezone = width, height, timezone
        self._driver: subprocess.Popen[bytes] | None = None
        self._http: httpx.Client | None = None
        self.session = ""

    def __enter__(self) -> Browser:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env = {**os.environ, "TZ": self.timezone}  # the zone the page's script should guess
        # Under `make test-future` the suite runs in libfaketime; the browser need not (its clock
        # decides nothing: every time that matters is the server's), and chromium may hang in it.
        for name in ("LD_PRELOAD", "FAKETIME", "FAKETIME_DONT_FAKE_MONOTONIC"):
            env.pop(name, None)
        self._driver = subprocess.Popen(
            [shutil.which("chromedriver") or "chromedriver", f"--port={port}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        deadline = time.monotonic() + 30
        while True:
            try:
                if self._http.get("/status").json()["value"]["ready"]:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise BrowserError("chromedriver did not start")
            time.sleep(0.1)
        options = {
            "binary": shutil.which("chromium"),
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-extensions",
                "--disable-background-networking",
                f"--window-size={self.width},{self.height}",
            ],
        }
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}}
        self.session = self._call("POST", "/session", caps)["sessionId"]
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._http is not None and self.session:
            with contextlib.suppress(httpx.HTTPError):
                self._http.delete(f"/session/{self.session}")
        if self._http is not None:
            self._http.close()
        if self._driver is not None:
            self._driver.terminate()
            try:
                self._driver.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._driver.kill()

    # -- WebDriver ----------------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        assert self._http is not None
        response = self._http.request(method, path, json=body if body is not None else None)
        data = response.json()
        if response.status_code >= 400:
            raise BrowserError(f"{method} {path}: {data.get('value', data)}")
        return data["value"]

    def _s(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._call(method, f"/session/{self.session}{path}", body if body is not None else {})

    def open(self, url: str) -> None:
        self._s("POST", "/url", {"url": url})

    @property
    def url(self) -> str:
        return str(self._call("GET", f"/session/{self.session}/url"))

    def find(self, css: str) -> str:
        return str(self._s("POST", "/element", {"using": "css selector", "value": css})[ELEMENT])

    def click(self, css: str) -> None:
        self._s("POST", f"/element/{self.find(css)}/click")

    def type(self, css: str, text: str) -> None:
        self._s("POST", f"/element/{self.find(css)}/value", {"text": text})

    def run(self, script: str, *args: Any) -> Any:
        return self._s("POST", "/execute/sync", {"script": script, "args": list(args)})

    def text(self) -> str:
        return str(self.run("return document.body.innerText;"))

    def press(self, *keys: str) -> None:
        """Keys as a keyboard sends them to the focused element ("tab", "enter", or text)."""
        actions = []
        for key in keys:
            for char in [KEYS[key]] if key in KEYS else list(key):
                actions += [{"type": "keyDown", "value": char}, {"type": "keyUp", "value": char}]
        self._s("POST", "/actions", {"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})

    def viewport(self, width: int, height: int, *, mobile: bool) -> None:
        """The page's viewport as a phone (375 px) or a desktop window has it."""
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=2 if mobile else 1,
            mobile=mobile,
        )

    def cdp(self, command: str, **params: Any) -> Any:
        return self._s("POST", "/goog/cdp/execute", {"cmd": command, "params": params})

    def emulate_dark(self, dark: bool) -> None:
        scheme = "dark" if dark else "light"
        self.cdp("Emulation.setEmulatedMedia", features=[{"name": "prefers-color-scheme", "value": scheme}])

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self._call("GET", f"/session/{self.session}/screenshot")))
        return path

    def wait_for(self, text: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.text():
            if time.monotonic() > deadline:
                raise BrowserError(f"{text!r} did not appear; the page says: {self.text()[:300]!r}")
            time.sleep(0.05)
