"""A page in a real headless Chromium, driven over the DevTools protocol on a pipe.

No browser-automation package: Chromium's --remote-debugging-pipe speaks JSON messages
(each ended by a NUL byte) on file descriptors 3 (commands in) and 4 (events and replies
out). Enough for the report's test and for docs/report.png: open a page, collect
console errors and uncaught exceptions, run a script in it, take a screenshot.
"""

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from protembed.errors import UserError


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise UserError("headless Chromium is missing: install Debian's chromium package")


def _onto_3_and_4(commands: int, events: int) -> None:
    """In the child: the pipe ends on the descriptors Chromium reads and writes, by way of
    free high numbers so that neither overwrites the other."""
    os.dup2(commands, 200)
    os.dup2(events, 201)
    os.dup2(200, 3)  # dup2 leaves the copies inheritable, unlike os.pipe's ends
    os.dup2(201, 4)


class Page:
    """One browser tab. `errors` collects console.error messages, uncaught exceptions and
    failed loads, as text."""

    def __init__(self, width: int = 1400, height: int = 900, timeout_s: float = 60):
        self.timeout_s = timeout_s
        commands_read, self._commands = os.pipe()
        self._events, events_write = os.pipe()
        self._process = subprocess.Popen(
            [
                chromium(),
                "--headless",
                "--remote-debugging-pipe",
                "--no-sandbox",  # tests run as root in containers
                "--disable-gpu",
                "--no-first-run",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            close_fds=False,  # fds 3 and 4 must reach Chromium; see _onto_3_and_4
            preexec_fn=lambda: _onto_3_and_4(commands_read, events_write),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(commands_read)
        os.close(events_write)
        self._buffer = b""
        self._next_id = 0
        self.errors: list[str] = []
        self._seen: list[dict] = []
        targets = self.send("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        attached = self.send("Target.attachToTarget", targetId=page["targetId"], flatten=True)
        self._session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", session=True)
        self.send(
            "Emulation.setDeviceMetricsOverride",
            session=True,
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def __enter__(self) -> "Page":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        os.close(self._commands)
        os.close(self._events)

    # -- the protocol -----------------------------------------------------------------

    def send(self, method: str, session: bool = False, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        reply = self._wait(lambda m: m.get("id") == message["id"])
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def _wait(self, wanted, timeout_s: float | None = None) -> dict:
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while True:
            for message in self._seen:
                if wanted(message):
                    self._seen.remove(message)
                    return message
            if time.monotonic() > deadline:
                raise TimeoutError("Chromium did not answer in time")
            self._receive()

    def _receive(self) -> None:
        while b"\0" not in self._buffer:
            chunk = os.read(self._events, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium exited")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message = json.loads(raw)
        self._note_error(message)
        self._seen.append(message)

    def _note_error(self, message: dict) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            self.errors.append(f"uncaught: {text}")
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            self.errors.append(f"console.{params['type']}: {args}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            self.errors.append(f"{entry['source']}: {entry['text']} {entry.get('url', '')}")

    # -- what a test does -------------------------------------------------------------

    def open(self, url: str) -> None:
        """Load `url` and wait for its load event."""
        self.send("Page.navigate", session=True, url=url)
        self._wait(lambda m: m.get("method") == "Page.loadEventFired")

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.send(
            "Runtime.evaluate",
            session=True,
            expression=expression,
            awaitPromise=True,
            returnByValue=True,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def settle(self, seconds: float = 0.5) -> None:
        """Let the page run (and report events) for a moment."""
        deadline = time.monotonic() + seconds
        self.evaluate(f"new Promise(done => setTimeout(done, {int(seconds * 1000)}))")
        while time.monotonic() < deadline:
            time.sleep(0.05)

    def screenshot(self, path: str | Path) -> Path:
        data = self.send("Page.captureScreenshot", session=True, format="png")["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path


# Clicks in Snakemake's report: a menu entry by its text, and a result's "view" button.
CLICK_MENU = (
    "(text => [...document.querySelectorAll('a')].find(e => e.textContent.trim() == text).click())"
)
VIEW_RESULT = (
    "(text => [...document.querySelectorAll('tr')]"
    ".find(r => r.cells[0] && r.cells[0].textContent.trim() == text)"
    ".querySelector('a[iconname=eye]').click())"
)


def show_result(page: Page, category: str, result: str) -> None:
    """Open one result of a Snakemake report, as a reader clicks to it."""
    page.evaluate(f"{CLICK_MENU}({json.dumps(category)})")
    page.settle(0.5)
    page.evaluate(f"{VIEW_RESULT}({json.dumps(result)})")
    page.settle(1)


def main(argv: list[str]) -> int:
    """python tests/support/browser.py REPORT.html OUT.png CATEGORY RESULT: a picture
    of one result of a Snakemake report (docs/report.png is made so)."""
    report, picture, category, result = argv
    with Page() as page:
        page.open(Path(report).resolve().as_uri())
        page.settle(1)
        show_result(page, category, result)
        page.screenshot(picture)
        if page.errors:
            print("\n".join(page.errors))
            return 1
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
