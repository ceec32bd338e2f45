#!/usr/bin/env bash
# The GPU proof, in one run of under 8 minutes on a bare machine with one NVIDIA GPU: a CUDA
# torch and transformers installed, but no snakemake, Neo4j driver, Java or Neo4j, and no
# package registry in reach.
#   1. the GPU checks (tests/gpu_checks.py): auto half precision against float32 per family,
#      batched against single, packed (varlen_attn) against padded, out-of-memory halving
#      forced with torch.cuda.set_per_process_memory_fraction, the GPU lease, and one embed
#      job (steps.embed under lease_gpu) on an exported shard;
#   2. bench/embed_gpu.py per model: ours against the plain transformers loop at its best
#      budget and the seed's path, with the device's measured matrix rate; then ESM-2 650M
#      with model.compile: true, compilation included, to decide what `auto` should do.
#
# Python: the checkout's .venv where it has a CUDA torch, else the machine's python3 (PYTHON
# overrides). The packages the machine lacks come from wheels carried in $WHEELS (default
# .whl/, an ignored folder; fill it here with `pip download --no-deps -d .whl ...` for the
# lock's transformers, neo4j, jsonschema, referencing, jsonschema-specifications, rpds-py
# and pytz), installed with --no-index into a scratch folder, never over the machine's own.
# Results go to $OUT (default gpu-check/) as they come.
#
#   bench/gpu_check.sh                                      # everything
#   FASTA=.gl/proteome.fasta PEAK_TFLOPS=989 bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-check}
WHEELS=${WHEELS:-.whl}
PEAK_TFLOPS=${PEAK_TFLOPS:-989}
MODELS=${MODELS:-esm2_650m,esmc_600m,prott5_xl}
FASTA=${FASTA:-tests/data/synechocystis_every7th.fasta}
mkdir -p "$OUT"

if [ -z "${PYTHON:-}" ]; then
  PYTHON=python3
  if [ -x .venv/bin/python ] && .venv/bin/python -c 'import torch; assert torch.cuda.is_available()' \
      2>/dev/null; then
    PYTHON=.venv/bin/python
  fi
fi
if compgen -G "$WHEELS/*.whl" >/dev/null; then
  site=$(mktemp -d /tmp/protembed-site.XXXX)
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --target "$site" "$WHEELS"/*.whl || { echo "gpu_check: could not install $WHEELS" >&2; exit 2; }
  export PYTHONPATH="$site:$PWD/src:$PWD/tests${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD/src:$PWD/tests${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1

"$PYTHON" - <<'EOF' 2>&1 | tee "$OUT/device.txt" || { echo "gpu_check: no usable CUDA torch in $PYTHON" >&2; exit 2; }
import torch, transformers
assert torch.cuda.is_available(), f"torch {torch.__version__} sees no CUDA device"
props = torch.cuda.get_device_properties(0)
print(f"device: {props.name}, {props.total_memory / 2**30:.0f} GiB, torch {torch.__version__}, "
      f"CUDA {torch.version.cuda}, transformers {transformers.__version__}")
EOF
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >>"$OUT/device.txt" 2>&1

status=0
timeout 180 "$PYTHON" -m pytest tests/gpu_checks.py -q -p no:cacheprovider \
  --junitxml="$OUT/gpu_checks.xml" 2>&1 | tee "$OUT/gpu_checks.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

timeout 240 "$PYTHON" bench/embed_gpu.py --models "$MODELS" --fasta "$FASTA" --limit 1500 \
  --seed-proteins 150 --peak-tflops "$PEAK_TFLOPS" 2>&1 | tee "$OUT/embed_gpu.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

# Whether model.compile pays over a shard of 1,000 proteins, compilation included.
timeout 120 "$PYTHON" bench/embed_gpu.py --models esm2_650m --fasta "$FASTA" --limit 1000 \
  --seed-proteins 20 --plain-budgets 65536 --compile --peak-tflops "$PEAK_TFLOPS" 2>&1 \
  | tee "$OUT/embed_gpu_compile.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "gpu_check: $([ $status -eq 0 ] && echo passed || echo FAILED); logs in $OUT/"
exit $status
