#!/usr/bin/env bash
# The GPU tier in one short script, for a lent GPU machine that cannot reach a package index.
# Carry the wheels it lacks in .whl/ (and sdists to build in .sdist/); see benchmarks/README.md.
# It runs `pytest -m gpu`, then the default recipe on the GPU and, for the ratio, on the CPU of the
# same machine (CUDA_VISIBLE_DEVICES=""), each under its own time limit. Logs go to $OUT (or ./gpu-out).
set -u
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site HF_HUB_OFFLINE=1 PATH=/tmp/site/bin:$PATH
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
for sdist in .sdist/*.tar.gz; do
  [ -e "$sdist" ] && python3 -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/site "$sdist"
done
nvidia-smi -L; python3 - <<'EOF'
import importlib.metadata as md, torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
print({d: md.version(d) for d in ("transformers", "trl", "peft", "accelerate", "datasets", "loopkit")})
EOF
timeout 200 python3 -m pytest -m gpu tests/test_gpu.py -p no:cacheprovider -rs --durations=5 2>&1 | tee "$OUT/pytest-gpu.log"
for where in gpu cpu; do
  [ "$where" = cpu ] && export CUDA_VISIBLE_DEVICES=""
  start=$(date +%s%N)
  timeout 110 loopkit run recipes/logic.yaml -o "/tmp/runs-$where" > "$OUT/logic-$where.log" 2>&1
  echo "logic.yaml on $where: rc $? in $(( ($(date +%s%N) - start) / 1000000 )) ms"
  tail -4 "$OUT/logic-$where.log"
done
