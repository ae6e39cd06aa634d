#!/usr/bin/env bash
# The full preset of one generator + the whole audit on one CUDA GPU (issue 13 req. 6).
# Goal: done within 8 minutes on one H100/H200. Writes benchmarks/results/gpu_full.json.
#
#   bash benchmarks/gpu.sh            # ldm
#   bash benchmarks/gpu.sh flow --timeout 600
#
# Needs the package installed (README) and a CUDA build of torch; the judge network must be in
# the cache or reachable (CMR_AUDIT_JUDGE=/path/to/tiramisu_acdc_fp32.onnx on offline machines).
set -euo pipefail
cd "$(dirname "$0")/.."
gen="${1:-ldm}"
shift || true
exec python benchmarks/gpu_full.py --generator "$gen" "$@"
