#!/usr/bin/env bash
# One check of o1 on a GPU machine, in at most 8 minutes, written to one log.
#
# Fill .device/ on a host with network first (wheels the GPU image lacks, and a quickstart
# workdir's config.json and latents/ for the training loop):
#
#     bash benchmarks/device_wheels.sh [SOURCE_WORKDIR]
#
# then, on the GPU machine, from the repo root, with `.device` carried beside the working tree
# (about 45 MiB of the 64 MiB a call may carry):
#
#     bash benchmarks/device_check.sh
#
# The log goes to $OUT/device_check.log where $OUT is set, else ./device_check.log, and is also
# printed. Steps, each under its own timeout so that one failing or hanging step never stops
# the later ones (the timeouts add up to 475 s, and a killed step gets 5 s more):
#   1. nvidia-smi; python, jax, flax versions; jax.devices(); o1's training path imports
#   2. installs the wheels into a fresh $TMPDIR/o1deps.PID, and o1 from the working tree
#      (the carried o1 wheel only if that build fails), on PYTHONPATH
#   3. pytest on the GPU: tests/test_attention.py (cuDNN against xla on every task's rows),
#      then tests/test_model.py while the limit allows
#   4. o1.benchmarks.train_step on small with model.attention=auto (cuDNN on the GPU), with
#      MFU and the GPU's peak memory
#   5. the real `o1 train` loop on a copy of .device/workdir (o1.benchmarks.train_loop: the
#      host ceiling with 4 loader workers, the real loop against the bare step)
#   6. o1.benchmarks.train_step on large (auto)
# and a table of each step's exit status and seconds at the end (124: timed out).
#
# Environment:
#   JAX_PLATFORMS           default cuda; cpu for a dry run on a machine without a GPU
#   DEVICE_CHECK_QUICK=1    tiny configs and a 20 s loop (a dry run on CPU)
#   DEVICE_CHECK_WHEELS     the wheel directory (default .device/wheels); a dry run on another
#                           Python points it at wheels for that Python
#   DEVICE_CHECK_WORKDIR    the workdir to copy for the loop (default .device/workdir)
#   DEVICE_CHECK_LOOP_SECONDS  how long the real loop trains (default 30; 20 when quick); the
#                           step's limit is 60 s more, for o1.benchmarks.train_loop's loader,
#                           host-ceiling and bare-step runs and their compiles
#   DEVICE_CHECK_LOOP_ARGS  more arguments of o1.benchmarks.train_loop (default
#                           --workers 0 4 --ceiling-steps 200; --workers 0 --ceiling-steps 20
#                           when quick)
#   DEVICE_CHECK_TIMEOUT_SCALE multiplies every timeout (default 1; a dry run on a loaded CPU
#                           compiles several times slower than the GPU machine's 16 cores)
#   PYTHON                  the interpreter (default python3)
set -uo pipefail  # no -e: a failing step is logged and the next one runs

cd "$(dirname "$0")/.."
repo=$PWD
python=${PYTHON:-python3}
quick=${DEVICE_CHECK_QUICK:-0}
wheels=${DEVICE_CHECK_WHEELS:-.device/wheels}
workdir_source=${DEVICE_CHECK_WORKDIR:-.device/workdir}
log=${OUT:+$OUT/}device_check.log
scratch=${TMPDIR:-/tmp}
deps=$scratch/o1deps.$$
work=$scratch/o1check.$$

export JAX_PLATFORMS=${JAX_PLATFORMS:-cuda}
export PYTHONUNBUFFERED=1
# `python -m` would put the repo root first on sys.path, and its o1/ (without o1.train, which
# pyproject maps from train/) would hide the installed package.
export PYTHONSAFEPATH=1
export PYTHONPATH=$deps${PYTHONPATH:+:$PYTHONPATH}

