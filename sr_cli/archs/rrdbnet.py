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
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import chain_radius

_SCALES = (1, 2, 3, 4, 8)


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
        self.unshuffle = {1: 4, 2: 2}.get(scale, 1)
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
