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
import tempfile
from pathlib import Path

from sr_cli.blend import blend
from sr_cli.evaluate import evaluate
from sr_cli.resolve import resolve_model
from sr_cli.registry import NAMED_MODELS, WEIGHTS_DIR
from sr_cli.weights import load_model, read_metadata, save_model

BENCHMARK = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "benchmark"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("name", choices=sorted(NAMED_MODELS))
    parser.add_argument("scale", type=int)
    parser.add_argument("--degrade", action="append", default=[], help="Also score on this degraded set.")
    parser.add_argument("--parent", help="A GAN model's PSNR-trained parent (a shipped name), the other end of "
                                         "`sr upscale --strength`.")
    parser.add_argument("--strength", type=float, help="Publish the mix (1 - S) * parent + S * source (needs --parent).")
    args = parser.parse_args()
    source, name, scale = args.source, args.name, args.scale
    interpolated = None
    if args.strength is not None:
        if not args.parent:
            raise SystemExit("--strength mixes the source with its --parent: give one")
        mixed = blend(load_model(source), resolve_model(args.parent, scale), args.strength)
        interpolated = {"source": Path(source).name, "strength": args.strength}
        temporary = tempfile.TemporaryDirectory()
        mixed_path = str(Path(temporary.name) / "mixed.safetensors")
        kept = {k: v for k, v in read_metadata(source).items() if k not in ("format", "arch", "scale", "params")}
        save_model(mixed.net, mixed_path, arch=mixed.arch, params=mixed.params, extra=kept)
        source = mixed_path
    model = load_model(source)
    if model.scale != scale:
        raise SystemExit(f"{source} is x{model.scale}, not x{scale}")
    datasets = [BENCHMARK / s for s in ("Set5", "Set14", "BSD100")]
    report = evaluate(datasets, scale=scale, models=[source])
    scores = report.scores[source]
    psnr = {d: round(s.psnr, 3) for d, s in scores.items()}
    ssim = {d: round(s.ssim, 4) for d, s in scores.items()}
    degraded = {}
    for spec in args.degrade:
        found = evaluate(datasets, scale=scale, models=[source], degrade=spec, seed=0).scores[source]
        degraded[spec] = {d: [round(s.psnr, 3), round(s.ssim, 4), round(s.blockiness, 3)] for d, s in found.items()}
    metadata = read_metadata(source)
    extra = {k: v for k, v in metadata.items() if k not in ("format", "arch", "scale", "params")}
    extra.update(name=name, psnr=psnr, ssim=ssim, eval="sr eval, matlab convention, Y channel, border = scale")
    if degraded:
        extra["degraded"] = degraded
    if args.parent:
        extra["parent"] = args.parent
    if interpolated:
        extra["interpolated"] = interpolated
    target = WEIGHTS_DIR / NAMED_MODELS[name][scale]
    save_model(model.net, target, arch=model.arch, params=model.params, extra=extra)
    print(json.dumps({"file": str(target), "psnr": psnr, "ssim": ssim, "degraded": degraded}))


if __name__ == "__main__":
    main()
