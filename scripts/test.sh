#!/usr/bin/env bash
# Set up, then run the unit tests and every chapter (at the smoke size) with nbval.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export IMPLICIT_BIAS_PROFILE=${IMPLICIT_BIAS_PROFILE:-smoke}
.venv/bin/python -m pytest tests chapters --nbval-lax --nbval-current-env -q "$@"