# One train_step run per (config, attention), each under its own limit, so a slow compile
# costs only its own row: "config attention seconds". On the H100 image (2026-11-28) a
# compile takes tens of seconds (quickstart's train_step did not finish in 30 s, medium's
# model init not in 55 s), so the runs come in order of what they tell: small (the MFU bar at
# 77M), the real loop, large (the 1B bar), then the rest while time is left.
if [[ $quick == 1 ]]; then
  step_runs=("tiny xla 30" "tiny cudnn 30" "tiny auto 30"); steps=2
  loop_seconds=${DEVICE_CHECK_LOOP_SECONDS:-20}; loop_batch=2; log_every=1
  loop_args=${DEVICE_CHECK_LOOP_ARGS:---workers 0 --ceiling-steps 20}
  test_limit=60
else
  step_runs=("small auto 110" "large auto 135"); steps=5
  loop_seconds=${DEVICE_CHECK_LOOP_SECONDS:-30}; loop_batch=32; log_every=20
  loop_args=${DEVICE_CHECK_LOOP_ARGS:---workers 4 --ceiling-steps 200}
  test_limit=60
fi
# Compiled programs persist in /tmp, which a warm machine keeps between calls: a second call
# skips the compiles the first one finished.
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/o1-jax-cache}
scale=${DEVICE_CHECK_TIMEOUT_SCALE:-1}

summary=()
# step NAME SECONDS COMMAND...: runs COMMAND under `timeout`, logs its exit status and time.
step() {
  local name=$1 limit=$(($2 * scale)) start=$SECONDS rc
  shift 2
  echo
  echo "=== $name (timeout ${limit} s) $(date -u +%H:%M:%S)"
  echo "\$ $*"
  # A child bash runs it, so that COMMAND may be one of the functions below. SIGINT, not TERM,
  # at the limit: pytest then prints what failed so far, and Python where it was stuck.
  timeout -s INT -k 5 "$limit" bash -c '"$@"' bash "$@"
  rc=$?
  # 124: stopped at the limit; 137: killed 5 s after that.
  echo "=== $name: exit $rc$([[ $rc == 124 || $rc == 137 ]] && echo ' (timed out)')," \
    "$((SECONDS - start)) s"
  summary+=("$(printf '%-34s exit %3d  %4d s' "$name" "$rc" $((SECONDS - start)))")
}

install_deps() {
  rm -rf "$deps" "$work"
  mkdir -p "$work"
  shopt -s nullglob
  local others=() wheel
  for wheel in "$wheels"/*.whl; do
    [[ $(basename "$wheel") == o1-* ]] || others+=("$wheel")
  done
  (( ${#others[@]} )) || { echo "no wheels in $wheels: run benchmarks/device_wheels.sh"; return 1; }
  local pip=("$python" -m pip install -q --no-index --no-deps --no-compile
             --disable-pip-version-check --target "$deps")
  # o1 from the working tree, so the check runs the code that travelled with it, built by the
  # image's setuptools from a copy (a build in place would leave build/ and o1.egg-info/).
  tar -C "$repo" -c --exclude=./.device --exclude=./.git --exclude=./.venv \
    --exclude='*/__pycache__' . | { mkdir "$work/src" && tar -C "$work/src" -x; }
  if "${pip[@]}" --no-build-isolation "${others[@]}" "$work/src"; then
    echo "o1 installed from the working tree"
  else
    echo "o1 could not be built here; installing the carried wheel instead (may be older):"
    ls -l "$wheels"/o1-*.whl
    rm -rf "$deps"
    "${pip[@]}" "${others[@]}" "$wheels"/o1-*.whl
  fi
}

show_versions() {
  "$python" - <<'EOF'
import importlib.metadata as md
import platform

import jax

print("python", platform.python_version())
for name in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain",
             "tensorflow-datasets", "numpy", "o1"):
    try:
        print(f"{name} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name} not installed")
