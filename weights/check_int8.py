"""The int8 quality budget: each shipped model's int8 ONNX form against its fp32 weights.

    python weights/check_int8.py [--model default --model fast ...] [--sets DIR ...] [--json OUT]

For every shipped model and scale with an int8 file, `sr eval`'s code scores both forms
(--engine torch: fp32 weights; --engine onnx: the int8 file) on each set, clean and on
--degrade jpeg:25-55 (seed 0), and prints fp32, int8 and the loss. Budget per model, set,
scale and condition: PSNR loss <= 0.05 dB, SSIM loss <= 0.002, blockiness within 0.01.
Exit status 1 if any row is over.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sr_cli.evaluate import evaluate
from sr_cli.registry import NAMED_MODELS, onnx_form

BENCHMARK = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "benchmark"
BUDGET = {"psnr": 0.05, "ssim": 0.002, "blockiness": 0.01}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help="shipped model names (default: all with int8 files)")
    parser.add_argument("--scale", type=int, action="append", help="scales (default: every shipped scale)")
    parser.add_argument("--sets", nargs="+", default=[str(BENCHMARK / s) for s in ("Set5", "Set14", "BSD100")])
    parser.add_argument("--degrade", nargs="+", default=["none", "jpeg:25-55"])
    parser.add_argument("--json", type=Path, help="also write every row here")
    args = parser.parse_args()
    rows, over = [], 0
    for name in args.model or list(NAMED_MODELS):
        for scale in sorted(NAMED_MODELS[name]):
            if (args.scale and scale not in args.scale) or onnx_form(name, scale) is None:
                continue
            for degrade in args.degrade:
                spec = None if degrade == "none" else degrade
                reports = {engine: evaluate(args.sets, scale=scale, models=[name], engine=engine, device="cpu",
                                            degrade=spec, seed=0) for engine in ("torch", "onnx")}
                for dataset in reports["torch"].datasets:
                    fp32, int8 = (reports[e].scores[name][dataset] for e in ("torch", "onnx"))
                    loss = {"psnr": fp32.psnr - int8.psnr, "ssim": fp32.ssim - int8.ssim,
                            "blockiness": abs(fp32.blockiness - int8.blockiness)}
                    ok = all(loss[k] <= BUDGET[k] for k in BUDGET)
                    over += not ok
                    row = {"model": name, "scale": scale, "set": dataset, "degrade": degrade,
                           "fp32": [fp32.psnr, fp32.ssim, fp32.blockiness],
                           "int8": [int8.psnr, int8.ssim, int8.blockiness], "loss": loss, "ok": ok}
                    rows.append(row)
                    print(f"{name} x{scale} {dataset:7s} {degrade:10s} fp32 {fp32.psnr:.3f}/{fp32.ssim:.4f}/"
                          f"{fp32.blockiness:.3f}  int8 {int8.psnr:.3f}/{int8.ssim:.4f}/{int8.blockiness:.3f}  "
                          f"loss {loss['psnr']:+.3f} dB {loss['ssim']:+.4f} {loss['blockiness']:.3f}"
                          f"{'' if ok else '  OVER BUDGET'}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print(f"{len(rows)} rows, {over} over budget")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
