"""`sr bench --compare-reference` on Real-ESRGAN's two architectures, and the tiling overhead.

    .venv/bin/python benchmarks/reference_loop.py                          # SRVGGNetCompact and RRDBNet, x4
    .venv/bin/python benchmarks/reference_loop.py --arch srvgg --size 256x256 --repeat 5
    .venv/bin/python benchmarks/reference_loop.py --tiling                 # tiled vs untiled, our models

Speed does not depend on the weights, so each architecture is built at its Real-ESRGAN
size (SRVGGNetCompact: 64 features, 32 convs, PReLU, as realesr-general-x4v3; RRDBNet: 23
blocks, as RealESRGAN_x4plus) with random weights and saved to a temporary file; then
`sr bench` times our tiled pipeline and the Real-ESRGAN-style reference loop side by side,
in one process, taking turns. `--tiling` instead times each model untiled and at the given
tiles, same process, to show what tiling costs.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ARCHS = {
    "srvgg": {"num_feat": 64, "num_conv": 32, "act_type": "prelu"},
    "rrdbnet": {"num_feat": 64, "num_block": 23, "num_grow_ch": 32},
}


def build(arch: str, folder: Path, scale: int) -> Path:
    import torch

    from sr_cli.archs import build_arch
    from sr_cli.weights import save_model
    torch.manual_seed(0)
    params = {"scale": scale, **ARCHS[arch]}
    path = folder / f"{arch}_x{scale}.safetensors"
    save_model(build_arch(arch, **params), path, arch=arch, params=params)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", action="append", choices=sorted(ARCHS), help="Default: both.")
    parser.add_argument("--model", action="append", default=[], help="Also (or with --tiling) these models.")
    parser.add_argument("--size", action="append", help="Input sizes (default: 256x256 and 512x512).")
    parser.add_argument("--tile", action="append", help="Tiles (default: 256; with --tiling: 256 and 512).")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--tiling", action="store_true", help="Tiled against untiled instead of the reference.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        archs = args.arch or ([] if args.tiling and args.model else sorted(ARCHS))
        models = [str(build(arch, Path(tmp), args.scale)) for arch in archs] + args.model
        tiles = args.tile or (["256", "512"] if args.tiling else ["256"])
        sizes = args.size or (["1024x1024"] if args.tiling else ["256x256", "512x512"])
        command = [sys.executable, "-m", "sr_cli", "bench", "--scale", str(args.scale), "--threads", str(args.threads),
                   "--repeat", str(args.repeat), "--warmup", str(args.warmup), "--device", "cpu"]
        for model in models:
            command += ["--model", model]
        for size in sizes:
            command += ["--size", size]
        for tile in (["0"] if args.tiling else []) + tiles:
            command += ["--tile", tile]
        if not args.tiling:
            command.append("--compare-reference")
        if args.json:
            command.append("--json")
        print(" ".join(command[1:]), flush=True)
        raise SystemExit(subprocess.call(command))


if __name__ == "__main__":
    main()
