"""Training losses: pixel (with neighbour-difference and SSIM), adversarial, feature matching,
VGG19 perceptual, and a spec parser.

Everything takes NCHW float tensors (images in [0, 1]) and returns a scalar tensor.

Adversarial losses work on raw logits (discriminator outputs without sigmoid)
of any shape -- (N, 1) from the VGG discriminator, (N, 1, H, W) per-pixel from the
U-Net one -- and serve both steps::

    d_loss = gan_loss(kind, D(hr), D(sr.detach()), for_discriminator=True)
    g_loss = gan_loss(kind, D(hr), D(sr), for_discriminator=False)

``real_logits`` may be None in the generator step for "vanilla" and "lsgan"
(only ragan needs them); in the generator step they are detached here.
The discriminator loss is the mean of its real and fake terms (as ESRGAN's ragan).

The perceptual loss builds VGG19's ``features`` layers itself, with the layer
indices torchvision uses (``features.0`` = conv1_1 ... ``features.34`` =
conv5_4), so a torchvision ``vgg19`` state dict file loads; nothing is downloaded.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..degrade_presets import JPEG_BLOCK
from .config import GAN_KINDS, LOSS_NAMES, VGG19_CFG, VGG19_LAYER_NAMES

# ---------------------------------------------------------------------------
# pixel losses


def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(pred, target)


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(pred, target)


def charbonnier_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """mean(sqrt((pred - target)^2 + eps^2)): a smooth L1; equals ``eps`` when pred == target."""
    return torch.sqrt((pred - target).pow(2) + eps * eps).mean()


def gradient_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between the horizontal and between the vertical neighbour differences of pred and target.

    A pixel loss weighs a one-level step like any one-level error, so a faint JPEG block edge kept
    in the output costs little; here every such step is an error of its own, while a flat offset
    costs nothing (pair it with l1). Needs no pretrained network.
    """
    dx = (pred[..., :, 1:] - pred[..., :, :-1]) - (target[..., :, 1:] - target[..., :, :-1])
    dy = (pred[..., 1:, :] - pred[..., :-1, :]) - (target[..., 1:, :] - target[..., :-1, :])
    return dx.abs().mean() + dy.abs().mean()


def block_edge_loss(pred: torch.Tensor, target: torch.Tensor, *, scale: int,
                    block: int = JPEG_BLOCK) -> torch.Tensor:
    """The gradient loss on the lines of the LR's JPEG block grid only: the steps between HR
    pixels ``k * block * scale - 1`` and ``k * block * scale``, across columns and across rows.

    Those lines are 1 / (block * scale) of all neighbour pairs, so in ``gradient`` an enlarged
    block edge is a small share of the error; here it is all of it. The target's own steps there
    are kept (real edges that happen to lie on the grid are not smoothed). Needs patches whose
    JPEG grid starts at their origin (`sr train` crops them so with this loss) and a patch that is
    a multiple of ``block`` LR pixels, so that flips keep the grid in place.
    """
    period = block * scale

    def steps(x: torch.Tensor, dim: int) -> torch.Tensor:
        n = x.shape[dim]
        after = torch.arange(period, n, period, device=x.device)
        return x.index_select(dim, after) - x.index_select(dim, after - 1)

    if pred.shape[-1] <= period and pred.shape[-2] <= period:
        raise ValueError(f"patch {tuple(pred.shape[-2:])} holds no line of the {period}-pixel block grid")
    terms = [(steps(pred, d) - steps(target, d)).abs().mean() for d in (-1, -2) if pred.shape[d] > period]
    return sum(terms)


