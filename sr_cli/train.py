"""Training: ``train(TrainConfig(...)) -> run folder``.

PSNR-oriented training (pixel losses) by default; with ``gan`` set, the second
stage of SRGAN/ESRGAN: the generator (usually started from a PSNR model with
``pretrained_g``) against a discriminator (``disc``: vgg | unet), with weighted
pixel, perceptual (VGG19), adversarial, feature-matching and KL terms.

One run lives in one folder (RUN_DIR):

  model.safetensors       EMA weights (our weights format, loads with ``weights.load_model``),
                          written at every validation and at the end
  model_best.safetensors  the EMA weights with the best validation PSNR so far
  checkpoint.safetensors  generator, EMA, discriminator and optimiser tensors
                          (every ``save_every`` steps and at the end)
  checkpoint.json         step, RNG states, optimiser hyperparameters, AMP scaler, config
  log.jsonl               one JSON object per log line / validation (log.csv too with ``csv``)
  config.json             the run's configuration

Resuming (``resume=True``) restores everything, and the data pipeline gives the
same samples for the same step (items depend only on their global sample number),
so N steps straight and N/2 + resume + N/2 give identical weights on the CPU, in
GAN mode too.

The learning rate is a pure function of the step (``lr_at``): linear warmup, then
cosine decay to ``min_lr`` or a step decay (x ``gamma`` at each milestone); nothing
about the schedule needs saving beyond the step. The discriminator follows the
same schedule scaled to ``d_lr``.

GAN step (as BasicSR's ESRGAN model): the generator step scores G(lr) with the
discriminator frozen, then ``d_steps`` discriminator steps on the same batch (HR
against the detached G(lr) of that step).

Data parallel: started by ``torchrun`` (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT in the environment), each process takes ``batch / WORLD_SIZE`` of
every global batch (``data.SampleRange``), so the samples and the optimiser's
steps are those of one process with the same ``batch``; gradients are averaged
by DistributedDataParallel (gloo on CPUs, NCCL on CUDA, one GPU per process by
LOCAL_RANK). Rank 0 alone logs, validates, checkpoints and exports; at the end
the ranks compare checksums of their weights. Multi-node runs need the run
folder on a shared file system (resuming reads it on every rank).
"""
from __future__ import annotations

import base64
import contextlib
import copy
import csv
import dataclasses
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn as nn

from .archs import ARCHS, DISCRIMINATORS, build_arch

