#!/usr/bin/env bash
# GPU figures in one short run: the cache benchmark (full pass vs cached hit pass of the shipped networks) at
# 1920x1080 display size on CUDA, in fp32 / fp16 / bf16 with channels-last, SS in mixed precision (its resolve in
# bf16, the default on a device with bf16 arithmetic), and fp16 compiled.
#   make gpu-bench                      # with the project's .venv
#   PYTHON=python3 OUT=dir bash scripts/gpu-bench.sh   # any Python with torch+CUDA, numpy and tqdm
# Each run prints its table and writes JSON to $OUT (default out/gpu).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUTDIR=${OUT:-out/gpu}
SIZE=${SIZE:-1920x1080}
REPEATS=${REPEATS:-50}
mkdir -p "$OUTDIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, torch.cuda.get_device_name())' || exit 1
bench() {  # NAME ARGS...: one bench-cache run, its table on stdout, its JSON in $OUTDIR/NAME.json
    local name=$1; shift
    echo "== reframe-blender bench-cache $* --size $SIZE --device cuda --repeats $REPEATS"
    timeout 300 "$PY" -m reframe_core.cli bench-cache "$@" --size "$SIZE" --device cuda --repeats "$REPEATS" \
        --json "$OUTDIR/$name.json" || echo "(exit $?)"
}
for model in ss extranet; do
    for precision in fp32 fp16 bf16; do
        bench "${model}_${precision}" --model "$model" --precision "$precision" --channels-last
    done
done
bench ss_mixed --model ss --precision mixed --channels-last
bench unet_fp16 --model unet --precision fp16 --channels-last
bench ss_fp16_compiled --model ss --precision fp16 --channels-last --compile
bench extranet_fp16_compiled --model extranet --precision fp16 --channels-last --compile
