"""Every training setting, declared once: ``TrainConfig``.

Each field that is also an ``sr train`` option carries its help text and command-line form
in ``field.metadata["cli"]`` (an ``Option``); ``sr_cli.commands.train_cmd`` builds the
command's options from them, in field order, so a default or a help text exists only here.
Fields without it (betas, weight_decay, channels_last, ...) are for the Python API.
To add an option: add a field with ``option(...)``; the CLI, ``--config`` files, config.json
and the resume check follow.

This module imports neither torch nor click (``sr --help`` stays fast), nor the losses: they
read their names (loss terms, GAN kinds, VGG19 layers) from here, so the dependency runs one
way; degradation presets come from the torch-free sr_cli.degrade_presets.
"""
from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..degrade_presets import JPEG_BLOCK, PRESETS, get_pipeline

# Choices of the options below. GAN_KINDS is the truth (losses.gan_loss reads it); the
# discriminator names copy sr_cli.archs.DISCRIMINATORS, which imports torch (tests/test_train.py
# checks that they match).
GAN_KINDS = ("vanilla", "lsgan", "ragan")
DISCRIMINATORS = ("vgg", "unet")
DEGRADATIONS = ("bicubic", *PRESETS)
SCHEDULES = ("cosine", "step")
AMP_CHOICES = ("bf16", "fp16")
PIXEL_LOSS_NAMES = ("l1", "mse", "charbonnier", "gradient", "ssim", "best_buddy", "block_edge", "grid_contrast")
# Losses that score the LR's 8x8 JPEG grid: they need block-aligned patches (data.HRPatchDataset).
GRID_LOSSES = ("block_edge", "grid_contrast")
GAN_ONLY_LOSSES = ("gan", "feature_matching")
LOSS_NAMES = (*PIXEL_LOSS_NAMES, "artifact", "perceptual", *GAN_ONLY_LOSSES, "kl")  # losses.parse_loss_spec reads it
# VGG19's feature layers (channels, "M" for a pooling), which losses.VGG19Features builds; their
# names are the choices of perceptual_layers (index i = torchvision's features[i]).
VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
             512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


def _vgg19_layer_names() -> list[str]:
    names, block, conv = [], 1, 1
    for item in VGG19_CFG:
        if item == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 1
        else:
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
            conv += 1
    return names


VGG19_LAYER_NAMES: list[str] = _vgg19_layer_names()
DEFAULT_GAN_WEIGHT = 0.1  # Real-ESRGAN's, with l1=1 and perceptual=1
DEFAULT_SCALE = 4         # without --scale or a --pretrained-g file to take it from


@dataclass(frozen=True)
class Option:
    """How a field is written on ``sr train``'s command line (and in its --config TOML files).

    type     int, float, str or bool (a flag; default: the type of the field's default); "path"
             for paths, with ``path`` saying which
    path     existing | existing_file | existing_folder | folder (need not exist, not a file) |
             dataset | dataset_folder (existing, or a pulled catalogue set's name: `sr data`)
    form     the text form of a list or dict field: kv (KEY=VALUE items), weights
             (NAME=WEIGHT, comma-separated), losses (the same, repeatable), ints or factors
             (comma-separated numbers)
    fixed    may not change when a run is resumed

    The command line's default is the field's, in its text form; a field without one (arch,
    data, scale, out) has none there: the command asks for it, or takes it from --pretrained-g.
    """

    help: str
    type: Any = None
    flags: tuple[str, ...] = ()   # default: ("--field-name",)
    name: str = ""                # the click parameter's name (default: the field's)
    minimum: Optional[float] = None
    above: Optional[float] = None  # a float that must be strictly greater than this (a learning rate: 0)
    choices: tuple[str, ...] = ()
    path: str = ""
    form: str = ""
    multiple: bool = False
    metavar: Optional[str] = None
    fixed: bool = False


