"""OpenCV's dnn_superres models (FSRCNN, FSRCNN-small, ESPCN) against ours, side by side.

    make bench-peers BENCH_PEERS_ARGS="--psnr"      # builds .venv-peers (needs opencv-contrib)
    python benchmarks/opencv_peers.py --model fast-clean --model bicubic --repeat 5 --psnr

For each scale and input size, every runner gets the same synthetic RGB uint8 image
(OpenCV gets a BGR copy, made before timing) at the same thread count; after warm-up
the runners take turns, `--repeat` rounds, so background load falls on all alike.
Ours run through sr_cli.upscale.Upscaler, as `sr upscale` does; by default `fast-clean` and
`default`. The peers are trained on clean bicubic downscales, so the PSNR comparison is with
`fast-clean`, the same networks as `fast` without the block grid and trained on the same kind of LR.

The peers run their own pipeline: `DnnSuperResImpl.upsample` converts BGR to YCrCb,
runs the network on Y only, and upscales Cr/Cb with bicubic. `--psnr` scores that
output on Set5 exactly as `sr eval` scores ours (MATLAB-bicubic LR, uint8 output,
Y channel, MATLAB rounding, border = scale).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PEERS = REPO.parent / "shared" / "peers" / "opencv_dnn_superres"
DEFAULT_SET5 = REPO.parent / "shared" / "data" / "benchmark" / "Set5"

# label -> (file prefix, dnn_superres algorithm name)
PEERS = {"FSRCNN": ("FSRCNN", "fsrcnn"), "FSRCNN-small": ("FSRCNN-small", "fsrcnn"), "ESPCN": ("ESPCN", "espcn")}
# Dong et al. 2016, Set5 Y PSNR; the .pb files are a TensorFlow re-training (Saafke/FSRCNN_Tensorflow).
FSRCNN_PUBLISHED = {2: 37.05, 3: 33.18, 4: 30.72}


def load_peer(peers_dir: Path, label: str, scale: int):
    import cv2
    prefix, algorithm = PEERS[label]
    path = peers_dir / f"{prefix}_x{scale}.pb"
    if not path.is_file():
        raise SystemExit(f"error: {path} is missing")
    peer = cv2.dnn_superres.DnnSuperResImpl_create()
    peer.readModel(str(path))
    peer.setModel(algorithm, scale)
    return peer


def load_ours(models: list[str], scale: int, missing: dict[tuple[str, str], list[int]]) -> dict:
    from sr_cli.resolve import plan_passes
    from sr_cli.upscale import Upscaler
    loaded = {}
    for name in models:
        try:
            upscaler = Upscaler.create(name, scale, device="cpu")
        except ValueError as exc:
            missing.setdefault((name, str(exc)), []).append(scale)
            continue
        passes = plan_passes(name, scale)
        loaded[name if passes == [scale] else f"{name} ({'+'.join(f'x{p}' for p in passes)})"] = upscaler
    return loaded


def time_side_by_side(runners: dict, *, warmup: int, repeat: int) -> dict[str, list[float]]:
    """Seconds per run of each runner; runners take turns within every round."""
    for run in runners.values():
        for _ in range(warmup):
            run()
    times = {name: [] for name in runners}
    for _ in range(repeat):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def peer_psnr(peer, set5: Path, scale: int) -> float:
    """Mean Set5 PSNR of a peer, with the LR, quantisation and metric of `sr eval`."""
    import cv2
    from sr_cli.evaluate import _list_images, _read_image, bicubic_downscale
    from sr_cli.metrics import calculate_psnr
    from sr_cli.resize import modcrop
    scores = []
    for path in _list_images(set5):
        hr = modcrop(_read_image(path), scale)
        lr = bicubic_downscale(hr, scale)
        if lr.ndim == 2:  # greyscale: replicated in, averaged out, as evaluate does for RGB models
            sr = peer.upsample(cv2.cvtColor(lr, cv2.COLOR_GRAY2BGR))
            sr = np.floor(sr.astype(np.float64).mean(axis=2) + 0.5).astype(np.uint8)
        else:
            sr = cv2.cvtColor(peer.upsample(cv2.cvtColor(lr, cv2.COLOR_RGB2BGR)), cv2.COLOR_BGR2RGB)
        scores.append(calculate_psnr(sr, hr, crop_border=scale, test_y_channel=True, convention="matlab"))
    return float(np.mean(scores))


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, got {text!r}") from None
    return width, height


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, nargs="+", default=[2, 3, 4], help="Scales (2, 3, 4).")
    parser.add_argument("--size", type=parse_size, nargs="+", default=[(256, 256), (512, 512)],
                        help="Input sizes, WIDTHxHEIGHT.")
    parser.add_argument("--model", action="append", help="Our model (repeatable; default: fast-clean, default).")
    parser.add_argument("--threads", type=int, default=2, help="Threads for torch and OpenCV alike.")
    parser.add_argument("--warmup", type=int, default=1, help="Untimed runs of each runner first.")
    parser.add_argument("--repeat", type=int, default=5, help="Timed rounds (each runner once per round).")
    parser.add_argument("--peers", type=Path, default=DEFAULT_PEERS, help="Folder of the OpenCV .pb files.")
    parser.add_argument("--psnr", action="store_true", help="Also score every model on Set5 (Y PSNR).")
    parser.add_argument("--set5", type=Path, default=DEFAULT_SET5, help="Set5 HR folder for --psnr.")
    parser.add_argument("--json", action="store_true", help="Print the results as JSON instead of tables.")
    args = parser.parse_args()
    models = list(dict.fromkeys(args.model or ["fast-clean", "default"]))

    import cv2
    import torch
    from sr_cli.bench import synthetic_image
    if not hasattr(cv2, "dnn_superres"):
        raise SystemExit("error: cv2.dnn_superres is missing; it is in opencv-contrib-python-headless "
                         "(`make bench-peers` builds an environment with it)")
    if not args.peers.is_dir():
        raise SystemExit(f"error: no OpenCV peer models at {args.peers} (pass --peers DIR)")
    if args.psnr and not args.set5.is_dir():
        raise SystemExit(f"error: no Set5 at {args.set5} (pass --set5 DIR)")
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)

    timings, psnr, missing = [], [], {}  # missing: (model, reason) -> scales
    for scale in args.scale:
        peers = {label: load_peer(args.peers, label, scale) for label in PEERS}
        ours = load_ours(models, scale, missing)
        for width, height in args.size:
            rgb = synthetic_image(height, width)
            bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)  # made once, outside the timing
            runners = {f"OpenCV {label}": (lambda p=peer: p.upsample(bgr)) for label, peer in peers.items()}
            runners.update({name: (lambda u=upscaler: u(rgb)) for name, upscaler in ours.items()})
            times = time_side_by_side(runners, warmup=args.warmup, repeat=args.repeat)
            for name, runs in times.items():
                timings.append({"scale": scale, "size": f"{width}x{height}", "runner": name,
                                "median_s": statistics.median(runs), "min_s": min(runs), "runs_s": runs})
        if args.psnr:
            from sr_cli.evaluate import evaluate
            for label, peer in peers.items():
                psnr.append({"scale": scale, "model": f"OpenCV {label}",
                             "psnr": peer_psnr(peer, args.set5, scale),
                             "published": FSRCNN_PUBLISHED[scale] if label == "FSRCNN" else None})
            for name in models:
                if any(n == name and scale in scales for (n, _), scales in missing.items()):
                    continue
                try:  # native scales only, as `sr eval`
                    report = evaluate([args.set5], scale=scale, models=[name])
                except ValueError as exc:
                    missing.setdefault((name, f"Set5 PSNR: {exc}"), []).append(scale)
                    continue
                psnr.append({"scale": scale, "model": name, "psnr": report.scores[name][report.datasets[0]].psnr,
                             "published": None})

    settings = {"threads": args.threads, "warmup": args.warmup, "repeat": args.repeat,
                "torch": torch.__version__, "opencv": cv2.__version__}
    if args.json:
        skipped = [{"model": name, "scales": scales, "reason": why} for (name, why), scales in missing.items()]
        print(json.dumps({"settings": settings, "timings": timings, "set5_psnr": psnr, "missing": skipped},
                         indent=2))
        return
    print_tables(timings, psnr, missing, settings)


def print_tables(timings: list[dict], psnr: list[dict], missing: dict[tuple[str, str], list[int]],
                 settings: dict) -> None:
    from rich.console import Console
    from rich.table import Table
    console = Console(width=None if sys.stdout.isatty() else 120)
    table = Table("scale", "input", "runner", "median ms", "min ms", "time / OpenCV FSRCNN",
                  title=f"CPU, {settings['threads']} threads, median of {settings['repeat']} alternating rounds "
                        f"(torch {settings['torch']}, OpenCV {settings['opencv']})")
    for row in timings:
        fsrcnn = next(r for r in timings if (r["scale"], r["size"], r["runner"]) ==
                      (row["scale"], row["size"], "OpenCV FSRCNN"))
        table.add_row(f"x{row['scale']}", row["size"], row["runner"], f"{1e3 * row['median_s']:.1f}",
                      f"{1e3 * row['min_s']:.1f}", f"{row['median_s'] / fsrcnn['median_s']:.2f}")
    console.print(table)
    if psnr:
        table = Table("scale", "model", "Set5 PSNR (Y)", "published",
                      title="Set5, MATLAB-bicubic LR, uint8 output, Y (MATLAB rounding), border = scale")
        for row in psnr:
            published = f"{row['published']:.2f} (paper)" if row["published"] is not None else "-"
            table.add_row(f"x{row['scale']}", row["model"], f"{row['psnr']:.2f}", published)
        console.print(table)
    console.print("OpenCV peers run their own pipeline: the network on Y (OpenCV's YCrCb), Cr/Cb by bicubic.")
    for (name, why), scales in missing.items():
        console.print(f"missing, skipped: {name} {', '.join(f'x{s}' for s in scales)}: {why}")


if __name__ == "__main__":
    main()
