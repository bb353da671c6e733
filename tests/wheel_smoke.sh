#!/usr/bin/env bash
# The wheel as a user gets it: build it from a clean copy of the tree, install it into a fresh
# virtual environment outside the checkout, and from there run `sr models`, `sr data list` and
# `sr upscale` on docs/sample.png with every shipped model. Proves the wheel carries the weights and
# the data it needs, with no editable install and no checkout on the path. Run by `make test`.
#   PYTHON      the interpreter to build the environment from (default python3)
#   TORCH_SPEC  the torch to install first (CI: torch==2.13.0, the local CPU wheel)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
torch_spec="${TORCH_SPEC:-torch>=2.3}"
work="$(mktemp -d "${TMPDIR:-/tmp}/sr-wheel.XXXXXX")"
trap 'rm -rf "$work"; echo "wheel: done in $((SECONDS - start)) s, cleaned up"' EXIT
start=$SECONDS

# Tracked and new (not ignored) files only: no build/ leftovers, no runs/, no .venv.
mkdir "$work/src"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
    | tar --null -T - -cf -) | tar -C "$work/src" -xf -
"$python" -m venv "$work/venv"
pip=("$work/venv/bin/python" -m pip -q)
"${pip[@]}" wheel --no-deps -w "$work/dist" "$work/src"
echo "wheel: built in $((SECONDS - start)) s"
"${pip[@]}" install --no-compile "$torch_spec" "$work"/dist/sr_cli-*.whl
echo "wheel: installed with its dependencies (no .pyc compiled for all of torch) in $((SECONDS - start)) s"
rm -rf "$work/src"

cd "$work"
cp "$repo/docs/sample.png" sample.png
unset SR_WEIGHTS_DIR PYTHONPATH
export SR_CACHE_DIR="$work/cache"
sr="$work/venv/bin/sr"
"$work/venv/bin/python" - "$repo" <<'PY'
import sys
from pathlib import Path
import sr_cli
from sr_cli import registry
repo = Path(sys.argv[1]).resolve()
package = Path(sr_cli.__file__).resolve().parent
assert repo not in package.parents, f"sr_cli imported from the checkout: {package}"
assert registry.WEIGHTS_DIR == package / "shipped_weights", registry.WEIGHTS_DIR
missing = [f for files in registry.NAMED_MODELS.values() for f in files.values() if not (registry.WEIGHTS_DIR / f).is_file()]
assert not missing, f"the wheel lacks {missing}"
assert not list(registry.WEIGHTS_DIR.glob("*.py")), "weights/*.py recipes leaked into the wheel"
in_checkout = sorted(p.name for p in (repo / "weights").glob("*.int8.onnx"))
in_wheel = sorted(p.name for p in registry.WEIGHTS_DIR.glob("*.int8.onnx"))
assert in_wheel == in_checkout, f"the wheel carries int8 files {in_wheel}, the checkout {in_checkout}"
print(f"wheel: {len(in_wheel)} int8 ONNX files")
print(f"wheel: sr_cli from {package}, {len(list(registry.WEIGHTS_DIR.glob('*.safetensors')))} weight files")
PY
"$sr" models
"$sr" models --json > models.json
# The datasets catalogue (package data) ships too: every set listed, none pulled in a fresh cache.
"$sr" data list --json | "$work/venv/bin/python" -c '
import json, sys
rows = json.load(sys.stdin)
assert len(rows) == 8 and sum(r["images"] for r in rows) == 718 and not any(r["pulled"] for r in rows), rows
print("wheel: sr data list: %d sets, %d files" % (len(rows), sum(r["images"] for r in rows)))'
# NIQE's pristine model (package data) ships: `sr eval --niqe` works from the wheel.
"$work/venv/bin/python" -c '
from sr_cli.niqe import pristine_model
mu, cov, window = pristine_model()
assert mu.shape == (36,) and cov.shape == (36, 36) and window.shape == (7, 7)
print("wheel: NIQE pristine model present")'
"$work/venv/bin/python" -c '
import json
rows = [r for r in json.load(open("models.json")) if r["source"] == "shipped"]
assert rows and all(r["installed"] and r["parameters"] for r in rows), rows
print("\n".join("%s %s" % (r["name"], r["scale"]) for r in rows))' > shipped.txt
while read -r name scale; do
    "$sr" upscale sample.png --model "$name" --scale "$scale" -o "out_${name}_x${scale}.png" --quiet
    "$work/venv/bin/python" -c '
import sys
from PIL import Image
name, scale = sys.argv[1], int(sys.argv[2])
w, h = Image.open("sample.png").size
got = Image.open(f"out_{name}_x{scale}.png").size
assert got == (w * scale, h * scale), (name, scale, got)
print(f"wheel: upscaled sample.png with {name} x{scale} -> {got[0]}x{got[1]}")' "$name" "$scale"
done < shipped.txt
# The default engine on this CPU is ONNX Runtime for the models with int8 files; torch runs the same model too.
"$sr" upscale sample.png --model default --scale 4 --engine torch -o out_torch.png --quiet
"$work/venv/bin/python" -c '
from PIL import Image
import numpy as np
a, b = (np.asarray(Image.open(f)).astype(int) for f in ("out_default_x4.png", "out_torch.png"))
assert a.shape == b.shape and np.abs(a - b).mean() < 2, np.abs(a - b).mean()
print("wheel: default x4 on onnx and torch agree, mean |diff| %.3f" % np.abs(a - b).mean())'
echo "wheel: built, installed outside the checkout and checked in $((SECONDS - start)) s"
