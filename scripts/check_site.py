"""Open every page of the built site in headless Chromium, offline, and check what a reader sees.

Usage: ``.venv/bin/python scripts/check_site.py [BUILD_DIR] [--book DIR] [--screenshots DIR]``
after a build (BUILD_DIR defaults to DIR/_build/html, DIR to this repository). Needs the
Debian packages ``chromium`` and ``chromium-driver`` and ``pip install selenium``.

The site is served from 127.0.0.1 by a local HTTP server, and the browser is cut off from
every other host: ``--proxy-server=127.0.0.1:9`` sends all non-loopback requests to a closed
port and ``--host-resolver-rules`` resolves no name but localhost. The check first proves
the block (a fetch of the MathJax CDN must fail), so a page that only works online fails.

For every page in _toc.yml it checks: no severe browser-console errors; every image has
loaded; no empty output box or widget area; chapters have their Colab launch button;
theorems and definitions are numbered; MathJax (served by the site itself) has typeset
every formula, with no MathJax error (``mjx-merror``, "Math input error"); no unrendered
maths left in the page text (``$…$``, ``\\(…\\)``, ``\\[…\\]``, ``\\begin{…}`` or a bare
TeX macro, outside code); no control character in the page text or in a formula's TeX; no
output area, output ``pre`` or table wider than its box (clipped on the right, or scrolling
sideways), and no page wider than its text column; no output line longer than
``MAX_LINE`` (100) characters; and every figure (``img`` in the article) has real alt text,
not an empty one, a file name or a hash.
It saves full-page screenshots of the landing page, the main-result page (chapters/08_hybrid)
and the status page into the screenshots folder (default: BUILD_DIR/../site-check).
Prints one line per page; exits 1 if any page fails.
"""

from __future__ import annotations

import argparse
import base64
import functools
import http.server
import pathlib
import re
import sys
import threading

import yaml
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

ROOT = pathlib.Path(__file__).resolve().parent.parent
#: Console errors that come from Jupyter Book 1's theme and do not affect the page: the
#: sphinx-thebe configuration script is emitted twice on every page, and the pydata theme
#: logs its reset of an unset light/dark mode on a first visit.
KNOWN = ("Identifier 'THEBE_JS_URL' has already been declared", "Got invalid theme mode", "favicon")
#: Pages whose screenshots are saved, by file name (None: the toc's root).
SCREENSHOTS = {"landing": None, "main-result": "chapters/08_hybrid", "status": "status"}
OFFLINE_PROBE = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"
BLOCK_FLAGS = (
    "--proxy-server=127.0.0.1:9",  # every request that is not to loopback goes to a closed port
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",  # no name resolves
    "--disable-background-networking", "--no-first-run", "--no-default-browser-check",
)

#: Waits for MathJax's first typesetting (if the page has maths) and reports what it did.
MATHJAX_JS = """
const done = arguments[arguments.length - 1];
const spans = document.querySelectorAll('span.math, div.math').length;
const scripts = [...document.scripts].map(s => s.src).filter(s => /mathjax/i.test(s));
if (!spans) { done({spans: 0}); return; }
const start = Date.now();
(function poll() {
  const mj = window.MathJax;
  if (mj && mj.startup && mj.startup.promise) {
    mj.startup.promise
      .then(() => done({spans: spans, loaded: true, version: mj.version, src: scripts,
                        tex: Array.from(mj.startup.document.math, (item) => item.math),
                        containers: document.querySelectorAll('mjx-container').length}))
      .catch((e) => done({spans: spans, loaded: true, src: scripts, error: String(e)}));
  } else if (Date.now() - start > 30000) {
    done({spans: spans, loaded: false, src: scripts});
  } else {
    setTimeout(poll, 100);
  }
})();
"""

CHECKS_JS = """
const imgs = [...document.querySelectorAll('article img, main img')];
const broken = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src);
const empty = [...document.querySelectorAll('.cell_output, .output')]
    .filter(o => o.innerText.trim() === '' && o.querySelectorAll('img, svg, table').length === 0).length;
const widgets = document.querySelectorAll('.jupyter-widgets, .widget-area').length;
const launch = [...document.querySelectorAll('a')]
    .some(a => (a.href || '').includes('colab.research.google.com'));
const proofs = [...document.querySelectorAll('.proof .admonition-title, div.proof p.admonition-title')]
    .map(t => t.innerText.trim());
const merrors = [...document.querySelectorAll('mjx-merror')]
    .map(e => e.getAttribute('data-mjx-error') || e.textContent);
// The text a reader reads, without code, outputs printed as code, and typeset maths.
const main = (document.querySelector('main') || document.body).cloneNode(true);
main.querySelectorAll('pre, code, script, style, mjx-container, .highlight, .MathJax_Preview')
    .forEach(e => e.remove());
return {images: imgs.length, broken: broken, empty: empty, widgets: widgets, launch: launch,
        proofs: proofs, merrors: merrors, prose: main.textContent,
        text: document.body.textContent, title: document.title};
"""

