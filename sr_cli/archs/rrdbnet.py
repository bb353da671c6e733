"""RRDBNet (ESRGAN, Wang et al. 2018), parameter names exactly as BasicSR / Real-ESRGAN.

Keys: ``conv_first``, ``body.N.rdb{1,2,3}.conv{1..5}``, ``conv_body``,
``conv_up1``, ``conv_up2``, ``conv_hr``, ``conv_last`` (and ``conv_up3`` at x8
only), so ``RealESRGAN_x4plus.pth``'s ``params_ema`` loads with strict=True.

Scales:
  x4  as upstream: nearest x2 -> conv_up1, nearest x2 -> conv_up2.
  x2  as Real-ESRGAN: pixel-unshuffle the input by 2 (conv_first takes 4x the
      channels), then the x4 tail; input H/W must be even (``size_multiple`` 2).
  x1  as Real-ESRGAN: unshuffle by 4 (16x channels); ``size_multiple`` 4.
  x3  our choice: one nearest x3 before conv_up1, and conv_up2 kept as a second
      conv at the x3 resolution (no second upsample). The key set and every
      tensor shape stay those of x4, so x4 weights are a valid start for x3
      fine-tuning, and the HR-side depth is the same.
  x8  our choice: a third nearest x2 followed by an extra ``conv_up3`` (the only
      key beyond the x4 set).

Foreign layouts recognised (``RRDBNET_ARCH``), renamed onto these keys:
  Real-ESRGAN RRDBNet     conv_first, body.N.rdbK.convJ, conv_body, conv_up1/2, conv_hr, conv_last
                          (x4plus, x4plus_anime_6B, x2plus and x1: conv_first takes in*4 / in*16)
  ESRGAN (original)       model.0, model.1.sub.N.RDBK.convJ.0, model.1.sub.<nb>, model.3/6/8/10 (x4; x8)
  ESRGAN (mmsr layout)    conv_first, RRDB_trunk.N.RDBK.convJ, trunk_conv, upconv1/2, HRconv, conv_last
"""
from __future__ import annotations

import re
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .descriptor import ArchDescriptor, Recognised, StateDict, Unmappable, key_indices
from .layers import chain_radius

_SCALES = (1, 2, 3, 4, 8)


def unshuffle_factor(scale: int) -> int:
    """Real-ESRGAN's x2 / x1 pixel-unshuffle the input by 2 / 4; input H and W must be multiples of it."""
    return {1: 4, 2: 2}.get(scale, 1)


def _init_scaled(modules: list[nn.Module], scale: float) -> None:
    """Kaiming-normal init scaled down (BasicSR's default_init_weights): stable deep residuals."""
    for module in modules:
        nn.init.kaiming_normal_(module.weight)
        module.weight.data.mul_(scale)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


_FUSED_OPS = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise_")


def _exporting() -> bool:
    compiling = getattr(torch.compiler, "is_compiling", None)
    return (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export()
            or bool(compiling and compiling()))


