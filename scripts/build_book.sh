#!/usr/bin/env bash
# Set up, then execute every chapter and build the site into _build/html.
# Run size: IMPLICIT_BIAS_PROFILE=smoke|book|paper (default book).
# MathJax is served from the site (_static/mathjax, installed by scripts/setup.sh from npm);
# BOOK_MATHJAX_URL=<url of tex-chtml.js> loads it from that URL (a CDN) instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export IMPLICIT_BIAS_PROFILE=${IMPLICIT_BIAS_PROFILE:-book}
echo "building the book at run size: $IMPLICIT_BIAS_PROFILE"

config=_config.yml
if [ -n "${BOOK_MATHJAX_URL:-}" ]; then
  config=_build/_config.mathjax-url.yml
  .venv/bin/python - "$config" <<'PY'
import os, sys, yaml
cfg = yaml.safe_load(open("_config.yml"))
cfg["sphinx"]["config"]["mathjax_path"] = os.environ["BOOK_MATHJAX_URL"]
cfg["sphinx"]["config"]["html_static_path"] = []
yaml.safe_dump(cfg, open(sys.argv[1], "w"), sort_keys=False)
PY
  echo "MathJax from $BOOK_MATHJAX_URL"
elif [ ! -f _build/static/mathjax/tex-chtml.js ]; then
  echo "no local MathJax in _build/static/mathjax: install node/npm and rerun, or set BOOK_MATHJAX_URL" >&2
  exit 1
fi

# Every chapter notebook (as stored: no outputs, the Colab install cell first), in the order
# of _toc.yml, in one zip that the landing page links to.
.venv/bin/python - <<'PY'
import pathlib, zipfile, yaml
toc = yaml.safe_load(open("_toc.yml"))
files = [pathlib.Path(f"{c['file']}.ipynb") for part in toc["parts"] for c in part["chapters"]]
bundle = pathlib.Path("_build/bundle/implicit-bias-book-notebooks.zip")
bundle.parent.mkdir(parents=True, exist_ok=True)
with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as z:
    for f in files:
        if f.exists():
            z.writestr(zipfile.ZipInfo(f"implicit-bias-book/{f.as_posix()}", (2026, 1, 1, 0, 0, 0)),
                       f.read_bytes(), zipfile.ZIP_DEFLATED)
print(f"{bundle}: {len(z.namelist())} notebooks")
PY

# The chapters executed into the cache the build reads, several at a time: those whose
# code changed, or all of them when the library, requirements or run size changed.
.venv/bin/python scripts/execute_chapters.py

# --all: Sphinx only tracks source changes, not the run size, so always rebuild every page.
.venv/bin/jupyter-book build . --config "$config" --all -W -n --keep-going "$@"
echo "open _build/html/index.html"
