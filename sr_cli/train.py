"""PSNR-oriented training: ``train(TrainConfig(...)) -> run folder``.

One run lives in one folder (RUN_DIR):

  model.safetensors       EMA weights (our weights format, loads with ``weights.load_model``),
                          written at every validation and at the end
  model_best.safetensors  the EMA weights with the best validation PSNR so far
  checkpoint.safetensors  model, EMA and optimiser tensors (every ``save_every`` steps and at the end)
  checkpoint.json         step, RNG states, optimiser hyperparameters, config: the non-tensor state
  log.jsonl               one JSON object per log line / validation
  config.json             the run's configuration

Resuming (``resume=True``) restores everything, and the data pipeline gives the
same samples for the same step (items depend only on their global sample number),
so N steps straight and N/2 + resume + N/2 give identical weights on the CPU.

The learning rate is a pure function of the step (``lr_at``): linear warmup, then
cosine decay to ``min_lr`` or a step decay (x ``gamma`` at each milestone); nothing
about the schedule needs saving beyond the step.
"""
from __future__ import annotations

import base64
import copy
import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn as nn

from .archs import build_arch

CHECKPOINT = "checkpoint.safetensors"
CHECKPOINT_STATE = "checkpoint.json"
PIXEL_LOSS_NAMES = ("l1", "mse", "charbonnier")


@dataclass(kw_only=True)
class TrainConfig:
    arch: str
    scale: int
    data: list[str]
    out: str
    arch_params: dict[str, Any] = field(default_factory=dict)
    val: Optional[str] = None
    patch: int = 48                 # LR patch size; HR patches are patch * scale
    batch: int = 16
    iters: int = 100_000
    lr: float = 2e-4
    min_lr: float = 1e-7
    schedule: str = "cosine"        # cosine | step
    warmup: int = 0                 # linear warmup steps
    milestones: list[int] = field(default_factory=list)  # step schedule; default: halves at 1/2, 3/4
    gamma: float = 0.5
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    loss: dict[str, float] = field(default_factory=lambda: {"l1": 1.0})
    ema: float = 0.999              # 0 disables the EMA (the raw weights are exported)
    grad_clip: Optional[float] = None
    device: str = "auto"
    seed: int = 0
    resume: bool = False
    workers: int = 4
    epoch_length: Optional[int] = None  # virtual epoch, in samples (default: number of images)
    val_every: int = 5000
    save_every: int = 5000
    log_every: int = 100
    threads: Optional[int] = None
    init: Optional[str] = None      # weights file to initialise the generator from
    channels_last: Optional[bool] = None  # default: on CUDA only (on CPUs it does not speed training up)
    command: str = ""               # provenance for the exported weights

    def __post_init__(self):
        if isinstance(self.data, (str, Path)):
            self.data = [self.data]
        self.data = [str(d) for d in self.data]
        self.out = str(self.out)
        self.val = str(self.val) if self.val else None
        self.init = str(self.init) if self.init else None
        self.betas = tuple(float(b) for b in self.betas)
        if self.schedule not in ("cosine", "step"):
            raise ValueError(f"unknown schedule {self.schedule!r} (cosine, step)")
        for name in ("patch", "batch", "iters", "val_every", "save_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema decay must be in [0, 1), got {self.ema}")
        unknown = [k for k in self.loss if k not in PIXEL_LOSS_NAMES]
        if unknown or not self.loss:
            raise ValueError(f"PSNR training takes pixel losses ({', '.join(PIXEL_LOSS_NAMES)}); got {', '.join(unknown) or 'none'}")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------
# small pieces


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


def build_loss(weights: dict[str, float]) -> Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]:
    """Weighted pixel losses; returns each term and their sum under 'total'."""
    from .losses import build_pixel_loss
    terms = {name: (build_pixel_loss(name), w) for name, w in weights.items()}

    def compute(pred, target):
        out = {name: fn(pred, target) for name, (fn, _) in terms.items()}
        out["total"] = sum(w * out[name] for name, (_, w) in terms.items())
        return out
    return compute


def psnr_y(sr: np.ndarray, hr: np.ndarray, *, crop_border: int) -> float:
    """PSNR on the Y channel (BT.601), literature convention; HWC uint8 RGB."""
    try:
        from .metrics import calculate_psnr
    except ImportError:
        return _psnr_y_fallback(sr, hr, crop_border=crop_border)
    return float(calculate_psnr(sr, hr, crop_border=crop_border, test_y_channel=True))