class ResidualDenseBlock(nn.Module):
    # Inference on CPU (fp32, channels-last, no autograd) takes the concat-free path below;
    # set False to force the stock BasicSR forward (the benchmark's reference loop does).
    fused_inference = True

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32):
        super().__init__()
        self.num_feat, self.num_grow_ch = num_feat, num_grow_ch
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)
        _init_scaled([self.conv1, self.conv2, self.conv3, self.conv4, self.conv5], 0.1)

    def _can_fuse(self, x: torch.Tensor) -> bool:
        return (self.fused_inference and _FUSED_OPS and not torch.is_grad_enabled()
                and x.device.type == "cpu" and x.dtype == torch.float32 and x.ndim == 4
                and self.conv1.weight.dtype == torch.float32
                and x.is_contiguous(memory_format=torch.channels_last) and not _exporting())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._can_fuse(x):
            return self._forward_fused(x)
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x

    def _forward_fused(self, x: torch.Tensor) -> torch.Tensor:
        """The same function without ``torch.cat``: a conv over concatenated inputs is the sum of
        convs over each input with its slice of the weights, and oneDNN adds a conv's result into
        an existing tensor in place. The concat copies are memory-bound and cost ~30% of the
        block on a CPU (benchmarks/dense_block.py: 280 -> 191 ms on 272x272, 2 threads); the 0.2
        residual scale is folded into conv5, and conv1's LeakyReLU into the conv."""
        conv = torch.ops.mkldnn._convolution_pointwise
        conv_add_ = torch.ops.mkldnn._convolution_pointwise_.binary
        geometry = ([1, 1], [1, 1], [1, 1], 1)  # padding, stride, dilation, groups
        nf, gc = self.num_feat, self.num_grow_ch
        convs = (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5)
        features = [x]
        for index, layer in enumerate(convs):
            if index == 4:  # x + 0.2 * conv5(x-part); the other parts are added in place below
                weight = layer.weight * 0.2
                acc = conv.binary(x, x, weight[:, :nf], layer.bias * 0.2, *geometry, "add", 1.0, None, [], "")
            else:
                weight = layer.weight
                activation = ("leaky_relu", [0.2]) if index == 0 else ("none", [])
                acc = conv(x, weight[:, :nf], layer.bias, *geometry, *activation, "")
            for j in range(1, index + 1):
                part = weight[:, nf + (j - 1) * gc: nf + j * gc]
                conv_add_(acc, features[j], part, None, *geometry, "add", 1.0, None, [], "")
            if 0 < index < 4:
                F.leaky_relu_(acc, 0.2)
            features.append(acc)
        return features[5]


class RRDB(nn.Module):
    def __init__(self, num_feat: int, num_grow_ch: int = 32):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    def __init__(self, *, scale: int = 4, in_channels: int = 3, out_channels: int = 3,
                 num_feat: int = 64, num_block: int = 23, num_grow_ch: int = 32):
        super().__init__()
        if scale not in _SCALES:
            raise ValueError(f"RRDBNet supports scales {_SCALES}, got {scale}")
        self.scale = scale
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.unshuffle = unshuffle_factor(scale)
        self.size_multiple = self.unshuffle
        self.conv_first = nn.Conv2d(in_channels * self.unshuffle ** 2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(num_feat, num_grow_ch) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        if scale == 8:
            self.conv_up3 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, out_channels, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)
        # (upsample factor before each conv_up*): x1/x2/x4 run the x4 tail on the unshuffled grid.
        self._ups = {3: (3, 1), 8: (2, 2, 2)}.get(scale, (2, 2))

        ops: list = [("down", self.unshuffle)] if self.unshuffle > 1 else []
        ops += [("conv", 3)] * (1 + 15 * num_block + 1)
        for factor in self._ups:
            ops += ([("up", factor)] if factor > 1 else []) + [("conv", 3)]
        ops += [("conv", 3), ("conv", 3)]
        self.receptive_radius = chain_radius(ops, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.unshuffle
        if x.shape[-2] % m or x.shape[-1] % m:
            raise ValueError(f"RRDBNet x{self.scale} needs H and W multiples of {m}, got {tuple(x.shape[-2:])}")
        feat = F.pixel_unshuffle(x, m) if m > 1 else x
        feat = self.conv_first(feat)
        feat = feat + self.conv_body(self.body(feat))
        convs = [self.conv_up1, self.conv_up2] + ([self.conv_up3] if self.scale == 8 else [])
        for factor, conv in zip(self._ups, convs):
            if factor > 1:
                feat = F.interpolate(feat, scale_factor=factor, mode="nearest")
            feat = self.lrelu(conv(feat))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))


# ---------------------------------------------------------------------------
# foreign layouts


def _rrdb_params(state: StateDict, layout: str, scale: Optional[int] = None) -> Recognised:
    """Hyperparameters of a state dict already in our RRDBNet's key names."""
    first, last = state["conv_first.weight"], state["conv_last.weight"]
    num_feat, in_total = int(first.shape[0]), int(first.shape[1])
    out_ch = int(last.shape[0])
    in_ch = in_total
    if scale is None:
        scale = 8 if "conv_up3.weight" in state else 4
        # Real-ESRGAN x2/x1 pixel-unshuffle the input, so conv_first sees 4x / 16x the channels.
        if scale == 4 and in_total != out_ch:
            for factor, unshuffled_scale in ((4, 2), (16, 1)):
                if in_total == out_ch * factor:
                    scale, in_ch = unshuffled_scale, out_ch
    params = {"scale": scale, "in_channels": in_ch, "out_channels": out_ch, "num_feat": num_feat,
              "num_block": len(key_indices(state, r"body\.(\d+)\.rdb1\.conv1\.weight")),
              "num_grow_ch": int(state["body.0.rdb1.conv1.weight"].shape[0])}
    return Recognised("rrdbnet", params, state, layout)


