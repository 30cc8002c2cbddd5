#!/usr/bin/env bash
# Set up, then run the unit tests and every chapter (at the smoke size) with nbval.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export IMPLICIT_BIAS_PROFILE=${IMPLICIT_BIAS_PROFILE:-smoke}
# Workers split the cores: one pytest worker per core (TEST_WORKERS overrides), each with
# its share of the threads; --dist loadscope keeps a notebook's cells in order in one kernel,
# and the chapters come first so that the longest ones do not start last.
cores=$(nproc)
workers=${TEST_WORKERS:-$cores}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( cores / workers > 0 ? cores / workers : 1 ))}
.venv/bin/python -m pytest chapters tests --nbval-lax --nbval-current-env -q \
  -n "$workers" --dist loadscope "$@"
