#!/usr/bin/env bash
# Every GPU check in one run, on a CUDA machine: the device tests, then `sr bench` of the default x4
# model and RRDBNet (23 blocks, random weights) on 2048x2048 inputs in fp16, bf16 and fp32. Needs
# torch, click, rich, safetensors, pillow, opencv and pytest in $PY; nothing is installed. Writes
# tests.txt and bench_<precision>.json to $OUT (default: gpu_check_out).
#
#   on a CUDA machine: OUT=DIR bash benchmarks/gpu_check.sh
#   dry run on a CPU:  OUT=/tmp/gpu PY=.venv/bin/python DEVICE=cpu PRECISIONS=fp32 SIZE=64x64 bash benchmarks/gpu_check.sh
set -u
OUT=${OUT:-gpu_check_out}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
SIZE=${SIZE:-2048x2048}
PRECISIONS=${PRECISIONS:-fp16 bf16 fp32}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$OUT"
status=0

"$PY" -c "import torch; print('torch', torch.__version__, '| cuda', torch.cuda.is_available() and torch.cuda.get_device_name(0))"

SR_TEST_DEVICE=$DEVICE "$PY" -m pytest -q -rs -p no:cacheprovider \
    tests/test_device.py tests/test_upscale.py tests/test_tiling.py 2>&1 | tee "$OUT/tests.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

weights=$(mktemp -d)  # 67 MB of random RRDBNet weights: kept out of $OUT, which holds the results only
trap 'rm -rf "$weights"' EXIT
rrdbnet=$("$PY" -c "import sys, pathlib; sys.path.insert(0, 'benchmarks'); from reference_loop import build
print(build('rrdbnet', pathlib.Path('$weights'), 4))") || exit 1
for precision in $PRECISIONS; do
    echo "sr bench --precision $precision"
    "$PY" -m sr_cli bench --device "$DEVICE" --precision "$precision" --model default --model "$rrdbnet" \
        --size "$SIZE" --scale 4 --repeat 3 --warmup 1 --json > "$OUT/bench_$precision.json" || status=1
    "$PY" -c "import json, os, sys
for r in json.load(open(sys.argv[1]))['results']:
    print(os.path.basename(r['model']), r['size'], r['precision'], f\"{r['median_s']:.3f} s\",
          f\"{r['output_mp_per_s']:.2f} MP/s\", f\"{r['cuda_max_allocated_mb'] or 0:.0f} MB CUDA\")" \
        "$OUT/bench_$precision.json" || status=1
done
exit $status
