"""Open every page of the built site in headless Chromium and check what a reader sees.

Usage: ``.venv/bin/python scripts/check_site.py [_build/html]`` after a build. Needs the
Debian packages ``chromium`` and ``chromium-driver`` and ``pip install selenium``.

For every page in _toc.yml it checks: the page loads with no severe browser-console
errors; every image has loaded (non-zero natural width); no empty output box (a widget
or an output area with nothing in it); chapters have their Colab launch button; and pages
with theorems or definitions show them numbered. Files a CDN serves (MathJax) are reported,
not failed, when the machine is offline. Prints one line per page; exits 1 if any page fails.
"""

from __future__ import annotations

import pathlib
import sys

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
return {images: imgs.length, broken: broken, empty: empty, widgets: widgets, launch: launch,
        proofs: proofs, title: document.title};
"""


def pages():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    yield toc["root"]
    for part in toc["parts"]:
        for chapter in part["chapters"]:
            yield chapter["file"]


def main(build: pathlib.Path) -> int:
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,2000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    failures = 0
    try:
        for page in pages():
            path = build / f"{page}.html"
            if not path.exists():
                print(f"FAIL {page}: not built")
                failures += 1
                continue
            uri = path.as_uri()
            driver.get(uri)
            WebDriverWait(driver, 60).until(lambda d, uri=uri: d.current_url == uri and d.execute_script(
                "return document.readyState") == "complete")
            info = driver.execute_script(CHECKS_JS)
            logs = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            offline = [m for m in logs if "ERR_NAME_NOT_RESOLVED" in m or "ERR_INTERNET_DISCONNECTED" in m]
            severe = [m for m in logs if m not in offline and not any(k in m for k in KNOWN)]
            problems = []
            if severe:
                problems.append(f"console errors {severe[:2]}")
            if info["broken"]:
                problems.append(f"broken images {info['broken'][:2]}")
            if info["empty"] or info["widgets"]:
                problems.append(f"{info['empty']} empty outputs, {info['widgets']} widget boxes")
            if page.startswith("chapters/") and not info["launch"]:
                problems.append("no Colab launch button")
            if any(not any(ch.isdigit() for ch in title) for title in info["proofs"]):
                problems.append(f"unnumbered theorem/definition {info['proofs']}")
            status = "FAIL" if problems else "ok  "
            failures += bool(problems)
            print(f"{status} {page}: {info['images']} figures, {len(info['proofs'])} numbered statements"
                  + (f", {len(offline)} CDN files unreachable (offline)" if offline else "")
                  + (f" — {'; '.join(problems)}" if problems else ""))
    finally:
        driver.quit()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "_build" / "html").resolve()))