#: Maths a reader would see as TeX source: delimiters, environments and macros left in prose.
UNRENDERED = re.compile(r"\$[^$\n]+\$|\\\(|\\\)|\\\[|\\\]|\\begin\{|\\[A-Za-z]{2,}")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # \t \n \r are layout in HTML text
#: The longest output line a page may show (what fits an output box without scrolling).
MAX_LINE = 100
#: Alt text that is no description: a file name (as myst-nb names an output, by its hash) or a hash.
NO_ALT = re.compile(r"\s*|.*\.(png|jpe?g|gif|svg|pdf|webp)|[0-9a-f]{12,}", re.IGNORECASE)

#: What a reader sees of outputs, tables and figures: each box that can be too narrow for its
#: content (its scrollWidth against its clientWidth), the text of every output ``pre``, and
#: every figure's alt text.
LAYOUT_JS = """
const describe = (e) => e.tagName.toLowerCase() + (e.className ? '.' + String(e.className).trim()
    .split(/\\s+/).join('.') : '') + ' "' + e.textContent.trim().replace(/\\s+/g, ' ').slice(0, 50) + '"';
const article = document.querySelector('article') || document.querySelector('main') || document.body;
const boxes = [article, ...article.querySelectorAll(
    '.cell_output, .cell_output .output, .cell_output pre, .cell_output table, ' +
    '.pst-scrollable-table-container, .table-wrapper, table')]
  .filter((e) => e.offsetParent !== null)
  .map((e) => ({what: describe(e), scroll: e.scrollWidth, client: e.clientWidth}));
const outputs = [...article.querySelectorAll('.cell_output pre')].map((p) => p.textContent);
const images = [...article.querySelectorAll('img')].map((i) => ({
  src: i.getAttribute('src') || '', alt: i.hasAttribute('alt') ? i.getAttribute('alt') : null}));
return {boxes: boxes, outputs: outputs, images: images};
"""


def clipped(boxes: list[dict], slack: int = 1) -> list[str]:
    """The boxes whose content is wider than they are (``scroll`` > ``client``): a table or an
    output cut off on the right, or one the reader must scroll sideways."""
    return [f"{b['what']} ({b['scroll']} > {b['client']} px)" for b in boxes
            if b["client"] > 0 and b["scroll"] > b["client"] + slack]


def long_lines(outputs: list[str], limit: int = MAX_LINE) -> list[str]:
    """Output lines longer than ``limit`` characters (each shortened, with its length)."""
    return [f"{len(line)} chars: {line[:60]}…" for text in outputs for line in text.splitlines()
            if len(line.rstrip()) > limit]


def missing_alt(images: list[dict]) -> list[str]:
    """Images without real alt text: none, an empty one, a file name or a hash."""
    bad = []
    for image in images:
        alt, name = image.get("alt"), image["src"].rsplit("/", 1)[-1]
        if alt is None or NO_ALT.fullmatch(alt) or alt.strip() == name:
            bad.append(f"{name or image['src']} (alt {alt!r})")
    return bad


def pages(book: pathlib.Path) -> list[str]:
    toc = yaml.safe_load((book / "_toc.yml").read_text())
    return [toc["root"], *(c["file"] for part in toc.get("parts", []) for c in part["chapters"])]


def serve(build: pathlib.Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve the built site on 127.0.0.1 (a free port) from a background thread."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(build)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def browser() -> webdriver.Chrome:
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1600", *BLOCK_FLAGS):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def network_blocked(driver: webdriver.Chrome, base: str) -> str:
    """Fail unless the browser cannot reach the outside (returns how the probe failed)."""
    driver.get(f"{base}/")
    outcome = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {mode: 'no-cors'}).then(() => done('reached'), e => done(String(e)));",
        OFFLINE_PROBE)
    driver.get_log("browser")  # drop the probe's own console error
    if outcome == "reached":
        raise SystemExit(f"the browser reached {OFFLINE_PROBE}: the network is not blocked")
    return outcome


def screenshot(driver: webdriver.Chrome, path: pathlib.Path) -> None:
    """The whole page (up to 16,000 px tall), as a reader scrolling through it sees it."""
    height = min(int(driver.execute_script("return document.documentElement.scrollHeight")), 16000)
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": 1280, "height": height, "scale": 1}})
    path.write_bytes(base64.b64decode(shot["data"]))