print("devices", jax.devices())
# The training path's imports, so a missing package shows here and not mid-benchmark.
import o1.benchmarks.train_step  # noqa: E402,F401
import o1.train.trainer  # noqa: E402,F401
print("o1.train.trainer and o1.benchmarks.train_step import")
EOF
}

run_tests() {
  # The attention kernel against the xla reference (GPU-only tests), then model tests while
  # the limit allows; the 8-device sharding tests skip on one GPU.
  # -v names each test as it ends: a test stuck in a compile ignores SIGINT until the kill,
  # and then no summary is printed.
  "$python" -m pytest -v -p no:cacheprovider -rs tests/test_attention.py tests/test_model.py
}

bench_step() {  # bench_step ATTENTION CONFIG...
  local attention=$1
  shift
  "$python" -m o1.benchmarks.train_step --configs "$@" --steps "$steps" \
    --out "$work/BENCHMARKS.md" "model.attention=$attention"
}

bench_loop() {
  local workdir=$work/workdir
  rm -rf "$workdir"
  cp -r "$workdir_source" "$workdir" || return 1
  if [[ -f benchmarks/train_loop.py ]]; then
    # shellcheck disable=SC2086  # loop_args is a list of words
    "$python" -m o1.benchmarks.train_loop --workdir "$workdir" --seconds "$loop_seconds" \
      $loop_args --out "$work/BENCHMARKS.md" "train.batch_size=$loop_batch"
  else
    # No loop benchmark yet: train for the time given (SIGTERM saves and stops the loop), then
    # read steps/s from the metrics it logged. --foreground keeps o1 train in this process
    # group, where the step's own timeout reaches it.
    echo "(o1.benchmarks.train_loop is missing: o1 train for $loop_seconds s instead)"
    timeout --foreground -s TERM "$loop_seconds" "$python" -m o1.cli train \
      --workdir "$workdir" "train.batch_size=$loop_batch" train.steps=300 \
      "train.log_every=$log_every"
    echo "steps_per_s by step, from metrics.jsonl:"
    "$python" - "$workdir/metrics.jsonl" <<'EOF'
import json
import pathlib
import sys

path = pathlib.Path(sys.argv[1])
lines = path.read_text().splitlines() if path.exists() else []
if not any('"steps_per_s"' in line for line in lines):
    print(f"none: {path} has no row with steps_per_s")
for line in lines:
    row = json.loads(line)
    if "steps_per_s" in row:
        print(f"step {row['step']}: {row['steps_per_s']:.3f} steps/s, "
              f"{row.get('tokens_per_s', 0):,.0f} tokens/s, mfu {row.get('mfu', 0):.3f}")
EOF
  fi
}

main() {
  local start=$SECONDS
  echo "o1 device check, $(date -u '+%Y-%m-%d %H:%M:%S') UTC, $(git rev-parse --short HEAD \
    2>/dev/null || echo 'no git'), JAX_PLATFORMS=$JAX_PLATFORMS, quick=$quick"
  local run config attention limit
  step nvidia-smi 5 nvidia-smi
  step install 30 install_deps
  step versions 15 show_versions
  step attention-tests "$test_limit" run_tests
  read -r config attention limit <<< "${step_runs[0]}"
  step "train_step $config $attention" "$limit" bench_step "$attention" "$config"
  step "train loop ${loop_seconds} s" $((loop_seconds + 90)) bench_loop
  for run in "${step_runs[@]:1}"; do
    read -r config attention limit <<< "$run"
    step "train_step $config $attention" "$limit" bench_step "$attention" "$config"
  done
  echo
  echo "=== summary ($((SECONDS - start)) s in all)"
  printf '%s\n' "${summary[@]}"
  rm -rf "$deps" "$work"
}

# Functions run under `timeout` through a child bash that has them.
export -f install_deps show_versions run_tests bench_step bench_loop
export python quick wheels workdir_source deps work repo steps loop_seconds loop_batch log_every \
  loop_args
main 2>&1 | tee "$log"
exit
