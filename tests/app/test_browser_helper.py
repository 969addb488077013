"""tests/browser.py: headless Chromium sees which <img> loaded and screenshots whole pages."""

import pytest
from browser import page_images, require_chromium, screenshot
from PIL import Image


@pytest.fixture(scope="module")
def chromium():
    return require_chromium()


def _page(folder, *, body_height=0):
    (folder / "figures").mkdir()
    Image.new("RGB", (64, 32), "red").save(folder / "figures" / "wide.png")
    Image.new("RGB", (20, 50), "blue").save(folder / "figures" / "tall.png")
    spacer = f'<div style="height:{body_height}px"></div>' if body_height else ""
    html = folder / "report.html"
    html.write_text(
        "<!doctype html><html><head><title>tiny report</title></head><body>"
        '<img src="figures/wide.png" alt="wide">'
        '<img src="figures/missing.png" alt="missing">'
        f"{spacer}"
        '<img src="figures/tall.png" alt="tall" loading="lazy">'
        "</body></html>"
    )
    return html


def test_page_images_flags_only_the_missing_figure(chromium, tmp_path):
    info = page_images(_page(tmp_path, body_height=3000), width=800)

    assert info["title"] == "tiny report"
    sizes = {img["src"]: (img["complete"], img["naturalWidth"], img["naturalHeight"]) for img in info["images"]}
    assert sizes == {
        "figures/wide.png": (True, 64, 32),
        "figures/missing.png": (True, 0, 0),
        # Lazy and far below the fold: loaded anyway.
        "figures/tall.png": (True, 20, 50),
    }
    assert len(info["console_errors"]) == 1 and "missing.png" in info["console_errors"][0]
    assert info["browser"] == chromium


def test_screenshot_captures_the_full_page_height(chromium, tmp_path):
    out = screenshot(_page(tmp_path, body_height=2500), tmp_path / "shots" / "report.png", width=640)

    assert out == tmp_path / "shots" / "report.png"
    with Image.open(out) as png:
        assert png.format == "PNG"
        assert png.width == 640
        assert png.height >= 2500  # a viewport is 800 px tall
        assert png.getpixel((10, 10))[:3] == (255, 0, 0)  # the red figure, top left


def test_missing_page_and_wrong_suffix_fail_before_starting_a_browser(tmp_path):
    with pytest.raises(FileNotFoundError, match="no HTML file"):
        page_images(tmp_path / "nope.html")
    with pytest.raises(ValueError, match=r"name the file \*\.png"):
        screenshot(_page(tmp_path), tmp_path / "shot.jpg")


def test_page_images_names_what_overflows_the_page_width(chromium, tmp_path):
    html = tmp_path / "wide.html"
    html.write_text("<!doctype html><html><head><title>w</title></head><body style='margin:0'>"
                    "<p>fits</p><table id='big' style='width:1500px'><tr><td>x</td></tr></table></body></html>")
    info = page_images(html, width=800)
    assert info["page_width"] <= 800 and info["document_width"] >= 1500
    assert any(o.startswith("table#big") for o in info["overflow"]), info["overflow"]
    html.write_text("<!doctype html><html><head><title>n</title></head><body><p>narrow</p></body></html>")
    assert page_images(html, width=800)["overflow"] == []
