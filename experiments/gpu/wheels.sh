#!/usr/bin/env bash
# The Python packages corrdiff imports that the GPU machine's image lacks, as Python 3.12 x86-64 wheels in
# experiments/gpu/wheels/ (git-ignored: name it in the device call's `carry`). Run once per CPU machine:
#   bash experiments/gpu/wheels.sh
# The device has torch, lightning, torchvision, torchmetrics, numpy, scipy, matplotlib, pillow, tqdm, pyyaml
# (its python3 is 3.12); it lacks jsonargparse (+ docstring_parser, typeshed_client: the [signatures] extra),
# compressai and torch-fidelity (imported by corrdiff), pytorch-msssim (a compressai requirement).
# compressai publishes no cp312 wheel, only an sdist: it is built here with a Python 3.12 (pyenv's, or
# PY312=/path/to/python3.12) in a throw-away venv, against pybind11 (its C++ entropy coder; no torch ABI).
set -euo pipefail
cd "$(dirname "$0")"
OUT=wheels
mkdir -p "$OUT"
PLATFORM=(--python-version 3.12 --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
python3 -m pip download -q --no-deps --only-binary=:all: "${PLATFORM[@]}" -d "$OUT" \
  jsonargparse==4.53.0 docstring_parser==0.18.0 typeshed_client==2.15.0 torch-fidelity==0.4.0 pytorch-msssim==1.0.0
if ! ls "$OUT"/compressai-1.2.8-cp312-*.whl >/dev/null 2>&1; then
  if [ -z "${PY312:-}" ]; then
    for candidate in python3.12 /root/.pyenv/versions/3.12*/bin/python3.12 /usr/bin/python3.12; do
      if "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
        PY312="$candidate"; break
      fi
    done
  fi
  if [ -z "${PY312:-}" ]; then
    echo "no python3.12 here to build compressai's cp312 wheel: set PY312" >&2
    exit 1
  fi
  BUILD="$(mktemp -d)"
  trap 'rm -rf "$BUILD"' EXIT
  "$PY312" -m venv "$BUILD/venv"
  "$BUILD/venv/bin/pip" install -q pybind11 setuptools wheel
  python3 -m pip download -q --no-deps --no-binary=:all: -d "$BUILD" compressai==1.2.8
  "$BUILD/venv/bin/pip" wheel -q --no-deps --no-build-isolation -w "$OUT" "$BUILD"/compressai-1.2.8.tar.gz
fi
ls -l "$OUT"
