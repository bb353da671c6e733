import pytest
import numpy as np
import torch
from conftest import random_net
from hypothesis import given, settings, strategies as st

from sr_cli.archs import build_arch
from sr_cli.tiling import blend_weights, plan_axis, tiled_apply


# Weights of deviation 0.2: non-trivial, so any seam would show.
NETS = {
    "srvgg": lambda s: random_net("srvgg", scale=s, std=0.2, num_feat=8, num_conv=2),
    "litesr": lambda s: random_net("litesr", scale=s, std=0.2, num_feat=8, num_blocks=1),
    "litesr-nearest": lambda s: random_net("litesr", scale=s, std=0.2, num_feat=8, num_blocks=1, base="nearest"),
    "espcn": lambda s: random_net("espcn", scale=s, std=0.2),
    "edsr": lambda s: random_net("edsr", scale=s, std=0.2, num_feat=8, num_blocks=1),
}


@settings(max_examples=25, deadline=None)
@given(height=st.integers(1, 48), width=st.integers(1, 48), tile=st.integers(4, 64),
       scale=st.sampled_from([2, 3, 4]), arch=st.sampled_from(sorted(NETS)), extra=st.integers(0, 6))
def test_tiled_equals_untiled(height, width, tile, scale, arch, extra):
    torch.manual_seed(height * 1000 + width)
    net = NETS[arch](scale)
    overlap = 2 * net.receptive_radius + extra
    x = torch.rand(1, 3, height, width)
    with torch.no_grad():
        full = net(x).clamp(0, 1)
        tiled = tiled_apply(lambda t: net(t).clamp(0, 1), x, scale=scale, tile=tile, overlap=overlap, batch_size=3)
    assert tiled.shape == (1, 3, height * scale, width * scale)
    assert (tiled - full).abs().max().item() <= 1 / 255


GRID_NETS = {
    # downsamples by 4 inside: tiles must start on multiples of 4
    "autoencoder": lambda s: build_arch("autoencoder", scale=s, num_feat=8).eval(),
    # a bias per place in the 8x8 codec block: tiles must start on the block grid
    "litesr-grid": lambda s: random_net("litesr", scale=s, std=0.2, num_feat=8, num_blocks=1, base="nearest",
                                        block_grid=8),
}


@settings(max_examples=12, deadline=None)
@given(height=st.integers(8, 40), width=st.integers(8, 40), tile=st.integers(8, 24), scale=st.sampled_from([2, 4]),
       arch=st.sampled_from(sorted(GRID_NETS)))
def test_size_multiple_networks_tile_exactly(height, width, tile, scale, arch):
    from sr_cli.model import SRModel
    torch.manual_seed(height * 1000 + width)
    net = GRID_NETS[arch](scale)
    model = SRModel.from_net(net, arch, {})
    m = model.size_multiple
    x = torch.rand(1, 3, height, width)  # the model pads to its multiple at the right and bottom
    full = model(x)
    tiled = tiled_apply(model, x, scale=scale, tile=tile, overlap=2 * model.receptive_radius, multiple=m)
    assert (tiled - full).abs().max().item() <= 1 / 255


@given(length=st.integers(1, 300), tile=st.integers(1, 100), overlap=st.integers(0, 40), scale=st.integers(1, 4),
       multiple=st.sampled_from([1, 2, 4]))
@settings(max_examples=60, deadline=None)
def test_blend_weights_partition_unity(length, tile, overlap, scale, multiple):
    spans = plan_axis(length, tile, overlap, multiple)
    total = np.zeros(length * scale)
    for span in spans:
        w = blend_weights(span, scale)
        assert w.size == (span.read_end - span.read_start) * scale
        assert (w >= 0).all() and (w <= 1).all()
        total[span.read_start * scale: span.read_end * scale] += w
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    # cores partition the axis
    assert spans[0].core_start == 0 and spans[-1].core_end == length
    assert all(a.core_end == b.core_start for a, b in zip(spans, spans[1:]))
    assert all(s.read_start % multiple == 0 and s.core_start % multiple == 0 for s in spans)


@settings(max_examples=30, deadline=None)
@given(height=st.integers(1, 60), width=st.integers(1, 60), tile=st.integers(4, 24), overlap=st.integers(0, 10),
       batch_size=st.integers(1, 3))
def test_rectangles_reach_sink_once_each_in_raster_order(height, width, tile, overlap, batch_size):
    x = torch.rand(1, 3, height, width)
    seen, cover = [], torch.zeros(2 * height, 2 * width, dtype=torch.int32)
    tiled_apply(lambda t: torch.nn.functional.interpolate(t, scale_factor=2, mode="nearest"), x,
                scale=2, tile=tile, overlap=overlap, batch_size=batch_size,
                sink=lambda top, left, block: seen.append((top, left, block.shape[2], block.shape[3])))
    for top, left, h, w in seen:
        cover[top:top + h, left:left + w] += 1
    assert (cover == 1).all()  # every output pixel exactly once
    assert seen == sorted(seen)  # tile rows top to bottom, tiles left to right within them


def test_float_memory_beyond_a_tile_is_a_strip_not_a_band():
    # A tall tile row must not be held in float across the output's width: what the blending
    # keeps between tiles (the strip below the tile row, the seam right of the tile) is small.
    x = torch.rand(1, 3, 64, 256)
    peak = []

    class Watch(torch.utils._python_dispatch.TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func in (torch.ops.aten.new_empty.default, torch.ops.aten.empty.memory_format,
                        torch.ops.aten.new_zeros.default, torch.ops.aten.zeros.default):
                peak.append(out.numel())
            return out

    with Watch():
        tiled_apply(lambda t: torch.nn.functional.interpolate(t, scale_factor=2, mode="nearest"), x,
                    scale=2, tile=32, overlap=4, sink=lambda top, left, block: None)
    output_row_of_tiles = 3 * (2 * 32) * (2 * 256)
    assert peak and max(peak) < output_row_of_tiles // 4


def test_blending_stays_on_the_device_the_tiles_come_back_on():
    # On a GPU the tiles are blended there and only quantised pixels cross to the host. The
    # "meta" device stands in for one here: each tile comes back on it, so must every rectangle.
    x = torch.rand(1, 3, 40, 50)
    devices = []
    tiled_apply(lambda t: torch.nn.functional.interpolate(t.to("meta"), scale_factor=2, mode="nearest"), x,
                scale=2, tile=16, overlap=4, sink=lambda top, left, block: devices.append(block.device.type))
    assert len(devices) == 3 * 4 and set(devices) == {"meta"}


def test_small_overlap_blends_without_hard_steps():
    # With too little context tiles disagree; the cross-fade must keep the transition gradual.
    torch.manual_seed(1)
    net = NETS["srvgg"](2)
    x = torch.rand(1, 3, 32, 64)
    with torch.no_grad():
        full = net(x).clamp(0, 1)
        tiled = tiled_apply(lambda t: net(t).clamp(0, 1), x, scale=2, tile=16, overlap=4)
    assert tiled.shape == full.shape
    assert (tiled - full).abs().mean() < 0.05


def test_wrong_output_size_is_an_error():
    with pytest.raises(ValueError, match="expected"):
        tiled_apply(lambda t: t, torch.rand(1, 3, 8, 8), scale=2, tile=None, overlap=0)