def _real_esrgan_rrdb(state: StateDict) -> Optional[Recognised]:
    need = ("conv_first.weight", "body.0.rdb1.conv1.weight", "conv_body.weight", "conv_up1.weight",
            "conv_up2.weight", "conv_hr.weight", "conv_last.weight")
    if not all(k in state for k in need):
        return None
    return _rrdb_params(state, "Real-ESRGAN RRDBNet")


def _esrgan_original(state: StateDict) -> Optional[Recognised]:
    if "model.0.weight" not in state or "model.1.sub.0.RDB1.conv1.0.weight" not in state:
        return None
    blocks = key_indices(state, r"model\.1\.sub\.(\d+)\.RDB1\.conv1\.0\.weight")
    num_block = len(blocks)
    # After the trunk: (upsample, conv, lrelu) per x2 stage, then HR conv, lrelu, last conv.
    tail = [i for i in key_indices(state, r"model\.(\d+)\.weight") if i > 1]
    n_up = len(tail) - 2
    if n_up < 0 or tail != [3 * (k + 1) for k in range(n_up)] + [3 * n_up + 2, 3 * n_up + 4]:
        raise Unmappable(f"an original-ESRGAN file with an unexpected tail (model.{tail})")
    if n_up not in (2, 3):
        raise Unmappable(f"an original-ESRGAN x{2 ** n_up} file: only x4 and x8 map onto our RRDBNet")
    renamed: StateDict = {}
    names = {"model.0": "conv_first", f"model.1.sub.{num_block}": "conv_body",
             f"model.{3 * n_up + 2}": "conv_hr", f"model.{3 * n_up + 4}": "conv_last"}
    names.update({f"model.{3 * (k + 1)}": f"conv_up{k + 1}" for k in range(n_up)})
    rdb = re.compile(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)")
    for key, value in state.items():
        if m := rdb.fullmatch(key):
            renamed[f"body.{m[1]}.rdb{m[2]}.conv{m[3]}.{m[4]}"] = value
            continue
        module, _, leaf = key.rpartition(".")
        renamed[f"{names.get(module, module)}.{leaf}"] = value  # unknown keys stay, and fail strict loading
    return _rrdb_params(renamed, "ESRGAN (original layout)", scale=2 ** n_up)


def _esrgan_mmsr(state: StateDict) -> Optional[Recognised]:
    if "RRDB_trunk.0.RDB1.conv1.weight" not in state or "trunk_conv.weight" not in state:
        return None
    names = {"trunk_conv": "conv_body", "upconv1": "conv_up1", "upconv2": "conv_up2", "upconv3": "conv_up3",
             "HRconv": "conv_hr"}
    rdb = re.compile(r"RRDB_trunk\.(\d+)\.RDB(\d)\.conv(\d)\.(weight|bias)")
    renamed: StateDict = {}
    for key, value in state.items():
        if m := rdb.fullmatch(key):
            renamed[f"body.{m[1]}.rdb{m[2]}.conv{m[3]}.{m[4]}"] = value
            continue
        module, _, leaf = key.rpartition(".")
        renamed[f"{names.get(module, module)}.{leaf}"] = value
    if "conv_up2.weight" not in renamed:
        raise Unmappable("an mmsr-layout ESRGAN file without upconv2: only x4 and x8 map onto our RRDBNet")
    return _rrdb_params(renamed, "ESRGAN (mmsr layout)", scale=8 if "conv_up3.weight" in renamed else 4)


RRDBNET_ARCH = ArchDescriptor("rrdbnet", RRDBNet, layouts=(_real_esrgan_rrdb, _esrgan_original, _esrgan_mmsr),
                              tiny={"num_feat": 8, "num_block": 1, "num_grow_ch": 4})
