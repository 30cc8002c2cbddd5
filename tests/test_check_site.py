"""The browser check (scripts/check_site.py) fails a page with a table or output clipped on
the right, an output line over 100 characters, or a figure without real alt text, and
passes a page without them: its predicates on hand-made measurements, and (where Chromium
and chromedriver are installed) the whole check on a small bad and a small good page."""

from __future__ import annotations

import importlib.util
import pathlib
import shutil

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("check_site", ROOT / "scripts" / "check_site.py")
check_site = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_site)


def test_clipped_boxes():
    boxes = [{"what": "div.cell_output", "scroll": 700, "client": 700},
             {"what": "table.dataframe", "scroll": 1200, "client": 700},
             {"what": "pre", "scroll": 701, "client": 700},  # a rounding pixel is not clipping
             {"what": "div.hidden", "scroll": 50, "client": 0}]
    assert [b.split(" ")[0] for b in check_site.clipped(boxes)] == ["table.dataframe"]
    assert not check_site.clipped(boxes[:1])


def test_long_output_lines():
    ok = "verdict PASSED: a claim\n" + "x" * 100 + "\n" + "y" * 100 + "   \n"
    assert not check_site.long_lines([ok])
    bad = check_site.long_lines([ok, "short\n" + "z" * 101])
    assert len(bad) == 1 and bad[0].startswith("101 chars")


HASHED = "3f5a0c9e1b2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f2a4c6e8b0d2f4a.png"  # myst-nb names outputs so


@pytest.mark.parametrize("alt, ok", [
    ("Three line plots of the normalized margin against the step, one per norm.", True),
    (None, False), ("", False), ("   ", False),
    ("3f5a0c9e1b2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f2a4c6e8b0d2f4a.png", False),
    ("3f5a0c9e1b2d4f6a8c0e2b4d6f8a0c2e", False), ("figure.svg", False)])
def test_missing_alt(alt, ok):
    image = {"src": "../_images/" + HASHED, "alt": alt}
    assert (not check_site.missing_alt([image])) == ok


# A page as the book's theme lays it out: an article column 600 px wide with outputs in it.
PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<link rel="icon" href="data:,"><style>
article {{ width: 600px; font-family: sans-serif; }}
.cell_output {{ overflow-x: auto; }}
pre {{ overflow-x: auto; font-size: 13px; }}
</style></head><body><main><article class="bd-article">
<h1>{title}</h1>
<div class="cell_output"><div class="output text_html">{table}</div></div>
<div class="cell_output"><div class="output stream"><pre>{text}</pre></div></div>
<figure><img src="{png}" alt="{alt}"><figcaption>Fig. 1 A caption.</figcaption></figure>
</article></main></body></html>"""
PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
WIDE = "<table><tr>" + "".join(f"<td>column_{i}_without_spaces</td>" for i in range(12)) + "</tr></table>"
NARROW = "<table><tr><td>1.5</td><td>2.5</td></tr></table>"


@pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")),
                    reason="needs Chromium and chromedriver (apt-get install chromium chromium-driver)")
def test_the_browser_check_fails_a_bad_page_and_passes_a_good_one(tmp_path):
    import base64

    name = HASHED
    (tmp_path / name).write_bytes(base64.b64decode(PNG))
    (tmp_path / "good.html").write_text(PAGE.format(
        title="good", table=NARROW, text="verdict PASSED: a claim\n  a number 1.0", png=name,
        alt="A single grey pixel standing in for a figure."))
    (tmp_path / "bad.html").write_text(PAGE.format(
        title="bad", table=WIDE, text="x" * 140, png=name, alt=name))
    server, base = check_site.serve(tmp_path)
    driver = check_site.browser()
    try:
        good, _ = check_site.check_page(driver, base, "good")
        bad, _ = check_site.check_page(driver, base, "bad")
    finally:
        driver.quit()
        server.shutdown()
    assert good == []
    assert any("wider than the page shows" in p and "column_0" in p for p in bad), bad
    assert any("output lines over 100" in p for p in bad), bad
    assert any("without alt text" in p for p in bad), bad
