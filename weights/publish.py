"""Copy a trained model into weights/ under a registry name, with its scores in the metadata.

    python weights/publish.py runs/boot_x4/model.safetensors default 4

Scores are measured here with the same code as `sr eval` (Set5, Set14, BSD100 from
../shared/data/benchmark, matlab convention) and stored as `psnr`/`ssim` metadata, which
`sr models` shows.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from sr_cli.evaluate import evaluate
from sr_cli.registry import NAMED_MODELS, WEIGHTS_DIR
from sr_cli.weights import load_model, read_metadata, save_model

BENCHMARK = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "benchmark"


def main() -> None:
    source, name, scale = sys.argv[1], sys.argv[2], int(sys.argv[3])
    model = load_model(source)
    if model.scale != scale:
        raise SystemExit(f"{source} is x{model.scale}, not x{scale}")
    datasets = [BENCHMARK / s for s in ("Set5", "Set14", "BSD100")]
    report = evaluate(datasets, scale=scale, models=[source])
    scores = report.scores[source]
    psnr = {d: round(s.psnr, 3) for d, s in scores.items()}
    ssim = {d: round(s.ssim, 4) for d, s in scores.items()}
    metadata = read_metadata(source)
    extra = {k: v for k, v in metadata.items() if k not in ("format", "arch", "scale", "params")}
    extra.update(name=name, psnr=psnr, ssim=ssim, eval="sr eval, matlab convention, Y channel, border = scale")
    target = WEIGHTS_DIR / NAMED_MODELS[name][scale]
    save_model(model.net, target, arch=model.arch, params=model.params, extra=extra)
    print(json.dumps({"file": str(target), "psnr": psnr, "ssim": ssim}))


if __name__ == "__main__":
    main()