CHECKPOINT = "checkpoint.safetensors"
CHECKPOINT_STATE = "checkpoint.json"
PIXEL_LOSS_NAMES = ("l1", "mse", "charbonnier")
GAN_ONLY_LOSSES = ("gan", "feature_matching")
DEFAULT_GAN_WEIGHT = 0.1  # Real-ESRGAN's, with l1=1 and perceptual=1
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(kw_only=True)
class TrainConfig:
    arch: str
    scale: int
    data: list[str]
    out: str
    arch_params: dict[str, Any] = field(default_factory=dict)
    val: Optional[str] = None
    patch: int = 48                 # LR patch size; HR patches are patch * scale
    batch: int = 16                 # per step, over all processes of a data-parallel run
    iters: int = 100_000
    lr: float = 2e-4
    min_lr: float = 1e-7
    schedule: str = "cosine"        # cosine | step
    warmup: int = 0                 # linear warmup steps
    milestones: list[int] = field(default_factory=list)  # step schedule; default: halves at 1/2, 3/4
    gamma: float = 0.5
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    # name -> weight: l1, mse, charbonnier, perceptual, kl, and in GAN mode gan, feature_matching
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
    init: Optional[str] = None      # weights file to initialise the generator from (matching tensors)
    pretrained_g: Optional[str] = None  # weights file the generator starts from (all tensors, same arch)
    degradation: str = "bicubic"    # how LR patches are made: bicubic, or a preset of sr_cli.degrade
    scale_aug: list[float] = field(default_factory=list)  # HR shrink factors in (0, 1) added as extra images
    # GAN mode (gan set): adversarial loss kind, discriminator and its optimiser
    gan: Optional[str] = None       # vanilla | lsgan | ragan
    disc: str = "vgg"               # a key of sr_cli.archs.DISCRIMINATORS
    disc_params: dict[str, Any] = field(default_factory=dict)
    gan_weight: Optional[float] = None  # the same as loss["gan"]; default DEFAULT_GAN_WEIGHT
    d_steps: int = 1                # discriminator steps per generator step
    d_lr: Optional[float] = None    # discriminator peak learning rate (default: lr)
    # perceptual loss: torchvision VGG19 state dict, and layer -> weight
    vgg_weights: Optional[str] = None
    perceptual_layers: dict[str, float] = field(default_factory=lambda: {"conv5_4": 1.0})
    vgg_random_init: bool = False   # tests only: random VGG19 weights when vgg_weights is None
    amp: Optional[str] = None       # bf16 | fp16: autocast on CUDA (ignored elsewhere)
    csv: bool = False               # also write log.csv
    channels_last: Optional[bool] = None  # default: on CUDA only (on CPUs it does not speed training up)
    command: str = ""               # provenance for the exported weights

    def __post_init__(self):
        from .losses import GAN_KINDS, LOSS_NAMES, VGG19_LAYER_NAMES
        if isinstance(self.data, (str, Path)):
            self.data = [self.data]
        self.data = [str(d) for d in self.data]
        self.out = str(self.out)
        for name in ("val", "init", "pretrained_g", "vgg_weights"):
            value = getattr(self, name)
            setattr(self, name, str(value) if value else None)
        self.betas = tuple(float(b) for b in self.betas)
        self.loss = {k: float(v) for k, v in self.loss.items()}
        self.perceptual_layers = {k: float(v) for k, v in self.perceptual_layers.items()}
        from .data import shrink_factors
        self.scale_aug = list(shrink_factors(self.scale_aug))
        if self.schedule not in ("cosine", "step"):
            raise ValueError(f"unknown schedule {self.schedule!r} (cosine, step)")
        for name in ("patch", "batch", "iters", "val_every", "save_every", "log_every", "d_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema decay must be in [0, 1), got {self.ema}")
        if self.init and self.pretrained_g:
            raise ValueError("give either init (matching tensors) or pretrained_g (the whole generator), not both")
        unknown = [k for k in self.loss if k not in LOSS_NAMES]
        if unknown:
            raise ValueError(f"unknown loss {', '.join(unknown)}; known: {', '.join(LOSS_NAMES)}")
        if self.gan is None:
            gan_terms = [k for k in GAN_ONLY_LOSSES if k in self.loss] + (["gan_weight"] if self.gan_weight else [])
            if gan_terms:
                raise ValueError(f"{', '.join(gan_terms)} need GAN training (gan: vanilla, lsgan or ragan)")
            if not any(k in self.loss for k in (*PIXEL_LOSS_NAMES, "perceptual")):
                raise ValueError(f"PSNR training takes pixel losses ({', '.join(PIXEL_LOSS_NAMES)}) or perceptual; "
                                 f"got {', '.join(self.loss) or 'none'}")
        else:
            if self.gan not in GAN_KINDS:
                raise ValueError(f"unknown GAN loss {self.gan!r}; known: {', '.join(GAN_KINDS)}")
            if self.disc not in DISCRIMINATORS:
                raise ValueError(f"unknown discriminator {self.disc!r}; known: {', '.join(DISCRIMINATORS)}")
            given = self.loss.get("gan")
            if self.gan_weight is not None and given is not None and float(self.gan_weight) != given:
                raise ValueError(f"the GAN weight is given twice: gan_weight {self.gan_weight} and loss gan={given}")
            weight = float(self.gan_weight if self.gan_weight is not None else
                           given if given is not None else DEFAULT_GAN_WEIGHT)
            self.gan_weight = weight
            self.loss["gan"] = weight
        if "perceptual" in self.loss:
            bad = [k for k in self.perceptual_layers if k not in VGG19_LAYER_NAMES]
            if bad or not self.perceptual_layers:
                raise ValueError(f"unknown VGG19 layers {bad}; known: {', '.join(VGG19_LAYER_NAMES)}")
            if not self.vgg_weights and not self.vgg_random_init:
                raise ValueError("the perceptual loss needs VGG19 weights: a torchvision vgg19 state dict "
                                 "(vgg_weights / --vgg-weights); nothing is downloaded")
        if self.degradation != "bicubic":
            from .degrade import get_pipeline
            get_pipeline(self.degradation)
        if self.amp is not None and self.amp not in AMP_DTYPES:
            raise ValueError(f"unknown amp precision {self.amp!r} ({', '.join(AMP_DTYPES)})")

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


def _optimizer_parts(prefix: str, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimiser's state as tensors ``{prefix}.{param index}.{name}`` plus its JSON parts."""
    opt_state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, state in opt_state["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": opt_state["param_groups"], "scalars": scalars}


def _restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                       param_groups: list, scalars: dict[str, dict[str, Any]]) -> None:
    opt_state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        opt_state.setdefault(int(idx), {})[name] = value
    for idx, values in scalars.items():
        opt_state.setdefault(int(idx), {}).update(values)
    optimizer.load_state_dict({"state": opt_state, "param_groups": param_groups})


