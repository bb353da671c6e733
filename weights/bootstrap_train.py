"""Step 1 of the classic files' recipes (weights/README.md): a small LiteSR trained on a time budget.

Kept because those recipes start from it; new models should use `sr train`.
PSNR-oriented: L1 loss, Adam, cosine schedule, EMA weights exported, LR made
with the same MATLAB-compatible bicubic `sr eval` uses, Set5 validation.

    python weights/bootstrap_train.py --scale 4 --out runs/boot_x4 --minutes 50

The schedule is set in wall-clock time. `--minutes` bounds the run; `--steps-per-second` only
plans the step total (minutes x 60 x rate). The cosine's progress at each step is the larger of
steps done over that total and time spent over `--minutes`, and the run stops at whichever ends
first. The patches (`--seed`), the initial weights and the arithmetic (one thread by default) are
the same on every run, so a run that stays ahead of the planned rate from start to end follows the
step count alone and repeats exactly (on the same software). A run that falls behind gets learning
rates and a step count that depend on the machine's speed, and cannot be repeated exactly. The
bootstraps of the shipped classic files fell behind (9,293-10,028 of 12,960 planned steps in their
second legs): they cannot be reproduced bit for bit. log.jsonl records the step, learning rate and
elapsed time at every validation.
"""
from __future__ import annotations

import argparse
import copy
import glob
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from sr_cli.archs import build_arch
from sr_cli.metrics import calculate_psnr
from sr_cli.resize import imresize, modcrop
from sr_cli.weights import save_model


def load_folder(folder: str) -> list[np.ndarray]:
    files = sorted(f for f in glob.glob(f"{folder}/**/*", recursive=True)
                   if f.lower().endswith((".png", ".bmp", ".jpg", ".jpeg")))
    return [np.asarray(Image.open(f).convert("RGB")) for f in files]


def random_batch(images, rng: np.random.Generator, batch: int, hr_patch: int) -> torch.Tensor:
    crops = []
    for _ in range(batch):
        img = images[rng.integers(len(images))]
        h, w = img.shape[:2]
        y, x = rng.integers(h - hr_patch + 1), rng.integers(w - hr_patch + 1)
        crop = img[y:y + hr_patch, x:x + hr_patch]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        crop = np.rot90(crop, k=int(rng.integers(4)))
        crops.append(np.ascontiguousarray(crop))
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255


def make_lr(hr: torch.Tensor, scale: int) -> torch.Tensor:
    # Quantised to 8 bits, as real LR files (and the benchmark's LR) are.
    return (imresize(hr, 1 / scale) * 255).round().clamp(0, 255) / 255


@torch.no_grad()
def validate(net, images, scale: int) -> float:
    scores = []
    for hr in images:
        hr = modcrop(hr, scale)
        lr = make_lr(torch.from_numpy(hr).permute(2, 0, 1)[None].float() / 255, scale)
        sr = net(lr).clamp(0, 1)[0].permute(1, 2, 0).mul(255).round().byte().numpy()
        scores.append(calculate_psnr(sr, hr, crop_border=scale))
    return float(np.mean(scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--arch", default="litesr")
    parser.add_argument("--params", default='{"num_feat": 32, "num_blocks": 6}')
    parser.add_argument("--data", default="../shared/data/train")
    parser.add_argument("--val", default="../shared/data/benchmark/Set5")
    parser.add_argument("--minutes", type=float, default=50,
                        help="Wall-clock budget; drives the schedule whenever the run is behind the planned speed.")
    parser.add_argument("--steps-per-second", type=float, default=2.0,
                        help="Planned speed: sets total steps (minutes x 60 x this).")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=32, help="LR patch size.")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", help="Start from these weights (same arch and params).")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    params = {"scale": args.scale, **json.loads(args.params)}
    net = build_arch(args.arch, **params)
    if args.init:
        from sr_cli.weights import load_model
        net.load_state_dict(load_model(args.init).net.state_dict())
    ema = copy.deepcopy(net).eval()
    optimiser = torch.optim.Adam(net.parameters(), lr=args.lr, betas=(0.9, 0.99))
    total_steps = int(args.minutes * 60 * args.steps_per_second)
    hr_patch = args.patch * args.scale
    images = [im for im in load_folder(args.data) if min(im.shape[:2]) >= hr_patch]
    val_images = load_folder(args.val)
    best = -math.inf
    start = time.time()
    log = open(out / "log.jsonl", "a")
    step = 0
    while step < total_steps and time.time() - start < args.minutes * 60:
        # Progress is the larger of steps/total and time/--minutes, so the cosine reaches its end
        # whichever runs out first: ahead of the planned rate this is the step count alone
        # (repeatable), behind it the wall clock (not repeatable).
        progress = min(1.0, max(step / total_steps, (time.time() - start) / (args.minutes * 60)))
        lr_now = 1e-6 + 0.5 * (args.lr - 1e-6) * (1 + math.cos(math.pi * progress))
        for group in optimiser.param_groups:
            group["lr"] = lr_now
        hr = random_batch(images, rng, args.batch, hr_patch)
        lr_img = make_lr(hr, args.scale)
        loss = F.l1_loss(net(lr_img), hr)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        step += 1
        with torch.no_grad():
            decay = min(0.999, (1 + step) / (10 + step))
            for p_ema, p in zip(ema.parameters(), net.parameters()):
                p_ema.lerp_(p, 1 - decay)
        if step % 500 == 0 or progress >= 1.0:
            psnr = validate(ema, val_images, args.scale)
            record = {"step": step, "loss": loss.item(), "lr": lr_now, "val_psnr_set5": psnr,
                      "elapsed_s": round(time.time() - start, 1)}
            print(json.dumps(record), flush=True)
            log.write(json.dumps(record) + "\n")
            log.flush()
            if psnr > best:
                best = psnr
                save_model(ema, out / "model.safetensors", arch=args.arch, params=params, extra={
                    "steps": str(step), "val_psnr_set5": f"{psnr:.3f}", "data": "T91+BSDS200 (291 images)",
                    "trainer": "weights/bootstrap_train.py", "args": json.dumps(vars(args))})
    psnr = validate(ema, val_images, args.scale)
    save_model(ema, out / "last.safetensors", arch=args.arch, params=params, extra={
        "steps": str(step), "val_psnr_set5": f"{psnr:.3f}", "trainer": "weights/bootstrap_train.py",
        "args": json.dumps(vars(args))})
    print(json.dumps({"final_step": step, "val_psnr_set5": psnr, "best": best}), flush=True)


if __name__ == "__main__":
    main()
