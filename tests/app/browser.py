"""Render HTML pages in headless Chromium, for tests and docs screenshots.

Test helper, not library code: cfer never needs a browser. It speaks the Chrome DevTools
Protocol over ``--remote-debugging-pipe`` (NUL-terminated JSON on the browser's fds 3 and
4), so it needs only the standard library and a ``chromium`` binary (``make browser``
installs Debian's). Every call starts a fresh browser with an empty profile, bounds every
wait with a timeout and always kills the browser's process group.

Tests import it as a plain module (pytest puts ``tests/`` on ``sys.path``)::

    from browser import page_images, require_chromium, screenshot

Screenshot a report for the docs::

    python tests/browser.py runs/demo/report.html docs/img/report.png --width 1200
"""

from __future__ import annotations

import base64
import functools
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")

# Without these, a fresh Chromium tries to reach Google's servers (and hangs where it
# cannot), or to use a GPU / a sandbox / a /dev/shm that containers lack.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
)

SKIP_HINT = "`make browser` installs Debian's chromium"

# A tiny Python child that moves the pipe ends onto the fds 3 and 4 that
# --remote-debugging-pipe expects, then execs Chromium (same pid, so kills reach it).
# Safer than a preexec_fn in a process that may run threads (torch).
_TRAMPOLINE = (
    "import os, sys\n"
    "r, w = int(sys.argv[1]), int(sys.argv[2])\n"
    "os.dup2(r, 3); os.dup2(w, 4); os.close(r); os.close(w)\n"
    "os.execv(sys.argv[3], sys.argv[3:])\n"
)

# Waits for every <img> (lazy ones made eager) to load or fail, then describes them.
_IMAGES_JS = """
(async (timeoutMs) => {
  const imgs = Array.from(document.images);
  for (const img of imgs) if (img.loading === "lazy") img.loading = "eager";
  const settled = imgs.map((img) => img.complete ? null : new Promise((done) => {
    img.addEventListener("load", done, {once: true});
    img.addEventListener("error", done, {once: true});
  }));
  await Promise.race([
    Promise.all(settled),
    new Promise((done) => setTimeout(done, timeoutMs)),
  ]);
  const page = document.documentElement.clientWidth;
  const overflow = Array.from(document.body.querySelectorAll("*"))
    .filter((el) => el.getBoundingClientRect().right > page + 1 || el.scrollWidth > el.clientWidth + 1
                    && getComputedStyle(el).overflowX === "visible")
    .map((el) => `${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}` +
                 `${el.className && typeof el.className === "string" ? "." + el.className.split(" ")[0] : ""}` +
                 ` (right ${Math.round(el.getBoundingClientRect().right)} px of ${page})`);
  return {
    title: document.title,
    page_width: page,
    document_width: document.documentElement.scrollWidth,
    overflow: overflow,
    images: imgs.map((img) => ({
      src: img.getAttribute("src"),
      url: img.currentSrc || img.src,
      alt: img.alt,
      complete: img.complete,
      naturalWidth: img.naturalWidth,
      naturalHeight: img.naturalHeight,
    })),
  };
})
"""


