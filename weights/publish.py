"""Copy a trained model into weights/ under a registry name, with its scores in the metadata.

    python weights/publish.py runs/boot_x4/model.safetensors default 4
    python weights/publish.py runs/r/model.safetensors default 4 --degrade jpeg:25-55 \
        --degrade blur:0.4-1.6+noise:1-8+jpeg:40-85
    python weights/publish.py runs/gan/model.safetensors photo 4 --parent default ...
    python weights/publish.py runs/gan/steps/step_1000.safetensors photo 4 --parent default --strength 0.8 ...

Scores are measured here with the same code as `sr eval` (Set5, Set14, BSD100 from
../shared/data/benchmark, matlab convention) and stored as `psnr`/`ssim` metadata, which
`sr models` shows. Each `--degrade SPEC` adds the scores on that degraded LR set (as
`sr eval --degrade SPEC --seed 0` makes it) under `degraded`: {spec: {set: [psnr, ssim, blockiness]}}.
With `--parent P --strength S` the published weights are ``(1 - S) * P + S * SOURCE`` (ESRGAN's
network interpolation, sr_cli/blend.py), the same as `sr upscale -m SOURCE@S --parent P`; the
metadata keeps S and the source's file name as `interpolated`.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from sr_cli.blend import with_strength
from sr_cli.evaluate import evaluate
from sr_cli.resolve import resolve_model
from sr_cli.registry import NAMED_MODELS, WEIGHTS_DIR
from sr_cli.weights import read_metadata, save_model

BENCHMARK = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "benchmark"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("name", choices=sorted(NAMED_MODELS))
    parser.add_argument("scale", type=int)
    parser.add_argument("--degrade", action="append", default=[], help="Also score on this degraded set.")
    parser.add_argument("--parent", help="A GAN model's PSNR-trained parent (a shipped name), the other end of "
                                         "`sr upscale --strength`.")
    parser.add_argument("--strength", type=float,
                        help="Publish the mix (1 - S) * parent + S * source (needs --parent).")
    args = parser.parse_args()
    source, name, scale = args.source, args.name, args.scale
    if args.strength is not None and not args.parent:
        raise SystemExit("--strength mixes the source with its --parent: give one")
    try:
        # 'SOURCE@S' is the blend itself, as `sr eval` and `sr upscale` make it (blend.py via resolve).
        model_spec = with_strength(source, args.strength)
        model = resolve_model(model_spec, scale, parent=args.parent)
    except ValueError as exc:  # a strength outside [0, 1], not this scale, no parent, other shapes
        raise SystemExit(str(exc)) from None
    datasets = [BENCHMARK / s for s in ("Set5", "Set14", "BSD100")]
    report = evaluate(datasets, scale=scale, models=[model_spec], parent=args.parent)
    scores = report.scores[model_spec]
    psnr = {d: round(s.psnr, 3) for d, s in scores.items()}
    ssim = {d: round(s.ssim, 4) for d, s in scores.items()}
    degraded = {}
    for spec in args.degrade:
        found = evaluate(datasets, scale=scale, models=[model_spec], degrade=spec, seed=0,
                         parent=args.parent).scores[model_spec]
        degraded[spec] = {d: [round(s.psnr, 3), round(s.ssim, 4), round(s.blockiness, 3)] for d, s in found.items()}
    metadata = read_metadata(source)
    extra = {k: v for k, v in metadata.items() if k not in ("format", "arch", "scale", "params")}
    extra.update(name=name, psnr=psnr, ssim=ssim, eval="sr eval, matlab convention, Y channel, border = scale")
    if degraded:
        extra["degraded"] = degraded
    if args.parent:
        extra["parent"] = args.parent
    if args.strength is not None:
        extra["interpolated"] = {"source": Path(source).name, "strength": args.strength}
    target = WEIGHTS_DIR / NAMED_MODELS[name][scale]
    save_model(model.net, target, arch=model.arch, params=model.params, extra=extra)
    print(json.dumps({"file": str(target), "psnr": psnr, "ssim": ssim, "degraded": degraded}))


if __name__ == "__main__":
    main()