def grid_contrast_loss(pred: torch.Tensor, target: torch.Tensor, *, scale: int,
                       block: int = JPEG_BLOCK) -> torch.Tensor:
    """How differently the JPEG grid's lines stand out in pred than in target, per patch: the
    differentiable form of ``metrics.blockiness``.

    For each image, the mean absolute step across the (block x scale)-pixel grid's lines minus the
    mean absolute step across the other LR pixel edges; the loss is the distance of pred's from the
    target's. Both ways: a one-sided form (only pred's excess) pushes the lines below their
    neighbours, a grid of soft lines (blockiness 0.80 on BSD100 in 250 GAN steps at weight 20).
    Unlike ``block_edge`` it does not ask each step to match HR's, only that the grid's steps be
    like their neighbours': a GAN may draw texture across the lines, not a grid.
    """
    period = block * scale

    def contrast(x: torch.Tensor) -> torch.Tensor:
        terms = []
        for dim in (-1, -2):
            n = x.shape[dim]
            edges = torch.arange(scale, n, scale, device=x.device)  # steps between pixels e - 1 and e
            if not len(edges):
                continue
            steps = (x.index_select(dim, edges) - x.index_select(dim, edges - 1)).abs()
            on_grid = edges % period == 0
            if on_grid.all() or not on_grid.any():
                continue
            along = steps.movedim(dim, -1).flatten(1, -2)  # N x (everything else) x edges
            terms.append(along[..., on_grid].mean(dim=(1, 2)) - along[..., ~on_grid].mean(dim=(1, 2)))
        if not terms:
            raise ValueError(f"patch {tuple(x.shape[-2:])} holds no line of the {period}-pixel block grid")
        return sum(terms)

    return (contrast(pred) - contrast(target)).abs().mean()


