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
# The library's SHA-256 for the default version on x86_64 (checked after download; another
# version or architecture is taken as PyPI serves it, with a warning).
expected_sha=""
if [ "$version" = "1.32.0" ] && [ "$(uname -m)" = "x86_64" ]; then
  expected_sha=6c1585d1bbf45b0712ea4a21b705c5fcb4ba04ff2e30f1fbf81a49faf658638f
fi
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
if [ -n "$expected_sha" ]; then
  actual_sha=$(sha256sum "$lib.part" | cut -d' ' -f1)
  if [ "$actual_sha" != "$expected_sha" ]; then
    rm -f "$lib.part"
    echo "fetch-onnxruntime.sh: libonnxruntime $version has SHA-256 $actual_sha, expected $expected_sha; refusing it" >&2
    exit 1
  fi
else
  echo "fetch-onnxruntime.sh: no pinned checksum for onnxruntime $version on $(uname -m); using it as PyPI served it" >&2
fi
mv "$lib.part" "$lib"
echo "$lib"
