"""Screenshots of pages served on localhost (TensorBoard), in headless Chromium.

Test and docs helper beside :mod:`browser` (same browser driver, same flags); cfer never
needs a browser. docs/img/tensorboard.png was taken with it::

    tensorboard --logdir RUN/logs/tensorboard --port 6006 --host 127.0.0.1 &
    python tests/app/served_page.py http://127.0.0.1:6006/#timeseries docs/img/tensorboard.png
"""

from __future__ import annotations

import base64
import os
import sys
import time
from pathlib import Path

from browser import BrowserError, _Chromium

# TensorBoard's time-series page of a cfer run: the settings pane closed, cfer's names only.
TENSORBOARD_READY = "document.querySelectorAll('scalar-card').length >= 4"
TENSORBOARD_FILTER = """(() => {
  for (const b of document.querySelectorAll('button')) {
    if ((b.getAttribute('aria-label') || '').match(/close/i)) b.click();
  }
  const f = document.querySelector('input[placeholder*="Filter tags"]');
  f.value = 'Distillation|Memory|Top1_Acc_Stream|Loss_MB';
  f.dispatchEvent(new Event('input', {bubbles: true}));
  return true;
})()"""


def screenshot_url(
    url: str,
    png_path: str | os.PathLike,
    *,
    ready_js: str = "true",
    then_js: str | None = None,
    width: int = 1400,
    height: int = 1000,
    settle: float = 3.0,
    timeout: float = 60.0,
) -> Path:
    """Writes a PNG of the viewport of a served page (e.g. TensorBoard on localhost).

    Args:
        url: ``http://127.0.0.1:PORT/...``; the page's own scripts may keep loading after
            its load event, hence ``ready_js``.
        png_path: PNG to write; parent folders are created.
        ready_js: JavaScript expression that is true once the page shows what is wanted
            (polled until ``timeout``).
        then_js: JavaScript run once the page is ready (close a pane, type a filter).
        width, height: the viewport in CSS pixels (the PNG's size, at scale 1).
        settle: seconds to wait after ``ready_js`` is true (animations, last fetches).
        timeout: seconds allowed for each step.

    Returns:
        ``png_path`` as a ``Path``.

    >>> screenshot_url("http://127.0.0.1:6006/#timeseries", "docs/img/tensorboard.png",
    ...                ready_js="document.querySelectorAll('scalar-card').length > 0")  # doctest: +SKIP
    PosixPath('docs/img/tensorboard.png')
    """
    png_path = Path(png_path)
    if png_path.suffix.lower() != ".png":
        raise ValueError(f"screenshot writes PNG; name the file *.png, not {png_path.name!r}")
    with _Chromium(width=width, height=height, timeout=timeout) as browser:
        result = browser.send("Page.navigate", session=browser.session, url=url)
        if result.get("errorText"):
            raise BrowserError(f"could not open {url}: {result['errorText']}")
        browser.wait_for("Page.loadEventFired")
        deadline = time.monotonic() + timeout
        while not browser.evaluate(f"Boolean({ready_js})"):
            if time.monotonic() > deadline:
                raise BrowserError(f"{url} was not ready ({ready_js}) within {timeout:g} s")
            time.sleep(0.5)
        if then_js is not None:
            browser.evaluate(then_js)
        time.sleep(settle)
        data = browser.send("Page.captureScreenshot", session=browser.session, format="png")["data"]
    png_path.parent.mkdir(parents=True, exist_ok=True)
    png_path.write_bytes(base64.b64decode(data))
    return png_path


if __name__ == "__main__":  # pragma: no cover
    url, png = sys.argv[1], sys.argv[2]
    screenshot_url(url, png, ready_js=TENSORBOARD_READY, then_js=TENSORBOARD_FILTER, width=1500, height=1480,
                   settle=6, timeout=90)
