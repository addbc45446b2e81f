#!/usr/bin/env bash
# One GPU check (<= 8 minutes on one CUDA GPU); appends JSON records to benchmarks/results.jsonl.
# Without CUDA it prints one line and exits 0. See benchmarks/gpu_suite.py for the steps.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
py="${PYTHON:-$root/.venv/bin/python}"
[ -x "$py" ] || py="$(command -v python3)"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec timeout 480 "$py" "$here/gpu_suite.py" "$@"