def check_page(driver: webdriver.Chrome, base: str, page: str) -> tuple[list[str], str]:
    url = f"{base}/{page}.html"
    driver.get(url)
    WebDriverWait(driver, 60).until(lambda d: d.current_url == url and d.execute_script(
        "return document.readyState") == "complete")
    driver.set_script_timeout(60)
    math = driver.execute_async_script(MATHJAX_JS)
    info = driver.execute_script(CHECKS_JS)
    layout = driver.execute_script(LAYOUT_JS)
    logs = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    # a file from another host: the page needs the network (blocked here, as for a reader offline)
    external = [m for m in logs if re.match(r"(https?:)?//", m) and not m.startswith(base)]
    severe = [m for m in logs if m not in external and not any(k in m for k in KNOWN)]
    problems = []
    if severe:
        problems.append(f"console errors {severe[:2]}")
    if external:
        problems.append(f"needs the network: {[m.split(' ')[0] for m in external][:3]}")
    if info["broken"]:
        problems.append(f"broken images {info['broken'][:2]}")
    if info["empty"] or info["widgets"]:
        problems.append(f"{info['empty']} empty outputs, {info['widgets']} widget boxes")
    if page.startswith("chapters/") and not info["launch"]:
        problems.append("no Colab launch button")
    if any(not any(ch.isdigit() for ch in title) for title in info["proofs"]):
        problems.append(f"unnumbered theorem/definition {info['proofs']}")
    if math["spans"] and not math.get("loaded"):
        problems.append(f"MathJax did not load (scripts {math.get('src')}): "
                        f"{math['spans']} formulas shown as TeX")
    elif math.get("error"):
        problems.append(f"MathJax failed: {math['error']}")
    elif math["spans"] and any(not s.startswith(base) for s in math.get("src", [])):
        problems.append(f"MathJax not served by the site: {math['src']}")
    if info["merrors"] or "Math input error" in info["text"]:
        problems.append(f"MathJax errors {info['merrors'][:3] or ['Math input error']}")
    if leftovers := UNRENDERED.findall(info["prose"]):
        problems.append(f"unrendered maths in the text {sorted(set(leftovers))[:4]}")
    bad = sorted({repr(c) for c in CONTROL.findall(info["text"] + "".join(math.get("tex", [])))})
    if bad:
        where = [t for t in math.get("tex", []) if CONTROL.search(t)]
        problems.append(f"control characters {bad} in the page"
                        + (f" (in the TeX of {where[:2]})" if where else ""))
    if wide := clipped(layout["boxes"]):
        problems.append(f"{len(wide)} boxes wider than the page shows {wide[:3]}")
    if lines := long_lines(layout["outputs"]):
        problems.append(f"{len(lines)} output lines over {MAX_LINE} characters {lines[:2]}")
    if alts := missing_alt(layout["images"]):
        problems.append(f"{len(alts)} figures without alt text {alts[:2]}")
    summary = (f"{info['images']} figures, {len(info['proofs'])} numbered statements, "
               f"{math.get('containers', 0)}/{math['spans']} formulas typeset")
    return problems, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("build", nargs="?", type=pathlib.Path,
                        help="the built site (default BOOK/_build/html)")
    parser.add_argument("--book", type=pathlib.Path, default=ROOT, help="the book's folder (its _toc.yml)")
    parser.add_argument("--screenshots", type=pathlib.Path, help="default: BUILD/../site-check")
    args = parser.parse_args(argv)
    book = args.book.resolve()
    build = (args.build or book / "_build" / "html").resolve()
    shots = (args.screenshots or build.parent / "site-check").resolve()
    shots.mkdir(parents=True, exist_ok=True)
    toc = pages(book)
    wanted = {name: page or toc[0] for name, page in SCREENSHOTS.items()}

    server, base = serve(build)
    driver = browser()
    failures = 0
    try:
        print(f"serving {build} at {base}; browser offline: fetch({OFFLINE_PROBE}) -> "
              f"{network_blocked(driver, base)}")
        for page in toc:
            if not (build / f"{page}.html").exists():
                print(f"FAIL {page}: not built")
                failures += 1
                continue
            problems, summary = check_page(driver, base, page)
            for name, wanted_page in wanted.items():
                if page == wanted_page:
                    screenshot(driver, shots / f"{name}.png")
                    summary += f", screenshot {shots / name}.png"
            failures += bool(problems)
            print(f"{'FAIL' if problems else 'ok  '} {page}: {summary}"
                  + (f" — {'; '.join(problems)}" if problems else ""))
    finally:
        driver.quit()
        server.shutdown()
    print(f"{failures} of {len(toc)} pages fail")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
