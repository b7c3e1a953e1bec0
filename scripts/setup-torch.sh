#!/usr/bin/env bash
# Installs libtorch (the PyTorch wheel pinned to what tch expects) into a venv shared by
# every checkout, then points this checkout's `.libtorch` link at it. Idempotent: a
# second run with a complete venv only refreshes the link.
# Also writes data/digits.safetensors (scikit-learn's bundled digits, make_digits.py).
# Also installs tensorboard (the interop tests and benchmark load exported event files
# with TensorBoard's own reader); a venv made before that gets it added on the next run,
# without touching torch.
# Also installs lightning and transformers (+ accelerate, which transformers' Trainer
# needs), pinned, with torch held at its version: tests/external.rs runs the client's
# Lightning and Hugging Face adapters in real runs.
#
# `scripts/setup-torch.sh VERSION` (another PyTorch than the default, e.g. 2.11.0, the
# device image's; docs/DEVICE.md) installs torch==VERSION and numpy alone into
# $cache/torch-VERSION, prints its torch directory and touches nothing of this checkout:
# what scripts/build-host-for-torch links a second phasetop-host against.
set -euo pipefail
# What the workspace's tch expects (torch-sys's build.rs); scripts/build-host-for-torch
# maps other versions to their tch release.
TORCH_VERSION=2.13.0
TENSORBOARD_VERSION=2.21.0
SKLEARN_VERSION=1.9.1
LIGHTNING_VERSION=2.6.6
TRANSFORMERS_VERSION=5.24.0
ACCELERATE_VERSION=1.15.0
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${PHASETOP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/phasetop}
venv="$cache/torch-$TORCH_VERSION"
python=${PYTHON:-python3}

if [ $# -gt 0 ] && [ "$1" != "$TORCH_VERSION" ]; then
  other="$cache/torch-$1"
  if [ ! -f "$other/.complete" ]; then
    echo "phasetop: installing torch==$1 into $other (once per machine, ~2 min, ~5 GB)" >&2
    rm -rf "$other"
    mkdir -p "$cache"
    "$python" -m venv "$other"
    "$other/bin/pip" install --quiet --disable-pip-version-check "torch==$1" numpy
    touch "$other/.complete"
  fi
  "$other/bin/python" -c 'import os, torch; print(os.path.dirname(torch.__file__))'
  exit 0
fi

if [ ! -f "$venv/.complete" ]; then
  echo "phasetop: installing torch==$TORCH_VERSION into $venv (once per machine, ~2 min, ~5 GB)" >&2
  rm -rf "$venv"
  mkdir -p "$cache"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "torch==$TORCH_VERSION" numpy
  touch "$venv/.complete"
fi

if [ ! -f "$venv/.tensorboard-$TENSORBOARD_VERSION" ]; then
  echo "phasetop: installing tensorboard==$TENSORBOARD_VERSION into $venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "tensorboard==$TENSORBOARD_VERSION"
  touch "$venv/.tensorboard-$TENSORBOARD_VERSION"
fi

# scikit-learn for its bundled 8x8 digits (configs/digits.toml, configs/torchscript.toml):
# the set ships inside the wheel, so nothing is downloaded when the data is written.
if [ ! -f "$venv/.sklearn-$SKLEARN_VERSION" ]; then
  echo "phasetop: installing scikit-learn==$SKLEARN_VERSION into $venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "scikit-learn==$SKLEARN_VERSION" safetensors
  touch "$venv/.sklearn-$SKLEARN_VERSION"
fi
if [ ! -f "$here/data/digits.safetensors" ]; then
  "$venv/bin/python" "$here/scripts/make_digits.py" "$here/data/digits.safetensors" >&2
fi
# configs/torchscript.toml's model, so every shipped config passes `phasetop check` after
# set-up (a few seconds, once per checkout).
if [ ! -f "$here/data/resnet.pt" ]; then
  "$venv/bin/python" "$here/examples/export_model.py" "$here/data/resnet.pt" >&2
fi
adapters=".adapters-lightning-$LIGHTNING_VERSION-transformers-$TRANSFORMERS_VERSION"
if [ ! -f "$venv/$adapters" ]; then
  echo "phasetop: installing lightning==$LIGHTNING_VERSION transformers==$TRANSFORMERS_VERSION into $venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "torch==$TORCH_VERSION" \
    "lightning==$LIGHTNING_VERSION" "transformers==$TRANSFORMERS_VERSION" "accelerate==$ACCELERATE_VERSION"
  touch "$venv/$adapters"
fi

torch_dir=$("$venv/bin/python" -c 'import os, torch; print(os.path.dirname(torch.__file__))')
ln -sfn "$torch_dir" "$here/.libtorch"
ln -sfn "$venv" "$here/.venv"
