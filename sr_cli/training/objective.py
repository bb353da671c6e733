"""What a training step optimises: the generator's weighted loss (``GeneratorObjective``), one
step of the generator and, in GAN mode, the discriminator (``TrainStep``), and the EMA of the weights.

The loss terms themselves are in ``training.losses``; their names and the checks on which
go together are in ``training.config``.

GAN step (as BasicSR's ESRGAN model): the generator step scores G(lr) with the
discriminator frozen, then ``d_steps`` discriminator steps on the same batch (HR
against the detached G(lr) of that step).
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn as nn

from .config import PIXEL_LOSS_NAMES, TrainConfig
from .losses import PerceptualLoss, artifact_loss, build_pixel_loss, feature_matching_loss, gan_loss, texture_mask

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


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


class GeneratorObjective:
    """The generator's weighted loss: pixel terms, perceptual, KL (VAE), and in GAN mode the
    adversarial and feature-matching terms against a discriminator.

    ``__call__(sr, hr, net=..., disc=..., ema_sr=...)`` returns each term and their weighted sum
    under 'total'. ``disc`` is used frozen (its parameters get no gradient); ``ema_sr``, the EMA
    generator's output on the same batch, is what the artifact term needs.
    """

    def __init__(self, config: TrainConfig, *, device: torch.device):
        self.weights = dict(config.loss)
        self.pixel = {name: build_pixel_loss(name, scale=config.scale)
                      for name in self.weights if name in PIXEL_LOSS_NAMES}
        self.perceptual = None
        if "perceptual" in self.weights:
            self.perceptual = PerceptualLoss(weights_path=config.vgg_weights, layer_weights=config.perceptual_layers,
                                             allow_random_init=config.vgg_random_init).to(device)
        self.gan = config.gan
        self.feature_matching = "feature_matching" in self.weights
        self.gan_region = config.gan_region
        self.needs_ema_output = "artifact" in self.weights

    def __call__(self, sr: torch.Tensor, hr: torch.Tensor, *, net: nn.Module,
                 disc: Optional[nn.Module] = None,
                 ema_sr: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        terms: dict[str, torch.Tensor] = {}
        sr32 = sr.float()
        for name, fn in self.pixel.items():
            terms[name] = fn(sr32, hr)
        if self.needs_ema_output:
            if ema_sr is None:
                raise ValueError("the artifact loss needs the EMA generator's output")
            terms["artifact"] = artifact_loss(sr32, hr, ema_sr.float())
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
            region = None if self.gan_region is None else texture_mask(hr, threshold=self.gan_region)
            terms["gan"] = gan_loss(self.gan, real_logits, fake_logits, for_discriminator=False, weight=region)
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
        config, scaler = self.config, self.scalers["g"]
        if self.disc is not None:
            self.disc.requires_grad_(False)
        with self.autocast():
            ema_sr = None
            if self.objective.needs_ema_output:
                with torch.no_grad():
                    ema_sr = self.ema.net(lr_img)
            sr_img = self.g_model(lr_img)
            losses = self.objective(sr_img, hr_img, net=self.net, disc=self.disc, ema_sr=ema_sr)
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