def option(default: Any = dataclasses.MISSING, *, help: str, **cli: Any) -> Any:
    """A dataclass field that is also an ``sr train`` option (see ``Option``)."""
    metadata = {"cli": Option(help=help, **cli)}
    if default is dataclasses.MISSING:
        return field(metadata=metadata)
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(kw_only=True)
class TrainConfig:
    # -- what is trained, on what
    arch: str = option(help="Generator architecture (see --list-archs); default with --pretrained-g: the file's.",
                       type=str, fixed=True)
    arch_params: dict[str, Any] = option(
        {}, help="Architecture hyperparameter, e.g. num_feat=32; repeat for several.",
        flags=("--arch-opt",), name="arch_opts", form="kv", multiple=True, metavar="KEY=VALUE", fixed=True)
    data: list[str] = option(help="Folder of HR training images (searched recursively), or a dataset by name "
                                  "(T91, BSDS200, General100: `sr data pull`); repeat for several.",
                             type="path", path="dataset", multiple=True, fixed=True)
    scale: int = option(help=f"Upscaling factor [default: the --pretrained-g file's, else {DEFAULT_SCALE}].",
                        type=int, minimum=1, flags=("-s", "--scale"), fixed=True)
    out: str = option(help="Run folder: checkpoints, log.jsonl, model.safetensors.",
                      type="path", path="folder", flags=("-o", "--out"))
    val: Optional[str] = option(None, help="Folder of HR validation images, or a dataset by name (e.g. Set5), "
                                           "evaluated whole: Y-channel PSNR.", type="path", path="dataset_folder")
    patch: int = option(48, help="LR patch size; HR patches are patch x scale.", minimum=1, fixed=True)
    batch: int = option(16, help="Patches per step (over all processes under torchrun).", minimum=1, fixed=True)
    iters: int = option(100_000, help="Optimiser steps in all.", minimum=1)
    # -- the learning rate: warmup, then cosine decay or steps (training.trainer.lr_at)
    lr: float = option(2e-4, help="Peak learning rate (Adam, betas 0.9/0.99).", minimum=0)
    min_lr: float = option(1e-7, help="Final learning rate of the cosine schedule.", minimum=0)
    schedule: str = option("cosine", help="Learning-rate decay: cosine to --min-lr, or step (x --gamma at each "
                                          "milestone).", choices=SCHEDULES)
    milestones: list[int] = option([], help="Step schedule milestones, comma-separated (default: 1/2 and 3/4 of "
                                            "--iters).", form="ints")
    gamma: float = option(0.5, help="Step schedule factor.", minimum=0)
    warmup: int = option(0, help="Linear warmup steps.", minimum=0)
    # -- the objective (training.losses, training.objective)
    loss: dict[str, float] = option(
        {"l1": 1.0}, help="Loss term NAME=WEIGHT: l1, mse, charbonnier, gradient (L1 of neighbour differences: "
                          "penalises kept block edges), ssim (1 - SSIM of Y, as sr eval scores), "
                          "best_buddy (Beby-GAN: L1 of each 3x3 output tile against the HR tile, from the "
                          "patch and its 2x/4x shrinks, closest to both it and the truth; lets a GAN keep a "
                          "texture instead of the average), "
                          "block_edge (gradient on the lines of the LR's 8x8 JPEG grid only, for degradations "
                          "that compress at the LR size: robust, robust_jpeg, robust_video, compressed; patch a multiple "
                          "of 8), "
                          "grid_contrast (how much more the JPEG grid's lines stand out than in HR: "
                          "blockiness as a loss; patch as block_edge), "
                          "artifact (LDL: L1 where the output's error looks like a GAN artifact, "
                          "judged against the EMA's output; needs --ema), "
                          "perceptual (needs --vgg-weights), kl (vae), "
                          "and with --gan: gan (= --gan-weight), feature_matching; repeat or comma-separate.",
        form="losses", multiple=True, fixed=True)
    ema: float = option(0.999, help="EMA decay of the weights (the EMA is what gets exported); 0 disables.",
                        fixed=True)
    grad_clip: Optional[float] = option(None, help="Clip the generator's gradient norm to this value.", type=float)
    degradation: str = option(
        "bicubic", help="How LR patches are made: MATLAB bicubic, or a random real-world pipeline (blur, resize, "
                        "noise, JPEG): robust (what the default models learn: a quarter clean, the rest blurred, "
                        "noised and JPEG-compressed at the LR size), robust_jpeg (the same with JPEG quality 15-60), "
                        "robust_video (robust with JPEG or video codecs: H.264, HEVC, VP9, MPEG-4, MPEG-2; needs "
                        "the video extra), compressed (robust_video without blur and noise, 3 in 10 clean: what the fast "
                        "models learn), realesrgan (two rounds, as Real-ESRGAN) or "
                        "simple (one milder round).", choices=DEGRADATIONS, fixed=True)
    scale_aug: list[float] = option(
        [], help="Scale augmentation: add a copy of every HR image shrunk by each factor (MATLAB bicubic), "
                 "e.g. 0.9,0.8,0.7,0.6, as VDSR trained on the 291-image set. Default: none.",
        form="factors", metavar="F,F,...", fixed=True)
    # -- GAN mode (gan set): adversarial loss kind, discriminator and its optimiser
    gan: Optional[str] = option(None, help="GAN training with this adversarial loss (ragan: ESRGAN's relativistic "
                                           "average).", choices=GAN_KINDS, fixed=True)
    disc: str = option("vgg", help="Discriminator: vgg (SRGAN/ESRGAN) or unet (Real-ESRGAN; HR patches multiple "
                                   "of 8).", choices=DISCRIMINATORS, fixed=True)
    disc_params: dict[str, Any] = option(
        {}, help="Discriminator hyperparameter, e.g. num_feat=32; repeat for several.",
        flags=("--disc-opt",), name="disc_opts", form="kv", multiple=True, metavar="KEY=VALUE", fixed=True)
    gan_weight: Optional[float] = option(
        None, help=f"Weight of the adversarial term (the same as --loss gan=X) [default: {DEFAULT_GAN_WEIGHT}].",
        type=float, minimum=0)
    d_steps: int = option(1, help="Discriminator steps per generator step (on the same batch).", minimum=1,
                          fixed=True)
    d_lr: Optional[float] = option(None, help="Discriminator peak learning rate [default: --lr].", type=float,
                                   minimum=0)
    gan_region: Optional[float] = option(
        None, help="Region-aware adversarial term (Beby-GAN): the generator's adversarial loss counts only "
                   "pixels where the HR's 7x7 luminance standard deviation exceeds this (e.g. 0.03, images in "
                   "[0, 1]); flat regions are left to the pixel losses, so no grain is drawn there. "
                   "Default: everywhere.", type=float, minimum=0)
    # -- where the generator starts, and the perceptual loss's VGG19
    pretrained_g: Optional[str] = option(
        None, help="Start the generator from this weights file (e.g. a PSNR run's model.safetensors, or a "
                   "Real-ESRGAN/ESRGAN/EDSR .pth); --arch, --arch-opt and --scale default to the file's.",
        type="path", path="existing_file")
    pretrained_d: Optional[str] = option(
        None, help="Start the discriminator from this file: a GAN run's checkpoint.safetensors (its disc.* "
                   "tensors) or a discriminator's own weights; same --disc and --disc-opt. With "
                   "--pretrained-g from the same run, a GAN stage goes on with other losses or weights.",
        type="path", path="existing_file")
    vgg_weights: Optional[str] = option(
        None, help="torchvision VGG19 state dict (.pth or .safetensors) for the perceptual loss; nothing is "
                   "downloaded.", type="path", path="existing_file")
    perceptual_layers: dict[str, float] = option(
        {"conv5_4": 1.0}, help="VGG19 layers and weights of the perceptual loss (conv5_4: ESRGAN's, before the "
                               "activation).", form="weights", fixed=True)
    vgg_random_init: bool = False   # tests only: random VGG19 weights when vgg_weights is None
    # -- how it runs
    amp: Optional[str] = option(None, help="Mixed precision on CUDA (fp16 with gradient scaling); ignored, with a "
                                           "note, elsewhere.", choices=AMP_CHOICES)
    device: str = option("auto", help="auto, cpu, cuda, cuda:N or mps.")
    seed: int = option(0, help="Seed for the weights and the data.", fixed=True)
    resume: bool = option(False, help="Continue the run in --out from its checkpoint (exactly).")
    workers: int = option(4, help="Data loader processes (0: load in the training process).", minimum=0)
    epoch_length: Optional[int] = option(
        None, help="Samples per virtual epoch (default: the number of images); only affects the epoch count logged.",
        type=int, minimum=1)
    val_every: int = option(5000, help="Validate every N steps.", minimum=1)
    save_every: int = option(5000, help="Checkpoint every N steps.", minimum=1)
    log_every: int = option(100, help="Log every N steps.", minimum=1)
    csv: bool = option(False, help="Also write log.csv (one row per log line and validation).", name="csv_log")
    threads: Optional[int] = option(None, help="torch intra-op threads (default: torch's).", type=int, minimum=1)
    init: Optional[str] = option(
        None, help="Initialise the generator from a weights file (tensors whose shapes differ, e.g. "
                   "another scale's tail, are left as built).", type="path", path="existing_file")
    # -- the Python API only
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    channels_last: Optional[bool] = None  # default: on CUDA only (on CPUs it does not speed training up)
    command: str = ""               # provenance for the exported weights

    def __post_init__(self):
        if isinstance(self.data, (str, Path)):
            self.data = [self.data]
        self.data = [str(d) for d in self.data]
        self.out = str(self.out)
        for name in ("val", "init", "pretrained_g", "pretrained_d", "vgg_weights"):
            value = getattr(self, name)
            setattr(self, name, str(value) if value else None)
        self.betas = tuple(float(b) for b in self.betas)
        self.loss = {k: float(v) for k, v in self.loss.items()}
        self.perceptual_layers = {k: float(v) for k, v in self.perceptual_layers.items()}
        from ..data import shrink_factors
        self.scale_aug = list(shrink_factors(self.scale_aug))
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r} ({', '.join(SCHEDULES)})")
        for name in ("patch", "batch", "iters", "val_every", "save_every", "log_every", "d_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "min_lr", "gamma", "d_lr", "gan_weight", "gan_region", "grad_clip", "weight_decay"):
            value = getattr(self, name, None)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema decay must be in [0, 1), got {self.ema}")
        if self.init and self.pretrained_g:
            raise ValueError("give either init (matching tensors) or pretrained_g (the whole generator), not both")
        if self.pretrained_d and not self.gan:
            raise ValueError("pretrained_d starts a discriminator: it needs GAN training (gan: vanilla, lsgan or ragan)")
        unknown = [k for k in self.loss if k not in LOSS_NAMES]
        if unknown:
            raise ValueError(f"unknown loss {', '.join(unknown)}; known: {', '.join(LOSS_NAMES)}")
        if "artifact" in self.loss and not self.ema:
            raise ValueError("the artifact loss compares the output with the EMA generator's: it needs ema > 0")
        grid_losses = [k for k in GRID_LOSSES if k in self.loss]
        if grid_losses and (self.patch % JPEG_BLOCK or self.patch < 2 * JPEG_BLOCK):
            raise ValueError(f"the {grid_losses[0]} loss needs a patch that is a multiple of {JPEG_BLOCK} (the JPEG "
                             f"block) and at least {2 * JPEG_BLOCK}, got {self.patch}")
        if self.gan is None:
            gan_terms = ([k for k in GAN_ONLY_LOSSES if k in self.loss] + (["gan_weight"] if self.gan_weight else [])
                         + (["gan_region"] if self.gan_region is not None else []))
            if gan_terms:
                raise ValueError(f"{', '.join(gan_terms)} need GAN training (gan: vanilla, lsgan or ragan)")
            if not any(k in self.loss for k in (*PIXEL_LOSS_NAMES, "perceptual")):
                raise ValueError(f"PSNR training takes pixel losses ({', '.join(PIXEL_LOSS_NAMES)}) or perceptual; "
                                 f"got {', '.join(self.loss) or 'none'}")
        else:
            from ..archs import DISCRIMINATORS as DISCRIMINATOR_CLASSES
            if self.gan not in GAN_KINDS:
                raise ValueError(f"unknown GAN loss {self.gan!r}; known: {', '.join(GAN_KINDS)}")
            if self.disc not in DISCRIMINATOR_CLASSES:
                raise ValueError(f"unknown discriminator {self.disc!r}; known: {', '.join(DISCRIMINATOR_CLASSES)}")
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
            codecs = get_pipeline(self.degradation).video_codecs
            if codecs and importlib.util.find_spec("av") is None:
                raise ValueError(f"the {self.degradation} degradation encodes with video codecs "
                                 f"({', '.join(codecs)}) through PyAV: pip install \"sr-cli[video]\"")
        if self.amp is not None and self.amp not in AMP_CHOICES:
            raise ValueError(f"unknown amp precision {self.amp!r} ({', '.join(AMP_CHOICES)})")

    def to_json(self) -> dict[str, Any]:
        """The settings as written to config.json and checkpoint.json: in the key order of the files
        written before the fields were grouped by option (new fields come last)."""
        values = dataclasses.asdict(self)
        return {**{k: values[k] for k in _JSON_ORDER if k in values}, **values}


# The field order of config.json / checkpoint.json files written before this module (kept, so a
# new run's files read the same as an old one's; not a list to maintain: new fields follow it).
_JSON_ORDER = ("arch", "scale", "data", "out", "arch_params", "val", "patch", "batch", "iters", "lr", "min_lr",
               "schedule", "warmup", "milestones", "gamma", "betas", "weight_decay", "loss", "ema", "grad_clip",
               "device", "seed", "resume", "workers", "epoch_length", "val_every", "save_every", "log_every",
               "threads", "init", "pretrained_g", "degradation", "scale_aug", "gan", "disc", "disc_params",
               "gan_weight", "d_steps", "d_lr", "vgg_weights", "perceptual_layers", "vgg_random_init", "amp", "csv",
               "channels_last", "command")


def cli_fields() -> list[dataclasses.Field]:
    """The fields that are ``sr train`` options, in the order ``sr train --help`` lists them."""
    return [f for f in dataclasses.fields(TrainConfig) if "cli" in f.metadata]


def check_resumable(saved: dict[str, Any], config: TrainConfig) -> None:
    """Raise ValueError if a ``fixed`` setting differs from the checkpoint's (``saved``: its config)."""
    now = config.to_json()
    fixed = [f for f in cli_fields() if f.metadata["cli"].fixed]
    # a setting missing from an older checkpoint had its default then
    defaults = {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
                for f in fixed}
    before = {f.name: saved.get(f.name, defaults[f.name]) for f in fixed}
    changed = [k for k in before if json.dumps(before[k], sort_keys=True) != json.dumps(now[k], sort_keys=True)]
    if changed:
        details = "; ".join(f"{k}: {before[k]!r} -> {now[k]!r}" for k in changed)
        raise ValueError(f"cannot resume with different settings ({details})")