def save_checkpoint(run_dir: Path, *, step: int, net: nn.Module, ema: Optional[EMA],
                    optimizer: torch.optim.Optimizer, config: TrainConfig, best: dict[str, Any],
                    disc: Optional[nn.Module] = None, disc_optimizer: Optional[torch.optim.Optimizer] = None,
                    scalers: Optional[dict[str, Any]] = None) -> None:
    """Tensors to checkpoint.safetensors, everything else to checkpoint.json (both replaced atomically).

    Keys: ``model.*`` (generator), ``ema.*``, ``optim.*``, and in GAN mode ``disc.*`` and ``doptim.*``.
    """
    from safetensors.torch import save_file
    tensors = {f"model.{k}": v for k, v in net.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v for k, v in ema.net.state_dict().items()})
    opt_tensors, opt_json = _optimizer_parts("optim", optimizer)
    tensors.update(opt_tensors)
    state: dict[str, Any] = {
        "step": step,
        "ema_updates": ema.updates if ema is not None else 0,
        "optim_param_groups": opt_json["param_groups"],
        "optim_scalars": opt_json["scalars"],
    }
    if disc is not None and disc_optimizer is not None:
        tensors.update({f"disc.{k}": v for k, v in disc.state_dict().items()})
        d_tensors, d_json = _optimizer_parts("doptim", disc_optimizer)
        tensors.update(d_tensors)
        state.update(doptim_param_groups=d_json["param_groups"], doptim_scalars=d_json["scalars"])
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    state.update({
        "scalers": {name: scaler.state_dict() for name, scaler in (scalers or {}).items() if scaler.is_enabled()},
        "rng_torch": _rng_to_json(torch.get_rng_state()),
        "rng_cuda": [_rng_to_json(s) for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
        "best": best,
        "config": config.to_json(),
    })
    tmp = run_dir / (CHECKPOINT + ".tmp")
    save_file(tensors, str(tmp), metadata={"step": str(step)})
    tmp.replace(run_dir / CHECKPOINT)
    _write_json(run_dir / CHECKPOINT_STATE, state)


def load_checkpoint(run_dir: Path, *, net: nn.Module, ema: Optional[EMA],
                    optimizer: torch.optim.Optimizer, disc: Optional[nn.Module] = None,
                    disc_optimizer: Optional[torch.optim.Optimizer] = None,
                    scalers: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Restore what save_checkpoint wrote; returns the JSON state (step, best, config).

    A damaged checkpoint (truncated, not JSON/safetensors, tensors that do not fit the
    network, NaN weights) raises one ValueError line naming the run folder."""
    try:
        return _load_checkpoint(run_dir, net=net, ema=ema, optimizer=optimizer, disc=disc,
                                disc_optimizer=disc_optimizer, scalers=scalers)
    except ValueError as exc:
        if str(exc).startswith(str(run_dir)):
            raise
        raise ValueError(f"{run_dir}: the checkpoint cannot be resumed ({_first_line(exc)})") from None
    except Exception as exc:  # safetensors errors, state dicts that do not fit, missing keys
        raise ValueError(f"{run_dir}: the checkpoint cannot be resumed ({type(exc).__name__}: "
                         f"{_first_line(exc)}); start a new run folder, or restore the files") from None


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


def read_checkpoint_state(run_dir: Path) -> dict[str, Any]:
    """The checkpoint's JSON state, checked to be an object with a step and a config."""
    path = run_dir / CHECKPOINT_STATE
    try:
        state = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: damaged checkpoint state ({_first_line(exc)}); start a new run folder, "
                         "or restore the file") from None
    if not isinstance(state, dict) or not isinstance(state.get("step"), int) or not isinstance(state.get("config"), dict):
        raise ValueError(f"{path}: damaged checkpoint state (no step or config); start a new run folder, "
                         "or restore the file")
    return state


def _load_checkpoint(run_dir: Path, *, net: nn.Module, ema: Optional[EMA],
                     optimizer: torch.optim.Optimizer, disc: Optional[nn.Module] = None,
                     disc_optimizer: Optional[torch.optim.Optimizer] = None,
                     scalers: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    from safetensors import safe_open

    from .weights import check_finite
    state = read_checkpoint_state(run_dir)
    with safe_open(str(run_dir / CHECKPOINT), framework="pt") as handle:
        if int((handle.metadata() or {}).get("step", -1)) != state["step"]:
            raise ValueError(f"{run_dir}: {CHECKPOINT} and {CHECKPOINT_STATE} are from different steps")
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    check_finite({k: v for k, v in tensors.items() if k.startswith(("model.", "ema.", "disc."))},
                 run_dir / CHECKPOINT)

    def section(prefix):
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    net.load_state_dict(section("model."), strict=True)
    if ema is not None:
        ema_state = section("ema.")
        if not ema_state:
            raise ValueError(f"{run_dir}: checkpoint has no EMA weights; resume with the same --ema")
        ema.net.load_state_dict(ema_state, strict=True)
        ema.updates = state["ema_updates"]
    _restore_optimizer(optimizer, section("optim."), state["optim_param_groups"], state["optim_scalars"])
    if disc is not None and disc_optimizer is not None:
        disc_state = section("disc.")
        if not disc_state or "doptim_param_groups" not in state:
            raise ValueError(f"{run_dir}: checkpoint has no discriminator (not a GAN run)")
        disc.load_state_dict(disc_state, strict=True)
        _restore_optimizer(disc_optimizer, section("doptim."), state["doptim_param_groups"], state["doptim_scalars"])
    for name, scaler in (scalers or {}).items():
        saved = state.get("scalers", {}).get(name)
        if scaler.is_enabled() and saved:
            scaler.load_state_dict(saved)
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


def read_generator(path: str | Path) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
    """(arch, hyperparameters with scale, state dict) of a generator weights file: one of ours,
    or any layout ``sr_cli.foreign`` recognises (Real-ESRGAN, ESRGAN, EDSR; .pth or .safetensors)."""
    from .foreign import load_any
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such weights file: {path}")
    model = load_any(path)
    if model.arch not in ARCHS or not isinstance(model.net, nn.Module):
        raise ValueError(f"{path}: a {model.arch} model; only our architectures ({', '.join(ARCHS)}) can be trained")
    return model.arch, dict(model.params), model.net.state_dict()


def _load_pretrained(net: nn.Module, config: TrainConfig) -> str:
    arch, params, state = read_generator(config.pretrained_g)
    path = config.pretrained_g
    if arch != config.arch or int(params["scale"]) != config.scale:
        raise ValueError(f"{path} is a x{params['scale']} {arch} model, this run trains a x{config.scale} "
                         f"{config.arch} (use --init for a partial start across scales)")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:200]
        shown = {k: v for k, v in params.items() if k != "scale"}
        raise ValueError(f"{path} does not fit this {arch} ({detail}); its hyperparameters: {shown}") from None
    return f"generator: {len(state)} tensors from {path}"


# ---------------------------------------------------------------------------
# losses


class GeneratorObjective:
    """The generator's weighted loss: pixel terms, perceptual, KL (VAE), and in GAN mode the
    adversarial and feature-matching terms against a discriminator.

    ``__call__(sr, hr, net=..., disc=...)`` returns each term and their weighted sum
    under 'total'. ``disc`` is used frozen (its parameters get no gradient).
    """

    def __init__(self, config: TrainConfig, *, device: torch.device):
        from .losses import PerceptualLoss, build_pixel_loss
        self.weights = dict(config.loss)
        self.pixel = {name: build_pixel_loss(name) for name in self.weights if name in PIXEL_LOSS_NAMES}
        self.perceptual = None
        if "perceptual" in self.weights:
            self.perceptual = PerceptualLoss(weights_path=config.vgg_weights, layer_weights=config.perceptual_layers,
                                             allow_random_init=config.vgg_random_init).to(device)
        self.gan = config.gan
        self.feature_matching = "feature_matching" in self.weights

    def __call__(self, sr: torch.Tensor, hr: torch.Tensor, *, net: nn.Module,
                 disc: Optional[nn.Module] = None) -> dict[str, torch.Tensor]:
        from .losses import feature_matching_loss, gan_loss
        terms: dict[str, torch.Tensor] = {}
        sr32 = sr.float()
        for name, fn in self.pixel.items():
            terms[name] = fn(sr32, hr)
        if self.perceptual is not None:
            terms["perceptual"] = self.perceptual(sr32, hr)
        if "kl" in self.weights:
            terms["kl"] = net.kl_divergence()
        if self.gan is not None:
            if disc is None:
                raise ValueError("GAN loss without a discriminator")
            fm = self.feature_matching
            fake = disc(sr, return_features=fm)
            fake_logits, fake_feats = fake if fm else (fake, None)
            real_logits, real_feats = None, None
            if self.gan == "ragan" or fm:
                with torch.no_grad():
                    real = disc(hr, return_features=fm)
                real_logits, real_feats = real if fm else (real, None)
            terms["gan"] = gan_loss(self.gan, real_logits, fake_logits, for_discriminator=False)
            if fm:
                terms["feature_matching"] = feature_matching_loss(real_feats, fake_feats)
        terms["total"] = sum(self.weights[name] * value.float() for name, value in terms.items())
        return terms


@dataclass
class TrainStep:
    """One training step on a batch: the generator's, then (GAN mode) ``d_steps`` discriminator steps.

    As BasicSR's ESRGAN model: the generator is scored with the discriminator frozen
    (and called outside DDP: it gets no gradient there); the discriminator then
    learns HR against the generator's output of this step, detached. Returns the
    generator's loss terms, the discriminator's statistics and the gradient norm
    (when clipped). ``g_model``/``d_model`` are ``net``/``disc`` or their DDP wrappers.
    """

    config: TrainConfig
    net: nn.Module
    g_model: nn.Module
    ema: Optional[EMA]
    optimizer: torch.optim.Optimizer
    objective: GeneratorObjective
    disc: Optional[nn.Module]
    d_model: Optional[nn.Module]
    d_optimizer: Optional[torch.optim.Optimizer]
    scalers: dict[str, Any]
    amp_dtype: Optional[torch.dtype]
    device_type: str

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.amp_dtype)

    def __call__(self, lr_img: torch.Tensor, hr_img: torch.Tensor
                 ) -> tuple[dict[str, torch.Tensor], dict[str, float], Optional[float]]:
        from .losses import gan_loss
        config, scaler = self.config, self.scalers["g"]
        if self.disc is not None:
            self.disc.requires_grad_(False)
        with self.autocast():
            sr_img = self.g_model(lr_img)
            losses = self.objective(sr_img, hr_img, net=self.net, disc=self.disc)
        self.optimizer.zero_grad(set_to_none=True)
        scaler.scale(losses["total"]).backward()
        grad_norm = None
        if config.grad_clip:
            scaler.unscale_(self.optimizer)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.net.parameters(), config.grad_clip))
        scaler.step(self.optimizer)
        scaler.update()
        if self.ema is not None:
            self.ema.update(self.net)
        if self.disc is None:
            return losses, {}, grad_norm

        self.disc.requires_grad_(True)
        fake_img, scaler = sr_img.detach(), self.scalers["d"]
        for _ in range(config.d_steps):
            with self.autocast():
                real_logits = self.d_model(hr_img)
                fake_logits = self.d_model(fake_img)
                d_loss = gan_loss(config.gan, real_logits, fake_logits, for_discriminator=True)
            self.d_optimizer.zero_grad(set_to_none=True)
            scaler.scale(d_loss).backward()
            scaler.step(self.d_optimizer)
            scaler.update()
        d_stats = {"d_loss": float(d_loss.detach()), "d_real": float(real_logits.detach().float().mean()),
                   "d_fake": float(fake_logits.detach().float().mean())}
        return losses, d_stats, grad_norm