class BrowserError(RuntimeError):
    """Chromium could not be started, or did not answer in time."""


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary: ``$CFER_CHROMIUM``, else the first on ``PATH``.

    >>> find_chromium()  # doctest: +SKIP
    '/usr/bin/chromium'
    """
    override = os.environ.get("CFER_CHROMIUM")
    if override:
        return shutil.which(override)  # no fallback: a wrong override should show
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class _Chromium:
    """One headless Chromium driven over the DevTools pipe; use as a context manager."""

    def __init__(self, *, binary: str | None = None, width: int = 1200, height: int = 800, timeout: float = 30.0):
        self.binary = binary or find_chromium()
        if self.binary is None:
            raise BrowserError(f"no Chromium binary (set CFER_CHROMIUM or install one of {', '.join(CANDIDATES)})")
        self.width, self.height, self.timeout = width, height, timeout
        self.events: list[dict] = []
        self._next_id = 0
        self._buffer = b""
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> _Chromium:
        self._profile = tempfile.TemporaryDirectory(prefix="cfer-chromium-", ignore_cleanup_errors=True)
        self._stderr = tempfile.TemporaryFile()
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()
        # Child-side ends above fd 9, so the dup2 onto 3 and 4 never clobbers one of them.
        child_r = _dup_high(to_browser_r)
        child_w = _dup_high(from_browser_w)
        for fd in (to_browser_r, from_browser_w):
            os.close(fd)
        args = [
            self.binary,
            *FLAGS,
            "--remote-debugging-pipe",
            f"--user-data-dir={self._profile.name}",
            f"--window-size={self.width},{self.height}",
            "about:blank",
        ]
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _TRAMPOLINE, str(child_r), str(child_w), *args],
                stdin=subprocess.DEVNULL,
                stdout=self._stderr,
                stderr=self._stderr,
                pass_fds=(child_r, child_w),
                start_new_session=True,
            )
        except OSError as exc:
            self._cleanup_files(to_browser_w, from_browser_r)
            raise BrowserError(f"could not start {self.binary}: {exc}") from exc
        finally:
            os.close(child_r)
            os.close(child_w)
        self._write, self._read = to_browser_w, from_browser_r
        try:
            self.version = self.send("Browser.getVersion")["product"]
            target = self.send("Target.createTarget", url="about:blank")["targetId"]
            self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                self.send(f"{domain}.enable", session=self.session)
            self.send(
                "Emulation.setDeviceMetricsOverride",
                session=self.session,
                width=self.width,
                height=self.height,
                deviceScaleFactor=1,
                mobile=False,
            )
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                self.send("Browser.close", timeout=2)
                proc.wait(timeout=3)
            except (BrowserError, OSError, subprocess.TimeoutExpired):
                pass
            finally:
                _kill_group(proc)
        self._cleanup_files(self._write, self._read)

    def _cleanup_files(self, *fds: int) -> None:
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._stderr.close()
        self._profile.cleanup()

    def stderr_tail(self, limit: int = 600) -> str:
        """Exit status and last output of Chromium, to end error messages with."""
        status = self._proc.poll() if self._proc is not None else None
        try:
            self._stderr.seek(0)
            text = self._stderr.read().decode(errors="replace").strip()[-limit:]
        except (OSError, ValueError):
            text = ""
        parts = [f"exit status {status}"] if status is not None else []
        if text:
            parts.append(f"output: {text}")
        return "; ".join(parts) or "no output"

    def send(self, method: str, *, session: str | None = None, timeout: float | None = None, **params) -> dict:
        """Sends one DevTools command and returns its result; events seen meanwhile go to ``events``."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        try:
            os.write(self._write, json.dumps(message).encode() + b"\0")
        except OSError as exc:
            raise BrowserError(f"Chromium closed its DevTools pipe ({exc}): {self.stderr_tail()}") from exc
        while True:
            reply = self._receive(timeout or self.timeout, f"reply to {method}")
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method} failed: {reply['error'].get('message', reply['error'])}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, *, timeout: float | None = None) -> dict:
        """Returns the first event named ``method``, already received or still to come."""
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._receive(timeout or self.timeout, f"event {method}")
            self.events.append(event)
            if event.get("method") == method:
                return event

    def _receive(self, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self._read, selectors.EVENT_READ)
            while b"\0" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    raise BrowserError(f"Chromium sent no {what} within {timeout:g} s: {self.stderr_tail()}")
                chunk = os.read(self._read, 1 << 20)
                if not chunk:
                    raise BrowserError(f"Chromium exited before its {what}: {self.stderr_tail()}")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def open(self, html_path: str | os.PathLike) -> None:
        """Loads a local HTML file and waits for its load event (images included)."""
        path = _html_file(html_path)
        self.events.clear()
        result = self.send("Page.navigate", session=self.session, url=path.as_uri())
        if result.get("errorText"):
            raise BrowserError(f"could not open {path}: {result['errorText']}")
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str, *, await_promise: bool = False):
        """Value of a JavaScript expression in the page (JSON-serialisable)."""
        result = self.send(
            "Runtime.evaluate",
            session=self.session,
            expression=expression,
            awaitPromise=await_promise,
            returnByValue=True,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise BrowserError(f"JavaScript error: {details.get('exception', {}).get('description', details)}")
        return result["result"].get("value")

    def console_errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads seen since the last ``open``."""
        errors = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                errors.append(details.get("exception", {}).get("description") or details.get("text", ""))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                errors.append(f"{entry.get('text', '')} {entry.get('url', '')}".strip())
        return errors


def _html_file(html_path: str | os.PathLike) -> Path:
    path = Path(html_path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no HTML file at {path}; write the report first")
    return path


def _dup_high(fd: int) -> int:
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILLs Chromium and its helpers (its own session/process group), then reaps it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()


def page_images(html_path: str | os.PathLike, *, width: int = 1200, timeout: float = 30.0) -> dict:
    """Loads ``html_path`` in headless Chromium and describes every ``<img>`` on it.

    Args:
        html_path: local HTML file; relative ``src`` resolve against its folder.
        width: viewport width in CSS pixels.
        timeout: seconds allowed for each step (start, load, each command).

    Returns:
        ``{"title": str, "images": [{"src", "url", "alt", "complete", "naturalWidth",
        "naturalHeight"}, ...], "page_width": int, "document_width": int, "overflow":
        [str, ...], "console_errors": [str, ...], "browser": str}``. A broken image is
        ``complete`` with ``naturalWidth == 0``; ``overflow`` names every element that
        reaches past the page's width (or whose own content spills out of it unclipped).

    Raises:
        BrowserError: Chromium is missing, did not start, or did not answer in time.

    >>> info = page_images("runs/demo/report.html")  # doctest: +SKIP
    >>> [img["src"] for img in info["images"] if img["naturalWidth"] == 0]  # doctest: +SKIP
    []
    """
    _html_file(html_path)
    with _Chromium(width=width, timeout=timeout) as browser:
        browser.open(html_path)
        info = browser.evaluate(f"{_IMAGES_JS}({int(timeout * 1000)})", await_promise=True)
        info["console_errors"] = browser.console_errors()
        info["browser"] = browser.version
        return info


def screenshot(
    html_path: str | os.PathLike, png_path: str | os.PathLike, *, width: int = 1200, timeout: float = 30.0
) -> Path:
    """Writes a full-page PNG screenshot of ``html_path`` (whole height, not just the viewport).

    Args:
        html_path: local HTML file.
        png_path: PNG to write; parent folders are created.
        width: page width in CSS pixels (the PNG is at least this wide, at scale 1).
        timeout: seconds allowed for each step.

    Returns:
        ``png_path`` as a ``Path``.

    >>> screenshot("runs/demo/report.html", "docs/img/report.png")  # doctest: +SKIP
    PosixPath('docs/img/report.png')
    """
    _html_file(html_path)
    png_path = Path(png_path)
    if png_path.suffix.lower() != ".png":
        raise ValueError(f"screenshot writes PNG; name the file *.png, not {png_path.name!r}")
    with _Chromium(width=width, timeout=timeout) as browser:
        browser.open(html_path)
        browser.evaluate(f"{_IMAGES_JS}({int(timeout * 1000)})", await_promise=True)
        size = browser.send("Page.getLayoutMetrics", session=browser.session)["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": max(width, int(size["width"] + 0.999)), "height": int(size["height"] + 0.999), "scale": 1}
        data = browser.send(
            "Page.captureScreenshot",
            session=browser.session,
            format="png",
            captureBeyondViewport=True,
            clip=clip,
        )["data"]
    png_path.parent.mkdir(parents=True, exist_ok=True)
    png_path.write_bytes(base64.b64decode(data))
    return png_path


@functools.lru_cache(maxsize=1)
def _probe() -> tuple[str | None, str]:
    """(version, "") when Chromium starts and answers, else (None, reason). Cached per process."""
    if find_chromium() is None:
        override = os.environ.get("CFER_CHROMIUM")
        if override:
            return None, f"CFER_CHROMIUM={override!r} is not an executable"
        return None, f"no chromium on PATH (looked for {', '.join(CANDIDATES)})"
    try:
        with _Chromium(timeout=30) as browser:
            return browser.version, ""
    except BrowserError as exc:
        return None, str(exc).strip()


def require_chromium() -> str:
    """Chromium's version string, or ``pytest.skip`` with the reason and the fix.

    >>> require_chromium()  # doctest: +SKIP
    'HeadlessChrome/156.0.8078.79'
    """
    import pytest

    version, reason = _probe()
    if version is None:
        pytest.skip(f"headless Chromium not available: {reason}; {SKIP_HINT}")
    return version


def main(argv: list[str] | None = None) -> int:
    """``python tests/browser.py REPORT.html OUT.png [--width W]``: full-page screenshot."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("html", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--width", type=int, default=1200)
    args = parser.parse_args(argv)
    info = page_images(args.html, width=args.width)
    broken = [img["src"] for img in info["images"] if img["naturalWidth"] == 0]
    for src in broken:
        print(f"warning: image did not load: {src}", file=sys.stderr)
    print(screenshot(args.html, args.png, width=args.width))
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
