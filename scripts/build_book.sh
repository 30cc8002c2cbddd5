#!/usr/bin/env bash
# Set up, then execute every chapter and build the site into _build/html.
# Run size: IMPLICIT_BIAS_PROFILE=smoke|book|paper (default book).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export IMPLICIT_BIAS_PROFILE=${IMPLICIT_BIAS_PROFILE:-book}
echo "building the book at run size: $IMPLICIT_BIAS_PROFILE"
# --all: Sphinx only tracks source changes, not the run size, so always rebuild every page.
.venv/bin/jupyter-book build . --all -W -n --keep-going "$@"
echo "open _build/html/index.html"