# ---------------------------------------------------------------------------
# data parallel


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # we initialised the process group (and destroy it at the end)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_spec: str) -> tuple[Distributed, torch.device]:
    """Join the process group torchrun describes in the environment (WORLD_SIZE > 1), or run alone.

    CUDA (``device_spec`` auto/cuda with a GPU): NCCL, one GPU per process (cuda:LOCAL_RANK);
    otherwise gloo on the CPU.
    """
    from .upscale import pick_device
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed(), pick_device(device_spec)
    import torch.distributed as dist
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_spec)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank if device.index is None else device.index)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ValueError(f"data-parallel training runs on CUDA or the CPU, not {device.type}")
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Distributed(rank=rank, world_size=world_size, local_rank=local_rank, owns_group=owns), device


def _mean_over_ranks(values: dict[str, float], dist_info: Distributed, device: torch.device) -> dict[str, float]:
    if not dist_info.enabled or not values:
        return values
    import torch.distributed as dist
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: float(v) / dist_info.world_size for k, v in zip(keys, t.tolist())}


def weights_checksum(*nets: Optional[nn.Module]) -> str:
    """sha256 of the parameters of ``nets`` (in order): equal on every rank of a healthy run."""
    digest = hashlib.sha256()
    for net in nets:
        if net is None:
            continue
        for name, p in net.named_parameters():
            digest.update(name.encode())
            digest.update(p.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------
# logging


class CsvLog:
    """log.csv: one row per training log line and validation, fixed columns (appends on resume)."""

    def __init__(self, path: Path, loss_terms: list[str], gan: bool):
        self.columns = ["step", "loss", *[f"loss_{t}" for t in loss_terms]]
        if gan:
            self.columns += ["d_loss", "d_real", "d_fake"]
        self.columns += ["lr", "it_s", "eta_s", "val_psnr"]
        new = not path.is_file()
        self.file = open(path, "a", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=self.columns, extrasaction="ignore")
        if new:
            self.writer.writeheader()

    def write(self, record: dict[str, Any]) -> None:
        if "loss" not in record and "val_psnr" not in record:
            return
        row = dict(record)
        row.update({f"loss_{k}": v for k, v in record.get("losses", {}).items()})
        self.writer.writerow(row)
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def format_seconds(seconds: Optional[float]) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def print_record(record: dict[str, Any]) -> None:
    """Plain one-line rendering of a log record (for logs and non-terminal output)."""
    if "val_psnr" in record:
        print(f"step {record['step']:>7}  val PSNR {record['val_psnr']:.3f} dB (best {record['best_psnr']:.3f} "
              f"at {record['best_step']})  {record['val_seconds']:.1f}s", flush=True)
    elif "loss" in record:
        terms = record.get("losses", {})
        detail = f" ({' '.join(f'{k} {v:.4g}' for k, v in terms.items())})" if len(terms) > 1 else ""
        gan = f"  D {record['d_loss']:.4f}" if "d_loss" in record else ""
        print(f"step {record['step']:>7}  loss {record['loss']:.5f}{detail}{gan}  lr {record['lr']:.3g}  "
              f"{record['it_s']:.2f} it/s  ETA {format_seconds(record.get('eta_s'))}  "
              f"data wait {record['data_wait']:.0%}  epoch {record['epoch']:.2f}", flush=True)
    else:
        print(record.get("message", json.dumps(record)), flush=True)


# ---------------------------------------------------------------------------
# the loop


def train(config: TrainConfig, *, on_log: Callable[[dict[str, Any]], None] = print_record) -> Path:
    """Train a generator as ``config`` says; returns the run folder.

    Under torchrun every process calls this; only rank 0 calls ``on_log`` and writes files.
    """
    dist_info, device = setup_distributed(config.device)
    try:
        run_dir = _train(config, on_log=on_log, dist_info=dist_info, device=device)
        if dist_info.owns_group:
            import torch.distributed as dist
            # Every rank finishes its last collective before any tears the group down: a rank
            # exiting while gloo still talks to it was seen to abort the other at exit (SIGABRT).
            dist.barrier()
        return run_dir
    finally:
        if dist_info.owns_group:
            import torch.distributed as dist
            dist.destroy_process_group()


def _train(config: TrainConfig, *, on_log: Callable[[dict[str, Any]], None], dist_info: Distributed,
           device: torch.device) -> Path:
    from torch.utils.data import DataLoader

    from .archs.discriminators import build_discriminator
    from .data import HRPatchDataset, SampleRange, load_validation, worker_init
    from .weights import read_metadata, save_model

    main = dist_info.is_main
    if not main:
        on_log = _quiet  # the other ranks of a data-parallel run say nothing
    run_dir = Path(config.out)
    has_checkpoint = (run_dir / CHECKPOINT_STATE).is_file()
    if has_checkpoint and not config.resume:
        raise ValueError(f"{run_dir} already has a checkpoint: resume it (--resume), or choose another folder")
    if config.batch % dist_info.world_size:
        raise ValueError(f"the batch ({config.batch}) must be a multiple of the number of processes "
                         f"({dist_info.world_size}): it is the batch of each step over all of them")
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)

    params = {**config.arch_params, "scale": config.scale}
    net = build_arch(config.arch, **params).to(device)
    if "kl" in config.loss and not hasattr(net, "kl_divergence"):
        raise ValueError(f"the kl loss needs an architecture with a KL term (vae), not {config.arch}")
    multiple = int(getattr(net, "size_multiple", 1))
    if config.patch % multiple:
        raise ValueError(f"{config.arch} needs the patch to be a multiple of {multiple}, got {config.patch}")
    if not has_checkpoint:
        if config.init:
            loaded, rest = load_init_weights(net, config.init)
            on_log({"message": f"init: {loaded} tensors from {config.init}" + (f"; left as built: {', '.join(rest)}" if rest else "")})
        elif config.pretrained_g:
            on_log({"message": _load_pretrained(net, config)})
    channels_last = device.type == "cuda" if config.channels_last is None else config.channels_last
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=memory_format)
    net.train()
    ema = EMA(net, config.ema) if config.ema > 0 else None
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr, betas=config.betas,
                                 weight_decay=config.weight_decay)
    disc = d_optimizer = None
    if config.gan:
        disc = build_discriminator(config.disc, **config.disc_params).to(device).to(memory_format=memory_format)
        disc.train()
        d_multiple = int(getattr(disc, "size_multiple", 1))
        if (config.patch * config.scale) % d_multiple:
            raise ValueError(f"the {config.disc} discriminator needs HR patches (patch x scale = "
                             f"{config.patch * config.scale}) that are multiples of {d_multiple}")
        d_optimizer = torch.optim.Adam(disc.parameters(), lr=config.d_lr or config.lr, betas=config.betas)
    objective = GeneratorObjective(config, device=device)

    amp_dtype = AMP_DTYPES.get(config.amp) if config.amp else None
    if amp_dtype is not None and device.type != "cuda":
        on_log({"message": f"amp: {config.amp} autocast is for CUDA; training in float32 on {device.type}"})
        amp_dtype = None
    scalers = {name: torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16) for name in ("g", "d")}

    step = 0
    best: dict[str, Any] = {"psnr": None, "step": None}
    if has_checkpoint:
        _check_compatible(read_checkpoint_state(run_dir)["config"], config)
        state = load_checkpoint(run_dir, net=net, ema=ema, optimizer=optimizer, disc=disc,
                                disc_optimizer=d_optimizer, scalers=scalers)
        step, best = state["step"], state["best"]
        on_log({"message": f"resumed {run_dir} at step {step}"})
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_json(run_dir / "config.json", config.to_json())

    g_model, d_model = net, disc
    if dist_info.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP
        ids = [device.index] if device.type == "cuda" else None
        g_model = DDP(net, device_ids=ids)
        if disc is not None:
            d_model = DDP(disc, device_ids=ids)

    dataset = HRPatchDataset(config.data, scale=config.scale, patch=config.patch, seed=config.seed,
                             epoch_length=config.epoch_length, degradation=config.degradation,
                             scale_aug=config.scale_aug)
    if dataset.skipped:
        on_log({"message": f"data: skipped {len(dataset.skipped)} images smaller than the "
                           f"{config.patch * config.scale}px HR patch"})
    d_count = f"; discriminator {config.disc} {sum(p.numel() for p in disc.parameters()):,}" if disc is not None else ""
    procs = f" x {dist_info.world_size} processes" if dist_info.enabled else ""
    shrunk = (f" (with {dataset.shrunk_count} copies shrunk by {', '.join(map(str, config.scale_aug))})"
              if config.scale_aug else "")
    on_log({"message": f"data: {len(dataset.images)} images{shrunk} ({dataset.nbytes / 1e6:.0f} MB), LR by "
                       f"{config.degradation}; {sum(p.numel() for p in net.parameters()):,} parameters{d_count}; "
                       f"device {device}{procs}"})
    val_images = load_validation(config.val, scale=config.scale) if config.val and main else []
    sampler = SampleRange(step * config.batch, config.iters * config.batch, batch=config.batch,
                          rank=dist_info.rank, world_size=dist_info.world_size)
    # The loader gets its own generator so that it does not draw from the global RNG (which the
    # checkpoint restores, and which e.g. the VAE's sampling uses).
    loader = DataLoader(dataset, batch_size=config.batch // dist_info.world_size, sampler=sampler,
                        num_workers=config.workers, worker_init_fn=worker_init if config.workers else None,
                        pin_memory=device.type == "cuda", drop_last=True, generator=torch.Generator().manual_seed(config.seed),
                        persistent_workers=False, prefetch_factor=4 if config.workers else None)

    export_net = ema.net if ema is not None else net
    log_file = open(run_dir / "log.jsonl", "a") if main else None
    csv_log = CsvLog(run_dir / "log.csv", [k for k in config.loss], bool(config.gan)) if config.csv and main else None

    def log(record: dict[str, Any]) -> None:
        if log_file is not None:
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()
        if csv_log is not None:
            csv_log.write(record)
        on_log(record)

    def export(path: Path, val_psnr: Optional[float]) -> None:
        extra: dict[str, Any] = {"steps": step, "data": config.data, "command": config.command, "loss": config.loss}
        if config.gan:
            extra.update(gan=config.gan, disc=config.disc)
        if config.degradation != "bicubic":
            extra["degradation"] = config.degradation
        if config.scale_aug:
            extra["scale_aug"] = config.scale_aug
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

    def checkpoint() -> None:
        save_checkpoint(run_dir, step=step, net=net, ema=ema, optimizer=optimizer, config=config, best=best,
                        disc=disc, disc_optimizer=d_optimizer, scalers=scalers)

    def set_lr(current: float) -> None:
        for group in optimizer.param_groups:
            group["lr"] = current
        if d_optimizer is not None:
            d_current = current * (config.d_lr / config.lr if config.d_lr and config.lr else 1.0)
            for group in d_optimizer.param_groups:
                group["lr"] = d_current

    step_fn = TrainStep(config=config, net=net, g_model=g_model, ema=ema, optimizer=optimizer, objective=objective,
                        disc=disc, d_model=d_model, d_optimizer=d_optimizer, scalers=scalers, amp_dtype=amp_dtype,
                        device_type=device.type)

    try:
        window_start, data_wait, window_steps = time.perf_counter(), 0.0, 0
        fetch_start = time.perf_counter()
        for lr_img, hr_img in loader:
            data_wait += time.perf_counter() - fetch_start
            lr_img = lr_img.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            hr_img = hr_img.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            current_lr = lr_at(step, config)
            set_lr(current_lr)

            losses, d_stats, grad_norm = step_fn(lr_img, hr_img)
            step += 1
            window_steps += 1

            if step % config.log_every == 0 or step == config.iters:
                elapsed = time.perf_counter() - window_start
                values = {"loss": float(losses["total"].detach()), **d_stats,
                          **{f"losses.{k}": float(v.detach()) for k, v in losses.items() if k != "total"}}
                values = _mean_over_ranks(values, dist_info, device)
                it_s = window_steps / elapsed
                record = {"step": step, "loss": values["loss"],
                          "losses": {k[len("losses."):]: v for k, v in values.items() if k.startswith("losses.")},
                          **{k: values[k] for k in d_stats},
                          "lr": current_lr, "it_s": it_s, "eta_s": (config.iters - step) / it_s if it_s > 0 else None,
                          "data_wait": data_wait / elapsed, "epoch": step * config.batch / len(dataset)}
                if grad_norm is not None:
                    record["grad_norm"] = grad_norm
                if not all(math.isfinite(v) for v in values.values()):
                    raise RuntimeError(f"loss is {record['loss']} (D {record.get('d_loss')}) at step {step}; "
                                       f"lower --lr or set a gradient clip")
                log(record)
            if main:
                if val_images and (step % config.val_every == 0 or step == config.iters):
                    validate()
                if step % config.save_every == 0 or step == config.iters:
                    checkpoint()
            if step % config.log_every == 0:
                window_start, data_wait, window_steps = time.perf_counter(), 0.0, 0
            fetch_start = time.perf_counter()
        # The end (also reached at once when resuming a finished run): final checkpoint and export.
        if main:
            state_file = run_dir / CHECKPOINT_STATE
            if not state_file.is_file() or json.loads(state_file.read_text())["step"] != step:
                checkpoint()
            model_file = run_dir / "model.safetensors"
            if not model_file.is_file() or read_metadata(model_file).get("steps") != str(step):
                validate() if val_images else export(model_file, None)
        if dist_info.enabled:
            _check_ranks_agree(net, disc, dist_info, log)
    finally:
        if log_file is not None:
            log_file.close()
        if csv_log is not None:
            csv_log.close()
    return run_dir