def _psnr_y_fallback(sr: np.ndarray, hr: np.ndarray, *, crop_border: int) -> float:
    def y(img):
        return img.astype(np.float64) @ np.array([65.481, 128.553, 24.966]) / 255.0 + 16.0
    a, b = y(sr), y(hr)
    if crop_border:
        a, b = a[crop_border:-crop_border, crop_border:-crop_border], b[crop_border:-crop_border, crop_border:-crop_border]
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


class EMA:
    """Exponential moving average of a network's parameters (buffers copied).

    The decay ramps up as min(decay, (1 + n) / (10 + n)) so that short runs and
    early validations are not dominated by the random initialisation.
    """

    def __init__(self, net: nn.Module, decay: float):
        self.decay = decay
        self.net = copy.deepcopy(net).eval().requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        ema_params = list(self.net.parameters())
        torch._foreach_lerp_(ema_params, [p.detach() for p in net.parameters()], 1.0 - d)
        for b_ema, b in zip(self.net.buffers(), net.buffers()):
            b_ema.copy_(b)


def _rng_to_json(state: torch.Tensor) -> str:
    return base64.b64encode(state.cpu().numpy().tobytes()).decode("ascii")


def _rng_from_json(text: str) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(base64.b64decode(text), dtype=np.uint8).copy())


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    tmp.replace(path)


