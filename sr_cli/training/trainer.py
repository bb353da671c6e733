"""The training loop: ``train(TrainConfig(...)) -> run folder``.

``Trainer`` sets a run up from its config (networks, optimisers, a checkpoint to resume, the
data), then ``run()`` steps to ``iters``, logging every ``log_every`` steps, validating and
exporting every ``val_every``, checkpointing every ``save_every``, and once more at the end.

The learning rate is a pure function of the step (``lr_at``): linear warmup, then
cosine decay to ``min_lr`` or a step decay (x ``gamma`` at each milestone); nothing
about the schedule needs saving beyond the step. The discriminator follows the
same schedule scaled to ``d_lr``.
"""
from __future__ import annotations

import contextlib
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..archs import build_arch
from ..archs.discriminators import build_discriminator
from ..data import HRPatchDataset, SampleRange, load_validation, worker_init
from ..lock import hold
from ..imageio import from_tensor
from ..metrics import calculate_psnr
from ..weights import read_metadata, save_model
from .checkpoint import (CHECKPOINT_STATE, load_checkpoint, load_init_weights, load_pretrained, load_pretrained_disc,
                         read_checkpoint_state, save_checkpoint, write_json)
from .config import GRID_LOSSES, TrainConfig, check_resumable
from .distributed import Distributed, check_ranks_agree, mean_over_ranks, process_group
from .logging import RunLog, print_record, quiet
from .objective import AMP_DTYPES, EMA, GeneratorObjective, TrainStep

OnLog = Callable[[dict[str, Any]], None]


def train(config: TrainConfig, *, on_log: OnLog = print_record) -> Path:
    """Train a generator as ``config`` says; returns the run folder.

    Under torchrun every process calls this; only rank 0 calls ``on_log`` and writes files. Rank 0
    holds the run folder's lock (``RUN_LOCK``) throughout, so a second run into the same ``--out``
    fails at once naming the process that has it. A start that fails (before the first step)
    leaves no run folder it created.
    """
    with process_group(config.device) as (dist_info, device):
        with _run_folder(Path(config.out), dist_info.is_main) as started:
            trainer = Trainer(config, on_log=on_log, dist_info=dist_info, device=device)
            started.append(True)
            return trainer.run()


RUN_LOCK = ".sr-train.lock"


