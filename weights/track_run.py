"""Score a training run's weights at every checkpoint while it trains: PSNR, SSIM, blockiness, NIQE.

    python weights/track_run.py runs/photo_x4 [--sets DIR ...] [--degrade none --degrade jpeg:25-55]

Each time the run writes a checkpoint (checkpoint.json's step changes), its model.safetensors
(the EMA) is copied to RUN/steps/step_N.safetensors and scored by `sr eval`'s code (--engine
torch, --niqe, seed 0) on each set, clean and degraded; one row per step, set and condition
goes to RUN/track.csv and to the screen. Runs until Ctrl-C (or --once: the current checkpoint
only). The copies let any step be published later (weights/publish.py).
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import time
from pathlib import Path

from sr_cli.evaluate import evaluate

BENCHMARK = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "benchmark"
COLUMNS = ("step", "set", "degrade", "psnr", "ssim", "blockiness", "niqe")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--sets", nargs="+", default=[str(BENCHMARK / "Set14")])
    parser.add_argument("--degrade", action="append", help="none or an sr eval --degrade spec (repeat)")
    parser.add_argument("--scale", type=int, default=None, help="default: the run's")
    parser.add_argument("--poll", type=float, default=30.0, help="seconds between looks at the run")
    parser.add_argument("--once", action="store_true", help="score the current checkpoint and stop")
    args = parser.parse_args()
    conditions = args.degrade or ["none", "jpeg:25-55"]
    while not (args.run / "config.json").exists():  # the run writes it once its data is read
        time.sleep(args.poll)
    scale = args.scale or json.loads((args.run / "config.json").read_text())["scale"]
    steps_dir = args.run / "steps"
    steps_dir.mkdir(exist_ok=True)
    track = args.run / "track.csv"
    done = set()
    if track.exists():
        done = {int(row["step"]) for row in csv.DictReader(track.open())}
    while True:
        step = _checkpoint_step(args.run)
        if step is not None and step not in done:
            snapshot = steps_dir / f"step_{step}.safetensors"
            shutil.copyfile(args.run / "model.safetensors", snapshot)
            rows = _score(snapshot, step, args.sets, conditions, scale)
            new = not track.exists()
            with track.open("a", newline="") as out:
                writer = csv.DictWriter(out, COLUMNS)
                if new:
                    writer.writeheader()
                writer.writerows(rows)
            for row in rows:
                print(" ".join(f"{k} {row[k]}" for k in COLUMNS), flush=True)
            done.add(step)
        if args.once:
            return
        time.sleep(args.poll)


def _checkpoint_step(run: Path):
    try:
        return int(json.loads((run / "checkpoint.json").read_text())["step"])
    except (OSError, ValueError, KeyError):
        return None  # not written yet, or being replaced this instant


def _score(weights: Path, step: int, sets, conditions, scale: int) -> list[dict]:
    rows = []
    for condition in conditions:
        degrade = None if condition == "none" else condition
        report = evaluate(sets, scale=scale, models=[str(weights)], engine="torch", device="cpu",
                          degrade=degrade, seed=0, niqe=True)
        for dataset in report.datasets:
            score = report.scores[str(weights)][dataset]
            rows.append({"step": step, "set": dataset, "degrade": condition, "psnr": f"{score.psnr:.4f}",
                         "ssim": f"{score.ssim:.5f}", "blockiness": f"{score.blockiness:.4f}",
                         "niqe": f"{score.niqe:.4f}"})
    return rows


if __name__ == "__main__":
    main()
