#!/usr/bin/env bash
# Fills .device/ with what benchmarks/device_check.sh needs on a GPU machine that has no
# network: wheels of the packages its image lacks, and a small workdir for `o1 train` to read.
#
#     bash benchmarks/device_wheels.sh [SOURCE_WORKDIR]
#
# SOURCE_WORKDIR (default /work/runs/i19, a quickstart run) gives its config.json and latents/
# to .device/workdir/. Run it from the repo root, on a host that reaches PyPI.
#
# The GPU image holds jax, flax, optax, orbax-checkpoint, numpy, scipy, sentencepiece and their
# dependencies; these wheels add the data pipeline (grain, tensorflow-datasets), the config and
# metrics libraries o1 imports, pytest, and o1 itself. Versions are uv.lock's, so the device
# runs what the lockfile tests here.
#
# Environment:
#   O1_WHEELS_DIR    where the wheels go (default .device/wheels)
#   O1_WHEELS_PYTHON the Python version they are for (default 3.12, the GPU image's); the local
#                    dry run of device_check.sh uses 3.11 and a directory outside the repo
#   O1_WORKDIR_DIR   where the workdir copy goes (default .device/workdir; empty: no copy)
set -euo pipefail

source_workdir=${1:-/work/runs/i19}
wheels=${O1_WHEELS_DIR:-.device/wheels}
workdir=${O1_WORKDIR_DIR-.device/workdir}
python_version=${O1_WHEELS_PYTHON:-3.12}
abi=cp${python_version/./}

if [[ ! -f pyproject.toml || ! -f uv.lock ]]; then
  echo "run from the repo root (no pyproject.toml or uv.lock here)" >&2
  exit 1
fi

# The packages the GPU image lacks (or, for pytest and tqdm, may lack) that the training path
# and the test subset import. Their own dependencies (protobuf, absl-py, etils, psutil, wrapt,
# attrs, six, cloudpickle, requests, pyarrow, ...) are in the image already.
packages=(
  grain array-record tensorflow-datasets tensorflow-metadata promise dm-tree simple-parsing
  docstring-parser termcolor toml immutabledict googleapis-common-protos importlib-resources
  omegaconf portpicker tensorboardx tqdm
  pytest iniconfig pluggy packaging pygments
)

# name==version pins from uv.lock (one version each for these packages).
pins=$(python3 - "${packages[@]}" <<'EOF'
import sys
import tomllib

locked = {}
with open("uv.lock", "rb") as f:
    for package in tomllib.load(f)["package"]:
        locked.setdefault(package["name"], set()).add(package["version"])
for name in sys.argv[1:]:
    versions = locked.get(name, set())
    if len(versions) != 1:
        sys.exit(f"uv.lock has {sorted(versions) or 'no'} versions of {name}; expected one")
    print(f"{name}=={versions.pop()}")
EOF
)

rm -rf "$wheels"
mkdir -p "$wheels"
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT

# pip matches each manylinux tag exactly, so name the ones these packages publish.
platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 \
           manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$tag")
done

for pin in $pins; do
  if [[ $pin == promise==* ]]; then
    # promise publishes only an sdist: build its (pure Python) wheel here.
    pip download -q --no-deps --no-binary=:all: -d "$build" "$pin"
    pip wheel -q --no-deps -w "$wheels" "$build"/promise-*.tar.gz
  else
    pip download -q --no-deps --only-binary=:all: --python-version "$python_version" \
      --implementation cp --abi "$abi" --abi abi3 --abi none "${platforms[@]}" \
      --platform any -d "$wheels" "$pin"
  fi
done

# o1 itself, no dependencies: device_check.sh installs it from the working tree when it can and
# falls back to this wheel.
uv build --wheel -q --out-dir "$build/o1" >/dev/null
cp "$build"/o1/o1-*.whl "$wheels"/

# The workdir `o1 train` reads: the tokenizer stage's config and the latent cache. Checkpoints,
# tokenizers and samples stay behind; training writes its own checkpoints next to them.
if [[ -n $workdir ]]; then
  for path in config.json latents; do
    [[ -e $source_workdir/$path ]] || { echo "$source_workdir has no $path" >&2; exit 1; }
  done
  rm -rf "$workdir"
  mkdir -p "$workdir"
  cp "$source_workdir/config.json" "$workdir"/
  cp -r "$source_workdir/latents" "$workdir"/
  du -sh "$workdir" | awk '{print "workdir: " $1}'
fi

ls -l "$wheels" | awk 'NR > 1 {printf "%8.0f KiB  %s\n", $5 / 1024, $9}'
du -sh "$wheels" | awk '{print "wheels: " $1}'
# A `run` call carries at most 64 MiB, the working tree included.
[[ -d .device ]] && du -sh .device | awk '{print ".device in all: " $1 " (of 64 MiB per call)"}'