def _quiet(record: dict[str, Any]) -> None:
    return None


def _check_ranks_agree(net: nn.Module, disc: Optional[nn.Module], dist_info: Distributed,
                       log: Callable[[dict[str, Any]], None]) -> None:
    """All ranks must end with the same weights (DDP keeps them so); raise if they do not."""
    import torch.distributed as dist
    mine = weights_checksum(net, disc)
    sums: list[Any] = [None] * dist_info.world_size
    dist.all_gather_object(sums, mine)
    if len(set(sums)) != 1:
        raise RuntimeError(f"the {dist_info.world_size} processes ended with different weights: {sums}")
    log({"message": f"{dist_info.world_size} processes ended with the same weights (sha256 {mine[:16]})",
            "weights_sha256": mine})


# Settings that must not change on resume (the rest, e.g. iters, workers, val, may).
_FIXED_ON_RESUME = ("arch", "arch_params", "scale", "patch", "batch", "seed", "ema", "loss", "data",
                    "gan", "disc", "disc_params", "d_steps", "degradation", "scale_aug", "perceptual_layers")


def _check_compatible(saved: dict[str, Any], config: TrainConfig) -> None:
    now = config.to_json()
    defaults = {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
                for f in dataclasses.fields(TrainConfig)}
    # a setting missing from an older checkpoint had its default then
    before = {k: saved.get(k, defaults.get(k)) for k in _FIXED_ON_RESUME}
    changed = [k for k in _FIXED_ON_RESUME if json.dumps(before[k], sort_keys=True) != json.dumps(now[k], sort_keys=True)]
    if changed:
        details = "; ".join(f"{k}: {before[k]!r} -> {now[k]!r}" for k in changed)
        raise ValueError(f"cannot resume with different settings ({details})")