@contextlib.contextmanager
def _run_folder(run_dir: Path, main: bool):
    """Rank 0 creates ``run_dir`` if needed and locks it for the block. The block appends to the
    list it is given once the run has started; if it raises before that and the folder was made
    here, the folder is removed again (a failed start leaves nothing)."""
    started: list = []
    if not main:
        yield started
        return
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    with hold(run_dir / RUN_LOCK, f"run folder {run_dir}"):  # Busy: not ours, nothing removed
        try:
            yield started
        except BaseException:
            if created and not started:
                shutil.rmtree(run_dir, ignore_errors=True)
            raise


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate for optimiser step ``step`` (0-based)."""
    if config.warmup and step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    if config.schedule == "cosine":
        span = max(config.iters - config.warmup, 1)
        t = min(max(step - config.warmup, 0) / span, 1.0)
        return config.min_lr + (config.lr - config.min_lr) * 0.5 * (1 + math.cos(math.pi * t))
    milestones = config.milestones or [config.iters // 2, config.iters * 3 // 4]
    return config.lr * config.gamma ** sum(step >= m for m in milestones)


class Trainer:
    """One run. Set up once (in this order, which fixes what the seeded RNG draws): the generator
    and its starting weights, EMA and optimiser, the discriminator, the objective, a checkpoint
    to resume, DistributedDataParallel, the data. Then ``step`` and ``best`` (the best
    validation so far) change as ``run()`` goes.

    Setting-up messages go to ``on_log`` only; from ``run()`` on, records also go to log.jsonl
    (and log.csv). Only rank 0 logs, validates, checkpoints and exports.
    """

    def __init__(self, config: TrainConfig, *, on_log: OnLog, dist_info: Distributed, device: torch.device):
        self.config, self.dist_info, self.device = config, dist_info, device
        self.main = dist_info.is_main
        self.on_log = on_log if self.main else quiet
        self.run_dir = Path(config.out)
        has_checkpoint = (self.run_dir / CHECKPOINT_STATE).is_file()
        if has_checkpoint and not config.resume:
            raise ValueError(f"{self.run_dir} already has a checkpoint: resume it (--resume), or choose another folder")
        if config.resume and not has_checkpoint:
            raise ValueError(f"{self.run_dir} has no checkpoint to resume; leave out --resume to start a new run "
                             "there, or give the folder of the run to continue")
        if config.batch % dist_info.world_size:
            raise ValueError(f"the batch ({config.batch}) must be a multiple of the number of processes "
                             f"({dist_info.world_size}): it is the batch of each step over all of them")
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        self._build_networks(start_weights=not has_checkpoint)
        self.step = 0
        self.best: dict[str, Any] = {"psnr": None, "step": None}
        if has_checkpoint:
            check_resumable(read_checkpoint_state(self.run_dir)["config"], config)
            state = load_checkpoint(self.run_dir, net=self.net, ema=self.ema, optimizer=self.optimizer,
                                    disc=self.disc, disc_optimizer=self.d_optimizer, scalers=self.scalers)
            self.step, self.best = state["step"], state["best"]
            self.on_log({"message": f"resumed {self.run_dir} at step {self.step}"})
        if self.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_json(self.run_dir / "config.json", config.to_json())
        g_model, d_model = self.net, self.disc
        if dist_info.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP
            ids = [device.index] if device.type == "cuda" else None
            g_model = DDP(self.net, device_ids=ids)
            if self.disc is not None:
                d_model = DDP(self.disc, device_ids=ids)
        self.train_step = TrainStep(config=config, net=self.net, g_model=g_model, ema=self.ema,
                                    optimizer=self.optimizer, objective=self.objective, disc=self.disc,
                                    d_model=d_model, d_optimizer=self.d_optimizer, scalers=self.scalers,
                                    amp_dtype=self.amp_dtype, device_type=device.type)
        self._build_data()
        self.export_net = self.ema.net if self.ema is not None else self.net
        self.log: OnLog = self.on_log  # run() adds the files

    def _build_networks(self, *, start_weights: bool) -> None:
        """Generator (from --init or --pretrained-g when ``start_weights``), EMA, optimisers,
        discriminator, objective and AMP scalers."""
        config, device = self.config, self.device
        self.params = {**config.arch_params, "scale": config.scale}
        net = build_arch(config.arch, **self.params).to(device)
        if "kl" in config.loss and not hasattr(net, "kl_divergence"):
            raise ValueError(f"the kl loss needs an architecture with a KL term (vae), not {config.arch}")
        multiple = int(getattr(net, "size_multiple", 1))
        if config.patch % multiple:
            raise ValueError(f"{config.arch} needs the patch to be a multiple of {multiple}, got {config.patch}")
        if start_weights and config.init:
            loaded, rest = load_init_weights(net, config.init)
            self.on_log({"message": f"init: {loaded} tensors from {config.init}"
                                    + (f"; left as built: {', '.join(rest)}" if rest else "")})
        elif start_weights and config.pretrained_g:
            self.on_log({"message": load_pretrained(net, config)})
        self.channels_last = device.type == "cuda" if config.channels_last is None else config.channels_last
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        self.net = net.to(memory_format=self.memory_format)
        self.net.train()
        self.ema = EMA(self.net, config.ema) if config.ema > 0 else None
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.lr, betas=config.betas,
                                          weight_decay=config.weight_decay)
        self.disc = self.d_optimizer = None
        if config.gan:
            self.disc = build_discriminator(config.disc, **config.disc_params).to(device).to(
                memory_format=self.memory_format)
            if start_weights and config.pretrained_d:
                self.on_log({"message": load_pretrained_disc(self.disc, config.pretrained_d)})
            self.disc.train()
            d_multiple = int(getattr(self.disc, "size_multiple", 1))
            if (config.patch * config.scale) % d_multiple:
                raise ValueError(f"the {config.disc} discriminator needs HR patches (patch x scale = "
                                 f"{config.patch * config.scale}) that are multiples of {d_multiple}")
            self.d_optimizer = torch.optim.Adam(self.disc.parameters(), lr=config.d_lr or config.lr,
                                                betas=config.betas)
        self.objective = GeneratorObjective(config, device=device)
        self.amp_dtype = AMP_DTYPES.get(config.amp) if config.amp else None
        if self.amp_dtype is not None and device.type != "cuda":
            self.on_log({"message": f"amp: {config.amp} autocast is for CUDA; training in float32 on {device.type}"})
            self.amp_dtype = None
        self.scalers = {name: torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
                        for name in ("g", "d")}

    def _build_data(self) -> None:
        """The training set, its sampler from the current step on (this rank's share), the loader,
        and the validation images (rank 0)."""
        config, dist_info, device = self.config, self.dist_info, self.device
        self.dataset = HRPatchDataset(config.data, scale=config.scale, patch=config.patch, seed=config.seed,
                                      epoch_length=config.epoch_length, degradation=config.degradation,
                                      scale_aug=config.scale_aug,
                                      block_aligned=(any(k in config.loss for k in GRID_LOSSES)
                                                     or bool(getattr(self.net, "block_grid", 0))))
        dataset = self.dataset
        if dataset.skipped:
            self.on_log({"message": f"data: skipped {len(dataset.skipped)} images smaller than the "
                                    f"{config.patch * config.scale}px HR patch"})
        d_count = (f"; discriminator {config.disc} {sum(p.numel() for p in self.disc.parameters()):,}"
                   if self.disc is not None else "")
        procs = f" x {dist_info.world_size} processes" if dist_info.enabled else ""
        shrunk = (f" (with {dataset.shrunk_count} copies shrunk by {', '.join(map(str, config.scale_aug))})"
                  if config.scale_aug else "")
        self.on_log({"message": f"data: {len(dataset.images)} images{shrunk} ({dataset.nbytes / 1e6:.0f} MB), LR by "
                                f"{config.degradation}; {sum(p.numel() for p in self.net.parameters()):,} "
                                f"parameters{d_count}; device {device}{procs}"})
        self.val_images = load_validation(config.val, scale=config.scale) if config.val and self.main else []
        sampler = SampleRange(self.step * config.batch, config.iters * config.batch, batch=config.batch,
                              rank=dist_info.rank, world_size=dist_info.world_size)
        # The loader gets its own generator so that it does not draw from the global RNG (which the
        # checkpoint restores, and which e.g. the VAE's sampling uses).
        self.loader = DataLoader(dataset, batch_size=config.batch // dist_info.world_size, sampler=sampler,
                                 num_workers=config.workers, worker_init_fn=worker_init if config.workers else None,
                                 pin_memory=device.type == "cuda", drop_last=True,
                                 generator=torch.Generator().manual_seed(config.seed),
                                 persistent_workers=False, prefetch_factor=4 if config.workers else None)

    # -- the loop

    def run(self) -> Path:
        """Train from the current step to ``iters``, then the final checkpoint and export."""
        config = self.config
        csv_terms = list(config.loss) if config.csv else None
        with RunLog(self.on_log, self.run_dir if self.main else None, csv_terms=csv_terms,
                    gan=bool(config.gan)) as self.log:
            window_start, data_wait, window_steps = time.perf_counter(), 0.0, 0
            fetch_start = time.perf_counter()
            for lr_img, hr_img in self.loader:
                data_wait += time.perf_counter() - fetch_start
                lr_img = lr_img.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
                hr_img = hr_img.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
                current_lr = lr_at(self.step, config)
                self.set_lr(current_lr)
                losses, d_stats, grad_norm = self.train_step(lr_img, hr_img)
                self.step += 1
                window_steps += 1
                if self.step % config.log_every == 0 or self.step == config.iters:
                    self.log_progress(losses, d_stats, grad_norm, lr=current_lr, steps=window_steps,
                                      seconds=time.perf_counter() - window_start, data_wait=data_wait)
                if self.main:
                    if self.val_images and (self.step % config.val_every == 0 or self.step == config.iters):
                        self.validate()
                    if self.step % config.save_every == 0 or self.step == config.iters:
                        self.checkpoint()
                if self.step % config.log_every == 0:
                    window_start, data_wait, window_steps = time.perf_counter(), 0.0, 0
                fetch_start = time.perf_counter()
            self.finish()
        return self.run_dir

    def set_lr(self, current: float) -> None:
        """The generator's learning rate, and the discriminator's scaled by d_lr / lr."""
        config = self.config
        for group in self.optimizer.param_groups:
            group["lr"] = current
        if self.d_optimizer is not None:
            d_current = current * (config.d_lr / config.lr if config.d_lr and config.lr else 1.0)
            for group in self.d_optimizer.param_groups:
                group["lr"] = d_current

    def log_progress(self, losses: dict[str, torch.Tensor], d_stats: dict[str, float], grad_norm: Optional[float],
                     *, lr: float, steps: int, seconds: float, data_wait: float) -> None:
        """A training log record for the ``steps`` steps of the last ``seconds`` (values averaged over
        the ranks); raises if a loss is not finite."""
        config = self.config
        values = {"loss": float(losses["total"].detach()), **d_stats,
                  **{f"losses.{k}": float(v.detach()) for k, v in losses.items() if k != "total"}}
        values = mean_over_ranks(values, self.dist_info, self.device)
        it_s = steps / seconds
        record = {"step": self.step, "loss": values["loss"],
                  "losses": {k[len("losses."):]: v for k, v in values.items() if k.startswith("losses.")},
                  **{k: values[k] for k in d_stats},
                  "lr": lr, "it_s": it_s, "eta_s": (config.iters - self.step) / it_s if it_s > 0 else None,
                  "data_wait": data_wait / seconds, "epoch": self.step * config.batch / len(self.dataset)}
        if grad_norm is not None:
            record["grad_norm"] = grad_norm
        if not all(math.isfinite(v) for v in values.values()):
            raise RuntimeError(f"loss is {record['loss']} (D {record.get('d_loss')}) at step {self.step}; "
                               f"lower --lr or set a gradient clip")
        self.log(record)

    def finish(self) -> None:
        """The end (also reached at once when resuming a finished run): the final checkpoint and
        export where the last ones are older; under torchrun, the ranks' weights compared."""
        if self.main:
            state_file = self.run_dir / CHECKPOINT_STATE
            if not state_file.is_file() or json.loads(state_file.read_text())["step"] != self.step:
                self.checkpoint()
            model_file = self.run_dir / "model.safetensors"
            if not model_file.is_file() or read_metadata(model_file).get("steps") != str(self.step):
                self.validate() if self.val_images else self.export(model_file, None)
        if self.dist_info.enabled:
            check_ranks_agree(self.net, self.disc, self.dist_info, self.log)

    # -- what a run writes

    def export(self, path: Path, val_psnr: Optional[float]) -> None:
        """The exported weights (the EMA's, or the raw ones without an EMA) with their provenance."""
        config = self.config
        extra: dict[str, Any] = {"steps": self.step, "data": config.data, "command": config.command,
                                 "loss": config.loss}
        if config.gan:
            extra.update(gan=config.gan, disc=config.disc)
        if config.degradation != "bicubic":
            extra["degradation"] = config.degradation
        if config.scale_aug:
            extra["scale_aug"] = config.scale_aug
        if val_psnr is not None:
            name = Path(config.val).name
            extra.update(val_psnr=round(val_psnr, 4), val=name, psnr={name: round(val_psnr, 4)})
        save_model(self.export_net, path, arch=config.arch, params=self.params, extra=extra)

    def validate(self) -> None:
        """Y-channel PSNR of the exported weights on the validation images (whole); exports
        model.safetensors, and model_best.safetensors when it is the best so far."""
        from ..model import SRModel
        start = time.perf_counter()
        export_net = self.export_net
        was_training = export_net.training
        model = SRModel.from_net(export_net, self.config.arch, self.params)
        model.channels_last = self.channels_last
        scores = {}
        for item in self.val_images:
            sr = from_tensor(model(item.lr.to(self.device)), scored=True)  # rounded as sr eval scores
            scores[item.name] = float(calculate_psnr(sr, item.hr, crop_border=self.config.scale,
                                                     test_y_channel=True))
        export_net.train(was_training)
        value = float(np.mean(list(scores.values())))
        if self.best["psnr"] is None or value > self.best["psnr"]:
            self.best.update(psnr=value, step=self.step)
            self.export(self.run_dir / "model_best.safetensors", value)
        self.export(self.run_dir / "model.safetensors", value)
        self.log({"step": self.step, "val_psnr": value, "val": scores, "best_psnr": self.best["psnr"],
                  "best_step": self.best["step"], "val_seconds": time.perf_counter() - start})

    def checkpoint(self) -> None:
        save_checkpoint(self.run_dir, step=self.step, net=self.net, ema=self.ema, optimizer=self.optimizer,
                        config=self.config, best=self.best, disc=self.disc, disc_optimizer=self.d_optimizer,
                        scalers=self.scalers)
