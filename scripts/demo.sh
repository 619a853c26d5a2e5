#!/usr/bin/env bash
# `make demo`: the largest end-to-end piece that works today, on the bundled example data.
# (The full demo, segmenting the examples with a shipped model, replaces this when it lands.)
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
"$build/umamba" info
