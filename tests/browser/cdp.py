"""A small Chrome DevTools Protocol client over aiohttp's WebSocket: headless Chromium opens a
page, and the test reads what a person would see, what the page fetched and what it logged."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import re
import shutil
import subprocess
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

_LISTENING = re.compile(r"DevTools listening on (ws://\S+)")


def chromium_path() -> str | None:
    """The Chromium binary (Debian's `chromium` package), or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class PageVisit:
    """What one page load did: requests made, failures, console errors, HTTP statuses."""

    requests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)


class Tab:
    """One page target, driven through a flattened session of the browser connection."""

    def __init__(self, browser: Browser, session_id: str) -> None:
        self._browser = browser
        self._session = session_id
        self.visit = PageVisit()
        self._loaded = asyncio.Event()

    async def send(self, method: str, **params: Any) -> Any:
        return await self._browser.send(method, session_id=self._session, **params)

    def heard(self, method: str, params: dict[str, Any]) -> None:
        visit = self.visit
        if method == "Network.requestWillBeSent":
            visit.requests.append(params["request"]["url"])
        elif method == "Network.responseReceived":
            visit.statuses[params["response"]["url"]] = params["response"]["status"]
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            visit.failed.append(f"{params.get('errorText')} ({params.get('blockedReason')})")
        elif method == "Runtime.exceptionThrown":
            visit.errors.append(str(params["exceptionDetails"].get("text")))
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            args = params["args"]
            visit.errors.append(" ".join(str(a.get("value", a.get("description"))) for a in args))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            visit.errors.append(f"{params['entry'].get('source')}: {params['entry']['text']}")
        elif method == "Page.loadEventFired":
            self._loaded.set()

    async def open(self, url: str, *, within_s: float = 30) -> PageVisit:
        """Load `url` and wait for its load event; the visit starts afresh."""
        self.visit = PageVisit()
        self._loaded.clear()
        await self.send("Page.navigate", url=url)
        await asyncio.wait_for(self._loaded.wait(), within_s)
        return self.visit

    async def evaluate(self, expression: str) -> Any:
        """The JSON value of `expression` in the page (promises awaited)."""
        result = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, *, within_s: float = 20) -> Any:
        """Poll `expression` until it is truthy."""
        deadline = asyncio.get_running_loop().time() + within_s
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {expression}")
            await asyncio.sleep(0.1)

    async def screenshot(self, path: Path) -> Path:
        """A PNG of the whole page."""
        data = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(data["data"]))
        return path

    async def pdf(self) -> bytes:
        """The page printed (print stylesheet applied), as PDF bytes."""
        data = await self.send("Page.printToPDF", printBackground=False)
        return base64.b64decode(data["data"])

    async def viewport(self, width: int, height: int, *, mobile: bool) -> None:
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=mobile,
        )


class Browser:
    """A headless Chromium process and its DevTools WebSocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._tabs: dict[str, Tab] = {}
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for message in self._ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            if "id" in data:
                future = self._pending.pop(data["id"], None)
                if future is not None and not future.done():
                    if "error" in data:
                        future.set_exception(AssertionError(str(data["error"])))
                    else:
                        future.set_result(data.get("result", {}))
            elif data.get("sessionId") in self._tabs:
                self._tabs[data["sessionId"]].heard(data["method"], data.get("params", {}))

    async def send(self, method: str, *, session_id: str | None = None, **params: Any) -> Any:
        message_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[message_id] = future
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params}
        if session_id is not None:
            message["sessionId"] = session_id
        await self._ws.send_str(json.dumps(message))
        return await asyncio.wait_for(future, 30)

    async def new_tab(self) -> Tab:
        target = await self.send("Target.createTarget", url="about:blank")
        attached = await self.send(
            "Target.attachToTarget", targetId=target["targetId"], flatten=True
        )
        tab = self._tabs[attached["sessionId"]] = Tab(self, attached["sessionId"])
        for domain in ("Page", "Runtime", "Log", "Network"):
            await tab.send(f"{domain}.enable")
        return tab

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.send("Browser.close")
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@contextlib.asynccontextmanager
async def launch(binary: str, profile: Path) -> AsyncIterator[Browser]:
    """Start headless Chromium with a throwaway profile; yield a connected Browser."""
    process = await asyncio.to_thread(
        subprocess.Popen,
        [
            binary,
            "--headless=new",
            "--no-sandbox",  # the tests run as root in CI containers
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = await asyncio.wait_for(asyncio.to_thread(_devtools_url, process), 30)
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(url, max_msg_size=64 * 1024 * 1024)
            browser = Browser(ws)
            try:
                yield browser
            finally:
                await browser.close()
                await ws.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def _drain(stream: Any) -> None:
    with contextlib.suppress(ValueError, OSError):
        for _ in stream:
            pass


def _devtools_url(process: subprocess.Popen[str]) -> str:
    assert process.stderr is not None
    for line in process.stderr:
        match = _LISTENING.search(line)
        if match:
            # Keep draining what it logs, so a full pipe never blocks the browser.
            threading.Thread(target=_drain, args=(process.stderr,), daemon=True).start()
            return match[1]
    raise RuntimeError(f"chromium exited ({process.wait()}) before DevTools listened")
