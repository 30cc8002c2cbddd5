#!/usr/bin/env bash
# Create .venv (if missing) and install the book's requirements and the library (editable);
# install MathJax from npm (package-lock.json) for the site and the TeX checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements.txt
.venv/bin/python -m pip install --quiet --no-deps -e .

# MathJax: the site serves it from _static/mathjax (no CDN), and tests/test_sources.py parses
# every formula with it. npm ci runs again only when package-lock.json has changed.
if command -v npm >/dev/null 2>&1; then
  if ! cmp -s package-lock.json node_modules/.installed-package-lock.json; then
    npm ci --no-audit --no-fund --silent
    cp package-lock.json node_modules/.installed-package-lock.json
  fi
  rm -rf _build/static/mathjax
  mkdir -p _build/static
  cp -R node_modules/mathjax-full/es5 _build/static/mathjax
else
  echo "setup: npm not found: no local MathJax (the TeX checks skip; a build needs BOOK_MATHJAX_URL)" >&2
fi
