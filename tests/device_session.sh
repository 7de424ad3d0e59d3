#!/usr/bin/env bash
# The CUDA path and the GPU bench in one call of the device tool (a lent GPU machine, whose
# time is short): tests/device_checks.py on a fresh bake, then tests/benchmark_gpu.py.
#
# Prepare here, from the template's root (the GPU machine has no cookiecutter and no network):
#   grep -qx '/.device/' .git/info/exclude || echo /.device/ >> .git/info/exclude
#   rm -rf .device && cookiecutter --no-input . -o .device/bake
# then run `bash tests/device_session.sh` there with carry [".device"] and timeout_s=560 (the
# caps below, 330 s and 200 s, fit inside it; about 4 and 1.5 minutes are expected). It uses
# that machine's python3 and torch, the package from src/ (as the generated GPU job keeps its
# image's torch). device_checks.py writes its results after every check, so a run stopped by
# its cap still returns what it found. Try it here first: `python3 -m tests.device_checks
# .device/bake/<project> /tmp/out --cpu` (PYTHONPATH as below) fails only on the CUDA checks.
# Results under $OUT: cuda-checks.{json,md} and gpu.{json,md} for docs/content/benchmarks/,
# with nvidia-smi.csv, packages.txt and both logs (8 files, the tool's limit).
set -uo pipefail
projects=(.device/bake/*/)
if [[ ${#projects[@]} -ne 1 || ! -d ${projects[0]}src ]]; then
    echo "no single bake in .device/bake/: prepare it as this file's header says" >&2
    exit 2
fi
project=${projects[0]%/}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/$project/src:$PWD"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv \
    | tee "$OUT/nvidia-smi.csv"
python3 -m pip list 2>/dev/null \
    | grep -i -E '^(torch|lightning|onnx|onnxruntime|onnxscript|nvidia-ml-py|safetensors) ' \
    | tee "$OUT/packages.txt"
timeout 330 python3 -m tests.device_checks "$project" "$OUT" 2>&1 | tee "$OUT/checks.log"
checks=${PIPESTATUS[0]}
timeout 200 python3 -m tests.benchmark_gpu "$project" "$OUT" 2>&1 | tee "$OUT/bench.log"
bench=${PIPESTATUS[0]}
echo "device_checks exit $checks, benchmark_gpu exit $bench"
exit $((checks || bench))
