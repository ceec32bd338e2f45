#!/usr/bin/env bash
# The GPU proof, in one run of under 8 minutes on a machine with one NVIDIA GPU:
#   1. the GPU checks (tests/gpu_checks.py): auto half precision against float32 per family,
#      batched against single, out-of-memory halving forced with
#      torch.cuda.set_per_process_memory_fraction, the GPU lease, and the workflow end to
#      end with 2 shards on the GPU (a real local Neo4j, as the tests start it);
#   2. bench/embed_gpu.py for ESM-2 650M: ours against the seed's path, fraction of peak.
#
# It uses what the working tree carries: the .venv (PYTHON overrides it) with a CUDA torch,
# and the built Neo4j launcher (make bootstrap). It installs nothing: the GPU machine may
# reach no package index. Results go to $OUT (default: gpu-check/) for BENCHMARKS.md.
#
#   bench/gpu_check.sh                 # everything
#   PEAK_TFLOPS=989 bench/gpu_check.sh # the GPU's dense bf16 peak (H100 SXM default)
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-gpu-check}
PEAK_TFLOPS=${PEAK_TFLOPS:-989}
mkdir -p "$OUT"

"$PYTHON" - <<'EOF' || { echo "gpu_check: no usable CUDA torch in $PYTHON" >&2; exit 2; }
import torch
assert torch.cuda.is_available(), f"torch {torch.__version__} sees no CUDA device"
props = torch.cuda.get_device_properties(0)
print(f"device: {props.name}, {props.total_memory / 2**30:.0f} GiB, torch {torch.__version__}, "
      f"CUDA {torch.version.cuda}")
EOF
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/device.txt"

status=0
timeout 300 "$PYTHON" -m pytest tests/gpu_checks.py -q -p no:cacheprovider \
  --junitxml="$OUT/gpu_checks.xml" 2>&1 | tee "$OUT/gpu_checks.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

timeout 180 "$PYTHON" bench/embed_gpu.py --models esm2_650m --limit 1000 \
  --peak-tflops "$PEAK_TFLOPS" 2>&1 | tee "$OUT/embed_gpu.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "gpu_check: $([ $status -eq 0 ] && echo passed || echo FAILED); logs in $OUT/"
exit $status