def save_checkpoint(run_dir: Path, *, step: int, net: nn.Module, ema: Optional[EMA],
                    optimizer: torch.optim.Optimizer, config: TrainConfig, best: dict[str, Any]) -> None:
    """Tensors to checkpoint.safetensors, everything else to checkpoint.json (both replaced atomically)."""
    from safetensors.torch import save_file
    tensors = {f"model.{k}": v for k, v in net.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v for k, v in ema.net.state_dict().items()})
    opt_state = optimizer.state_dict()
    opt_scalars: dict[str, dict[str, Any]] = {}
    for idx, state in opt_state["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{key}"] = value
            else:
                opt_scalars.setdefault(str(idx), {})[key] = value
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    state = {
        "step": step,
        "ema_updates": ema.updates if ema is not None else 0,
        "optim_param_groups": opt_state["param_groups"],
        "optim_scalars": opt_scalars,
        "rng_torch": _rng_to_json(torch.get_rng_state()),
        "rng_cuda": [_rng_to_json(s) for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
        "best": best,
        "config": config.to_json(),
    }
    tmp = run_dir / (CHECKPOINT + ".tmp")
    save_file(tensors, str(tmp), metadata={"step": str(step)})
    tmp.replace(run_dir / CHECKPOINT)
    _write_json(run_dir / CHECKPOINT_STATE, state)


def load_checkpoint(run_dir: Path, *, net: nn.Module, ema: Optional[EMA],
                    optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore what save_checkpoint wrote; returns the JSON state (step, best, config)."""
    from safetensors import safe_open
    state = json.loads((run_dir / CHECKPOINT_STATE).read_text())
    with safe_open(str(run_dir / CHECKPOINT), framework="pt") as handle:
        if int((handle.metadata() or {}).get("step", -1)) != state["step"]:
            raise ValueError(f"{run_dir}: {CHECKPOINT} and {CHECKPOINT_STATE} are from different steps")
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    def section(prefix):
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    net.load_state_dict(section("model."), strict=True)
    if ema is not None:
        ema_state = section("ema.")
        if not ema_state:
            raise ValueError(f"{run_dir}: checkpoint has no EMA weights; resume with the same --ema")
        ema.net.load_state_dict(ema_state, strict=True)
        ema.updates = state["ema_updates"]
    opt_state: dict[int, dict[str, Any]] = {}
    for key, value in section("optim.").items():
        idx, name = key.split(".", 1)
        opt_state.setdefault(int(idx), {})[name] = value
    for idx, scalars in state["optim_scalars"].items():
        opt_state.setdefault(int(idx), {}).update(scalars)
    optimizer.load_state_dict({"state": opt_state, "param_groups": state["optim_param_groups"]})
    torch.set_rng_state(_rng_from_json(state["rng_torch"]))
    if state["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_rng_from_json(s) for s in state["rng_cuda"]])
    return state


def load_init_weights(net: nn.Module, path: str | Path) -> tuple[int, list[str]]:
    """Copy every tensor of ``path`` whose name and shape match into ``net``.

    For fine-tuning across scales the upsampling tail differs and is left as
    built; returns (tensors loaded, names left as built). Raises when fewer than
    half of the network's tensors match (most likely a different architecture).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such weights file: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        source = load_file(str(path))
    else:
        source = torch.load(str(path), map_location="cpu", weights_only=True)
        for key in ("params_ema", "params", "state_dict", "model"):  # BasicSR / common wrappers
            if isinstance(source, dict) and key in source and isinstance(source[key], dict):
                source = source[key]
                break
    own = net.state_dict()
    matched = {k: v for k, v in source.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if len(matched) * 2 < len(own):
        raise ValueError(f"{path}: only {len(matched)} of {len(own)} tensors match this architecture")
    net.load_state_dict(matched, strict=False)
    return len(matched), sorted(set(own) - set(matched))


# ---------------------------------------------------------------------------
# the loop


def print_record(record: dict[str, Any]) -> None:
    if "val_psnr" in record:
        print(f"step {record['step']:>7}  val PSNR {record['val_psnr']:.3f} dB (best {record['best_psnr']:.3f} "
              f"at {record['best_step']})  {record['val_seconds']:.1f}s", flush=True)
    elif "loss" in record:
        print(f"step {record['step']:>7}  loss {record['loss']:.5f}  lr {record['lr']:.3g}  "
              f"{record['it_s']:.2f} it/s  data wait {record['data_wait']:.0%}  epoch {record['epoch']:.2f}", flush=True)
    else:
        print(record.get("message", json.dumps(record)), flush=True)


def train(config: TrainConfig, *, on_log: Callable[[dict[str, Any]], None] = print_record) -> Path:
    """Train a generator as ``config`` says; returns the run folder."""
    from torch.utils.data import DataLoader

    from .data import HRPatchDataset, SampleRange, load_validation, worker_init
    from .upscale import pick_device
    from .weights import read_metadata, save_model

    run_dir = Path(config.out)
    has_checkpoint = (run_dir / CHECKPOINT_STATE).is_file()
    if has_checkpoint and not config.resume:
        raise ValueError(f"{run_dir} already has a checkpoint: resume it (--resume), or choose another folder")
    if config.threads:
        torch.set_num_threads(config.threads)
    device = pick_device(config.device)
    torch.manual_seed(config.seed)

    params = {**config.arch_params, "scale": config.scale}
    net = build_arch(config.arch, **params).to(device)
    if config.init and not has_checkpoint:
        loaded, rest = load_init_weights(net, config.init)
        on_log({"message": f"init: {loaded} tensors from {config.init}" + (f"; left as built: {', '.join(rest)}" if rest else "")})
    channels_last = device.type == "cuda" if config.channels_last is None else config.channels_last
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=memory_format)
    net.train()
    ema = EMA(net, config.ema) if config.ema > 0 else None
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr, betas=config.betas,
                                 weight_decay=config.weight_decay)
    loss_fn = build_loss(config.loss)

    step = 0
    best: dict[str, Any] = {"psnr": None, "step": None}
    if has_checkpoint:
        _check_compatible(json.loads((run_dir / CHECKPOINT_STATE).read_text())["config"], config)
        state = load_checkpoint(run_dir, net=net, ema=ema, optimizer=optimizer)
        step, best = state["step"], state["best"]
        on_log({"message": f"resumed {run_dir} at step {step}"})
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_json(run_dir / "config.json", config.to_json())

    dataset = HRPatchDataset(config.data, scale=config.scale, patch=config.patch, seed=config.seed,
                             epoch_length=config.epoch_length)
    if dataset.skipped:
        on_log({"message": f"data: skipped {len(dataset.skipped)} images smaller than the "
                           f"{config.patch * config.scale}px HR patch"})
    on_log({"message": f"data: {len(dataset.images)} images ({dataset.nbytes / 1e6:.0f} MB); "
                       f"{sum(p.numel() for p in net.parameters()):,} parameters; device {device}"})
    val_images = load_validation(config.val, scale=config.scale) if config.val else []
    loader = DataLoader(dataset, batch_size=config.batch, sampler=SampleRange(step * config.batch, config.iters * config.batch),
                        num_workers=config.workers, worker_init_fn=worker_init if config.workers else None,
                        pin_memory=device.type == "cuda", drop_last=True,
                        persistent_workers=False, prefetch_factor=4 if config.workers else None)

    export_net = ema.net if ema is not None else net
    log_file = open(run_dir / "log.jsonl", "a")

    def log(record: dict[str, Any]) -> None:
        log_file.write(json.dumps(record) + "\n")
        log_file.flush()
        on_log(record)

    def export(path: Path, val_psnr: Optional[float]) -> None:
        extra = {"steps": step, "data": config.data, "command": config.command, "loss": config.loss}
        if val_psnr is not None:
            name = Path(config.val).name
            extra.update(val_psnr=round(val_psnr, 4), val=name, psnr={name: round(val_psnr, 4)})
        save_model(export_net, path, arch=config.arch, params=params, extra=extra)

    def validate() -> float:
        from .model import SRModel
        start = time.perf_counter()
        was_training = export_net.training
        model = SRModel.from_net(export_net, config.arch, params)
        model.channels_last = channels_last
        scores = {}
        for item in val_images:
            sr = model(item.lr.to(device))[0]
            sr = sr.mul(255.0).round().clamp(0, 255).byte().permute(1, 2, 0).cpu().numpy()
            scores[item.name] = psnr_y(sr, item.hr, crop_border=config.scale)
        export_net.train(was_training)
        value = float(np.mean(list(scores.values())))
        improved = best["psnr"] is None or value > best["psnr"]
        if improved:
            best.update(psnr=value, step=step)
            export(run_dir / "model_best.safetensors", value)
        export(run_dir / "model.safetensors", value)
        log({"step": step, "val_psnr": value, "val": scores, "best_psnr": best["psnr"], "best_step": best["step"],
             "val_seconds": time.perf_counter() - start})
        return value

    try:
        window_start, data_wait, window_steps = time.perf_counter(), 0.0, 0
        fetch_start = time.perf_counter()
        for lr_img, hr_img in loader:
            data_wait += time.perf_counter() - fetch_start
            lr_img = lr_img.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            hr_img = hr_img.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            current_lr = lr_at(step, config)
            for group in optimizer.param_groups:
                group["lr"] = current_lr
            sr_img = net(lr_img)
            losses = loss_fn(sr_img, hr_img)
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            grad_norm = None
            if config.grad_clip:
                grad_norm = float(torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip))
            optimizer.step()
            if ema is not None:
                ema.update(net)
            step += 1
            window_steps += 1

            if step % config.log_every == 0 or step == config.iters:
                elapsed = time.perf_counter() - window_start
                record = {"step": step, "loss": float(losses["total"].detach()),
                          "losses": {k: float(v.detach()) for k, v in losses.items() if k != "total"},
                          "lr": current_lr, "it_s": window_steps / elapsed, "data_wait": data_wait / elapsed,
                          "epoch": step * config.batch / len(dataset)}
                if grad_norm is not None:
                    record["grad_norm"] = grad_norm
                if not math.isfinite(record["loss"]):
                    raise RuntimeError(f"loss is {record['loss']} at step {step}; lower --lr or set a gradient clip")
                log(record)
            if val_images and (step % config.val_every == 0 or step == config.iters):
                validate()
            if step % config.save_every == 0 or step == config.iters:
                save_checkpoint(run_dir, step=step, net=net, ema=ema, optimizer=optimizer, config=config, best=best)
            if step % config.log_every == 0:
                window_start, data_wait, window_steps = time.perf_counter(), 0.0, 0
            fetch_start = time.perf_counter()
        # The end (also reached at once when resuming a finished run): final checkpoint and export.
        state_file = run_dir / CHECKPOINT_STATE
        if not state_file.is_file() or json.loads(state_file.read_text())["step"] != step:
            save_checkpoint(run_dir, step=step, net=net, ema=ema, optimizer=optimizer, config=config, best=best)
        model_file = run_dir / "model.safetensors"
        if not model_file.is_file() or read_metadata(model_file).get("steps") != str(step):
            validate() if val_images else export(model_file, None)
    finally:
        log_file.close()
    return run_dir


# Settings that must not change on resume (the rest, e.g. iters, workers, val, may).
_FIXED_ON_RESUME = ("arch", "arch_params", "scale", "patch", "batch", "seed", "ema", "loss", "data")


def _check_compatible(saved: dict[str, Any], config: TrainConfig) -> None:
    now = config.to_json()
    changed = [k for k in _FIXED_ON_RESUME if json.dumps(saved.get(k), sort_keys=True) != json.dumps(now[k], sort_keys=True)]
    if changed:
        details = "; ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in changed)
        raise ValueError(f"cannot resume with different settings ({details})")
