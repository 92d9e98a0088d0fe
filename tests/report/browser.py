"""Open a page in real headless Chromium over the DevTools protocol (tornado's websocket client, no extra package).

``load_page`` returns what the browser saw: every request and failure, each image's natural size, and a
PNG screenshot of the full page.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tornado.websocket import websocket_connect

from tests.helpers import chromium

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-port=0", "--window-size=1100,900", "about:blank"]
IMAGES_JS = "JSON.stringify([...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight]))"




@dataclass
class PageLoad:
    """What the browser reported while loading one page."""

    requests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    images: list[list[Any]] = field(default_factory=list)
    screenshot: bytes = b""


class DevTools:
    """A minimal DevTools client: numbered commands, events collected per session."""

    def __init__(self, ws) -> None:
        self.ws, self.next_id, self.events = ws, 0, []

    async def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        await self.ws.write_message(json.dumps(msg))
        while True:
            reply = json.loads(await self.ws.read_message())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    async def wait_for(self, method: str, timeout: float = 20) -> dict:
        for event in self.events:
            if event.get("method") == method:
                return event
        async def read() -> dict:
            while True:
                event = json.loads(await self.ws.read_message())
                self.events.append(event)
                if event.get("method") == method:
                    return event
        return await asyncio.wait_for(read(), timeout)


async def _load(ws_url: str, url: str) -> PageLoad:
    ws = await websocket_connect(ws_url, max_message_size=256 * 1024 * 1024)
    cdp = DevTools(ws)
    target = (await cdp.send("Target.createTarget", {"url": "about:blank"}))["targetId"]
    session = (await cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True}))["sessionId"]
    for domain in ("Network", "Page", "Runtime"):
        await cdp.send(f"{domain}.enable", session=session)
    await cdp.send("Page.navigate", {"url": url}, session=session)
    await cdp.wait_for("Page.loadEventFired")
    images = await cdp.send("Runtime.evaluate", {"expression": IMAGES_JS, "returnByValue": True}, session=session)
    shot = await cdp.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session=session)
    ws.close()
    out = PageLoad(images=json.loads(images["result"]["value"]), screenshot=base64.b64decode(shot["data"]))
    for e in cdp.events:
        params = e.get("params", {})
        if e.get("method") == "Network.requestWillBeSent":
            out.requests.append(params["request"]["url"][:80])
        elif e.get("method") == "Network.loadingFailed":
            out.failed.append(f"{params.get('errorText')} {params.get('type')}")
        elif e.get("method") == "Network.responseReceived" and params["response"].get("status", 200) >= 400:
            out.failed.append(f"HTTP {params['response']['status']} {params['response']['url'][:80]}")
    return out


def load_page(path: Path, timeout: float = 30) -> PageLoad:
    """Open ``path`` in a fresh headless Chromium (own profile folder) and report what happened."""
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.Popen([chromium(), *FLAGS[:-1], f"--user-data-dir={profile}", FLAGS[-1]],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            ws_url = _devtools_url(proc)
            return asyncio.run(asyncio.wait_for(_load(ws_url, path.resolve().as_uri()), timeout))
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def _devtools_url(proc: subprocess.Popen) -> str:
    """The browser's DevTools websocket address, read from its stderr."""
    for line in proc.stderr:
        found = re.search(r"DevTools listening on (ws://\S+)", line)
        if found:
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining: never block it
            return found.group(1)
    raise RuntimeError(f"chromium exited ({proc.wait()}) without a DevTools address")