def ssim_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - SSIM of the BT.601 luma, as `sr eval` scores it (Y in 16..235, 11x11 Gaussian window of
    sigma 1.5, the valid region only), without its rounding of Y to integers; RGB NCHW inputs.

    SSIM compares local means, contrasts and structure; an L1-trained network smooths away the
    faint texture that a compressed input still hints at, which SSIM counts and L1 barely does.
    """
    from ..metrics import SSIM_SIGMA, SSIM_WINDOW, Y_OFFSET, Y_WEIGHTS, ssim_map
    weights = torch.tensor(Y_WEIGHTS, dtype=pred.dtype, device=pred.device).view(1, 3, 1, 1)
    a = (pred * weights).sum(1, keepdim=True) + Y_OFFSET
    b = (target * weights).sum(1, keepdim=True) + Y_OFFSET
    r = SSIM_WINDOW // 2
    g = torch.exp(-(torch.arange(SSIM_WINDOW, dtype=pred.dtype, device=pred.device) - r) ** 2 / (2 * SSIM_SIGMA ** 2))
    g = g / g.sum()

    def local_mean(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(x, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))

    return 1 - ssim_map(a, b, local_mean).mean()


def best_buddy_loss(pred: torch.Tensor, target: torch.Tensor, *, patch: int = 3,
                    alpha: float = 1.0, beta: float = 1.0) -> torch.Tensor:
    """Beby-GAN's best-buddy loss (Li et al., AAAI 2022): L1 of each output patch against its
    "best buddy", not necessarily the HR patch at the same place.

    Output and HR are cut into ``patch`` x ``patch`` tiles (stride ``patch``); the candidates
    are every HR tile of the same image and of HR shrunk 2x and 4x (MATLAB bicubic). An output
    tile's buddy is the candidate g minimising alpha * |g - tile|^2 + beta * |g - own HR tile|^2:
    close to what the network drew and to the truth there. A plain L1 averages every texture
    the LR could have come from into blur; this one lets the network keep one that the image
    really has. The choice is a weight (no gradient); the gradient is the L1's. Rows and columns
    past the last whole tile are not scored (as Beby-GAN's): pair it with another pixel loss.
    """
    from ..resize import imresize  # MATLAB bicubic, only for the candidates

    tiles = F.unfold(pred, patch, stride=patch).transpose(1, 2)               # (N, L, C*p*p)
    with torch.no_grad():
        shrunk = [imresize(target, 1 / f) for f in (2, 4) if min(target.shape[-2:]) >= f * patch]
        own = F.unfold(target, patch, stride=patch).transpose(1, 2)
        candidates = torch.cat([own] + [F.unfold(t, patch, stride=patch).transpose(1, 2)
                                        for t in shrunk], 1)                  # (N, M, C*p*p)
        # alpha|g - t|^2 + beta|g - o|^2 = (alpha + beta)|g|^2 - 2 g.(alpha t + beta o) + terms
        # free of g: one batched matmul ranks every candidate.
        g = candidates.float()
        pull = alpha * tiles.detach().float() + beta * own.float()
        score = (alpha + beta) * g.square().sum(2).unsqueeze(1) - 2 * pull @ g.transpose(1, 2)
        buddy = candidates.gather(1, score.argmin(2, keepdim=True).expand(-1, -1, own.shape[2]))
    return F.l1_loss(tiles, buddy)


PIXEL_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l1": l1_loss,
    "mse": mse_loss,
    "charbonnier": charbonnier_loss,
    "gradient": gradient_loss,
    "ssim": ssim_loss,
    "best_buddy": best_buddy_loss,
}
# Pixel losses that also need the scale.
SCALED_PIXEL_LOSSES = {"block_edge": block_edge_loss, "grid_contrast": grid_contrast_loss}


def build_pixel_loss(name: str, *, eps: float = 1e-3,
                     scale: int = 1) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The pixel loss called ``name`` (one of ``config.PIXEL_LOSS_NAMES``); ``eps`` is Charbonnier's,
    ``scale`` the model's (the JPEG grid is 8 x scale HR pixels)."""
    if name == "charbonnier":
        return lambda pred, target: charbonnier_loss(pred, target, eps=eps)
    if name in SCALED_PIXEL_LOSSES:
        fn = SCALED_PIXEL_LOSSES[name]
        return lambda pred, target: fn(pred, target, scale=scale)
    try:
        return PIXEL_LOSSES[name]
    except KeyError:
        known = (*PIXEL_LOSSES, *SCALED_PIXEL_LOSSES)
        raise ValueError(f"unknown pixel loss {name!r}; known: {', '.join(known)}") from None


def local_variance(x: torch.Tensor, size: int = 7) -> torch.Tensor:
    """Each pixel's variance over the ``size`` x ``size`` window around it (reflect padding,
    unbiased, as LDL's pixel-level weight)."""
    pad = size // 2
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    mean = F.avg_pool2d(padded, size, stride=1)
    mean_sq = F.avg_pool2d(padded * padded, size, stride=1)
    n = size * size
    return ((mean_sq - mean * mean) * (n / (n - 1))).clamp_min(0)


def artifact_loss(pred: torch.Tensor, target: torch.Tensor, ema_pred: torch.Tensor,
                  window: int = 7) -> torch.Tensor:
    """LDL's artifact loss (Liang et al., CVPR 2022, "Details or Artifacts"): L1 of the output
    against HR, weighted by a map of where the output looks like a GAN artifact.

    The map is high where the residual |HR - SR| varies a lot locally (noise-like, high-frequency
    error: the dotted and checkerboard patterns a GAN draws) scaled by the patch's residual
    variance to the 1/5; it is zero where the EMA generator (a steadier estimate of the same
    network) is further from HR than the output, since there the output is a real detail the EMA
    has not caught up with. The map is a weight: no gradient flows through it.
    """
    with torch.no_grad():
        residual = (target - pred).abs().sum(1, keepdim=True)
        residual_ema = (target - ema_pred).abs().sum(1, keepdim=True)
        patch_weight = residual.var(dim=(1, 2, 3), keepdim=True) ** 0.2
        weight = patch_weight * local_variance(residual, window)
        weight = torch.where(residual < residual_ema, torch.zeros_like(weight), weight)
    return F.l1_loss(weight * pred, weight * target)


def texture_mask(hr: torch.Tensor, *, threshold: float, window: int = 7) -> torch.Tensor:
    """(N, 1, H, W): 1 where ``hr`` is textured, its luminance's standard deviation over the
    ``window`` x ``window`` neighbourhood above ``threshold`` (images in [0, 1]), else 0.

    Beby-GAN's region-aware adversarial learning (Li et al., AAAI 2022): the adversarial term
    acts where the truth has texture to draw, while flat regions (sky, skin) are left to the
    pixel losses, so the generator does not sprinkle grain where there is none. No gradient.
    """
    with torch.no_grad():
        if hr.shape[1] == 3:
            luma = 0.299 * hr[:, 0:1] + 0.587 * hr[:, 1:2] + 0.114 * hr[:, 2:3]
        else:
            luma = hr.mean(1, keepdim=True)
        return (local_variance(luma.float(), window).sqrt() > threshold).to(hr.dtype)


# ---------------------------------------------------------------------------
# adversarial losses



def gan_loss(kind: str, real_logits: Optional[torch.Tensor], fake_logits: torch.Tensor, *,
             for_discriminator: bool, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Adversarial loss for the discriminator step or the generator step.

    vanilla  BCE with logits; generator: non-saturating, -log D(G(z)).
    lsgan    least squares with targets 1 (real) and 0 (fake).
    ragan    relativistic average (ESRGAN): real vs. the mean fake and back.

    ``weight`` (generator step only): an (N, 1, H, W) map at the image's size (``texture_mask``)
    that scales each logit's term; averaged down to a per-pixel discriminator's logit grid, or to
    one value per image for an (N, 1) discriminator. The mean is over all logits, so a map of
    ones is the unweighted loss and flat regions add nothing.
    """
    if kind not in GAN_KINDS:
        raise ValueError(f"unknown GAN loss {kind!r}; known: {', '.join(GAN_KINDS)}")
    if weight is not None:
        if for_discriminator:
            raise ValueError("a weight map applies to the generator's adversarial term only")
        weight = _fit_weight(weight, fake_logits)
    if kind == "ragan" or for_discriminator:
        if real_logits is None:
            raise ValueError(f"{kind} needs real_logits{' for the discriminator' if for_discriminator else ''}")
        if not for_discriminator:
            real_logits = real_logits.detach()

    if kind == "ragan":
        real_rel = real_logits - fake_logits.mean()
        fake_rel = fake_logits - real_logits.mean()
        real_target = for_discriminator  # D: real is "more real"; G: the reverse
        return 0.5 * (_bce(real_rel, real_target, weight) + _bce(fake_rel, not real_target, weight))

    term = _bce if kind == "vanilla" else _least_squares
    if for_discriminator:
        return 0.5 * (term(real_logits, True) + term(fake_logits, False))
    return term(fake_logits, True, weight)


def _fit_weight(weight: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``weight`` (N, 1, H, W) brought to ``logits``' shape: area-averaged to a per-pixel
    discriminator's grid, or one mean per image for an (N, 1) one."""
    weight = weight.detach().to(logits.dtype)
    if logits.dim() == 4:
        if weight.shape[-2:] != logits.shape[-2:]:
            weight = F.adaptive_avg_pool2d(weight, logits.shape[-2:])
        return weight.expand_as(logits)
    return weight.mean(dim=(1, 2, 3)).view(-1, *([1] * (logits.dim() - 1))).expand_as(logits)


def _bce(logits: torch.Tensor, target_is_real: bool, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    target = torch.ones_like(logits) if target_is_real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target, weight=weight)


def _least_squares(logits: torch.Tensor, target_is_real: bool, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    squares = (logits - (1.0 if target_is_real else 0.0)).pow(2)
    return (squares if weight is None else weight * squares).mean()


def feature_matching_loss(real_features: Sequence[torch.Tensor],
                          fake_features: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean over layers of L1(fake feature, real feature); real features are detached."""
    if len(real_features) != len(fake_features) or not real_features:
        raise ValueError(f"need equally many (>0) real and fake features, got "
                         f"{len(real_features)} and {len(fake_features)}")
    losses = [F.l1_loss(fake, real.detach()) for real, fake in zip(real_features, fake_features)]
    return torch.stack(losses).mean()


# ---------------------------------------------------------------------------
# VGG19 perceptual loss

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG19Features(nn.Module):
    """torchvision's ``vgg19().features`` (same indices, so ``features.N.weight`` keys),
    truncated after ``last_layer`` (a name like "conv5_4" or "relu3_4").

    ``forward(x, layers)`` returns ``{name: activation}`` for the requested layer names.
    Activations after ReLUs are not taken in place, so pre-activation features stay intact.
    """

    def __init__(self, *, last_layer: str = "pool5"):
        super().__init__()
        if last_layer not in VGG19_LAYER_NAMES:
            raise ValueError(f"unknown VGG19 layer {last_layer!r}")
        layers: list[nn.Module] = []
        channels = 3
        for item in VGG19_CFG:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, item, 3, 1, 1), nn.ReLU(inplace=False)]
                channels = item
        self.features = nn.Sequential(*layers[: VGG19_LAYER_NAMES.index(last_layer) + 1])

    def forward(self, x: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        wanted = set(layers)
        out: dict[str, torch.Tensor] = {}
        for index, layer in enumerate(self.features):
            x = layer(x)
            name = VGG19_LAYER_NAMES[index]
            if name in wanted:
                out[name] = x
                if len(out) == len(wanted):
                    break
        return out

    def load_vgg19_weights(self, path: str | Path) -> None:
        """Load a torchvision VGG19 state dict (any file ``weights.read_state_dict`` reads:
        ``.pth`` or ``.safetensors``). Keys with or without the ``features.`` prefix are
        accepted; classifier keys are ignored; any missing conv weight raises."""
        from ..weights import read_state_dict
        state, _ = read_state_dict(path)
        own = self.state_dict()
        picked = {}
        for key in own:
            for candidate in (key, key[len("features."):]):
                if candidate in state:
                    picked[key] = state[candidate]
                    break
            else:
                raise ValueError(f"{path}: no {key!r} (nor without 'features.'); not a VGG19 state dict")
            if picked[key].shape != own[key].shape:
                raise ValueError(f"{path}: {key} has shape {tuple(picked[key].shape)}, "
                                 f"expected {tuple(own[key].shape)}")
        self.load_state_dict(picked, strict=True)


class PerceptualLoss(nn.Module):
    """Weighted L1 distance between VGG19 features of prediction and target.

    ``layer_weights`` maps VGG19 layer names to weights; the default
    ``{"conv5_4": 1.0}`` is ESRGAN's (features before the activation). SRGAN-style
    ``{"relu5_4": 1.0}`` or multi-layer mixes work the same. Inputs in [0, 1] are
    normalised with the ImageNet mean/std (1-channel inputs are repeated to 3).
    ``weights_path`` is a torchvision VGG19 state dict; with None, random weights
    are used only if ``allow_random_init`` is set (tests), otherwise it raises.
    The VGG is frozen: its parameters do not require gradients.
    """

    def __init__(self, *, weights_path: str | Path | None = None,
                 layer_weights: Mapping[str, float] | None = None, allow_random_init: bool = False):
        super().__init__()
        self.layer_weights = dict(layer_weights or {"conv5_4": 1.0})
        unknown = [name for name in self.layer_weights if name not in VGG19_LAYER_NAMES]
        if unknown or not self.layer_weights:
            raise ValueError(f"unknown VGG19 layers {unknown}; known: {', '.join(VGG19_LAYER_NAMES)}")
        last = max(self.layer_weights, key=VGG19_LAYER_NAMES.index)
        self.vgg = VGG19Features(last_layer=last)
        if weights_path is not None:
            self.vgg.load_vgg19_weights(weights_path)
        elif not allow_random_init:
            raise ValueError("the perceptual loss needs VGG19 weights (a torchvision vgg19 state dict path); "
                             "random init only with allow_random_init=True")
        self.vgg.requires_grad_(False)
        self.vgg.eval()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "PerceptualLoss":
        super().train(mode)
        self.vgg.eval()  # no dropout/BN here, but keep the frozen net in eval regardless
        return self

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        return (x - self.mean) / self.std

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred_feats = self.vgg(self._prepare(pred), self.layer_weights)
        with torch.no_grad():
            target_feats = self.vgg(self._prepare(target), self.layer_weights)
        total = pred.new_zeros(())
        for name, weight in self.layer_weights.items():
            total = total + weight * F.l1_loss(pred_feats[name], target_feats[name])
        return total


# ---------------------------------------------------------------------------
# loss specs

def parse_loss_spec(items: Iterable[str] | str) -> dict[str, float]:
    """Parse ``["l1=1", "perceptual=0.01"]`` (or ``"l1=1,perceptual=0.01"``) into weights.

    Names: ``config.LOSS_NAMES``.
    Weights are non-negative floats; unknown names, duplicates and malformed items raise ValueError.
    """
    if isinstance(items, str):
        items = [items]
    weights: dict[str, float] = {}
    for item in items:
        for part in item.split(","):
            part = part.strip()
            if not part:
                continue
            name, sep, value = part.partition("=")
            name = name.strip()
            if not sep:
                raise ValueError(f"loss term {part!r} is not NAME=WEIGHT")
            if name not in LOSS_NAMES:
                raise ValueError(f"unknown loss {name!r}; known: {', '.join(LOSS_NAMES)}")
            if name in weights:
                raise ValueError(f"loss {name!r} given twice")
            try:
                weight = float(value)
            except ValueError:
                raise ValueError(f"loss {name!r}: weight {value.strip()!r} is not a number") from None
            if not weight >= 0 or weight == float("inf"):
                raise ValueError(f"loss {name!r}: weight must be a finite number >= 0, got {value.strip()}")
            weights[name] = weight
    if not weights:
        raise ValueError("empty loss spec")
    return weights
