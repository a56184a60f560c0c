#!/usr/bin/env bash
# Fetches ONNX Runtime's shared library (from the official PyPI wheel; no Python needed to use
# it) into a cache folder and prints its path. slipway loads it at run time (`ort` with
# load-dynamic): set ORT_DYLIB_PATH to the printed path, or leave the library where this puts it.
#
#   scripts/fetch-onnxruntime.sh            # -> ~/.cache/slipway-onnxruntime/1.32.0/libonnxruntime.so.1.32.0
#   ORT_VERSION=1.32.0 SLIPWAY_ORT_DIR=/opt/ort scripts/fetch-onnxruntime.sh
set -euo pipefail
version=${ORT_VERSION:-1.32.0}
dir=${SLIPWAY_ORT_DIR:-$HOME/.cache/slipway-onnxruntime}/$version
lib="$dir/libonnxruntime.so.$version"
if [ -f "$lib" ]; then
  echo "$lib"
  exit 0
fi
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64|Linux-aarch64) ;;
  *) echo "fetch-onnxruntime.sh: only Linux x86_64/aarch64 wheels are fetched; set ORT_DYLIB_PATH to your libonnxruntime (>= 1.31)" >&2; exit 1 ;;
esac
python=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Any CPython tag will do: the library inside is the same; ask for this interpreter's.
"$python" -m pip download --quiet --no-deps --only-binary=:all: "onnxruntime==$version" -d "$tmp" >&2
wheel=$(ls "$tmp"/onnxruntime-*.whl | head -n 1)
mkdir -p "$dir"
"$python" - "$wheel" "$dir" "$version" <<'PY'
import sys, zipfile
wheel, out, version = sys.argv[1:]
member = f"onnxruntime/capi/libonnxruntime.so.{version}"
with zipfile.ZipFile(wheel) as z:
    data = z.read(member)
with open(f"{out}/libonnxruntime.so.{version}.part", "wb") as f:
    f.write(data)
PY
mv "$lib.part" "$lib"
echo "$lib"
