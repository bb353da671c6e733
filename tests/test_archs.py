"""Every registered generator and discriminator, on tiny inputs and tiny widths."""
import pytest
import torch
from conftest import TINY_PARAMS as TINY

from sr_cli.archs import ARCHS, DISCRIMINATORS, build_arch, set_fused_inference
from sr_cli.archs.discriminators import build_discriminator
from sr_cli.archs.layers import chain_radius
from sr_cli.model import SRModel
from sr_cli.weights import load_model, save_model

SCALES = (2, 3, 4, 8)
CASES = [(name, scale) for name in ARCHS for scale in SCALES]

# Parameter counts at default settings, x4 (EDSR-baseline 1.5M, SRResNet 1.5M and
# RRDBNet 16.7M as in their papers / BasicSR).
DEFAULT_X4_PARAMS = {
    "espcn": 37_200,
    "srresnet": 1_549_462,
    "edsr": 1_517_571,
    "rrdbnet": 16_697_987,
    "autoencoder": 1_358_147,
    "vae": 1_413_603,
}


def tiny(name, scale, **extra):
    return build_arch(name, scale=scale, **{**TINY[name], **extra})


def test_every_arch_declares_tiny_settings():
    assert all(arch.tiny for arch in ARCHS.values())


def test_descriptors_are_listed_under_their_names():
    for name, arch in ARCHS.items():
        assert arch.name == name and isinstance(build_arch(name, scale=2, **TINY[name]), arch.constructor)


def _input_size(net, odd=(7, 9)):
    m = getattr(net, "size_multiple", 1)
    return odd if m == 1 else (2 * m, 3 * m)


@pytest.mark.parametrize("name,scale", CASES)
def test_shape_gradients_and_finite(name, scale):
    net = tiny(name, scale).train()
    h, w = _input_size(net)
    x = torch.rand(2, net.in_channels, h, w)  # batch of 2: batch norm in training mode
    y = net(x)
    assert y.shape == (2, net.in_channels, h * scale, w * scale)
    assert torch.isfinite(y).all()
    loss = y.mean() + (net.last_kl if name == "vae" else 0)
    loss.backward()
    for pname, param in net.named_parameters():
        assert param.grad is not None, f"{name}: no gradient for {pname}"
        assert torch.isfinite(param.grad).all(), pname


@pytest.mark.parametrize("name", [n for n in ARCHS if n not in ("srvgg", "litesr")])
def test_default_parameter_counts_x4(name):
    net = build_arch(name, scale=4)
    assert sum(p.numel() for p in net.parameters()) == DEFAULT_X4_PARAMS[name]


def _influence(net, x, i, j):
    """LR distance (rows, cols) of the farthest output pixel changed by perturbing input (i, j)."""
    scale = net.scale
    with torch.no_grad():
        y0 = net(x)
        x2 = x.clone()
        x2[..., i, j] += 1.0
        changed = (net(x2) != y0).any(dim=1)[0].nonzero()
    assert len(changed), "perturbation changed nothing"
    lr = changed // scale  # the LR pixel each changed output pixel belongs to
    return int((lr[:, 0] - i).abs().max()), int((lr[:, 1] - j).abs().max())


@pytest.mark.parametrize("name,scale", CASES)
def test_receptive_radius_is_a_close_upper_bound(name, scale):
    torch.manual_seed(1)
    net = tiny(name, scale).eval().double()
    with torch.no_grad():  # some nets zero-init their tail (litesr): make every path live
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    r = net.receptive_radius
    m = getattr(net, "size_multiple", 1)
    side = -(-(2 * r + 2 * m + 3) // m) * m  # room for the whole influence region
    x = torch.rand(1, net.in_channels, side, side, dtype=torch.float64)
    reach = 0
    for offset in range(m):  # each phase of a strided / unshuffling net
        i = side // 2 + offset
        dy, dx = _influence(net, x, i, i)
        assert max(dy, dx) <= r, f"{name} x{scale}: influence reaches {dy, dx} > radius {r}"
        reach = max(reach, dy, dx)
    # Close, not just an upper bound (the radius is from an exact walk of the chain).
    assert reach >= r - 1, f"{name} x{scale}: radius {r} but influence only reaches {reach}"


def test_chain_radius_basics():
    assert chain_radius([("conv", 5), ("conv", 3), ("conv", 3), ("up", 4)], 4) == 4
    assert chain_radius([("up", 2), ("conv", 3)], 2) == 1  # one HR pixel reaches into the next LR pixel
    assert chain_radius([("up", 4), ("conv", 9)], 4) == 1
    assert chain_radius([("down", 2), ("conv", 3), ("up", 4)], 2) == 3


def test_espcn_paper_layout():
    net = build_arch("espcn", scale=3)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.kernel_size[0], c.out_channels) for c in convs] == [(5, 64), (3, 32), (3, 27)]
    assert isinstance(net.body[1], torch.nn.Tanh)
    with pytest.raises(ValueError, match="activation"):
        build_arch("espcn", scale=2, act_type="gelu")


def test_rrdbnet_keys_match_real_esrgan():
    keys = set(build_arch("rrdbnet", scale=4, num_block=2, num_feat=8, num_grow_ch=4).state_dict())
    for key in ("conv_first.weight", "body.0.rdb1.conv1.weight", "body.0.rdb1.conv5.bias",
                "body.1.rdb3.conv5.weight", "conv_body.weight", "conv_up1.weight", "conv_up2.weight",
                "conv_hr.weight", "conv_last.weight", "conv_last.bias"):
        assert key in keys
    assert not any(k.startswith("conv_up3") for k in keys)
    # x3 has exactly the x4 layout; x8 adds conv_up3 only.
    x3 = build_arch("rrdbnet", scale=3, num_block=2, num_feat=8, num_grow_ch=4).state_dict()
    assert {k: v.shape for k, v in x3.items()} == {
        k: v.shape for k, v in build_arch("rrdbnet", scale=4, num_block=2, num_feat=8, num_grow_ch=4)
        .state_dict().items()}
    x8 = set(build_arch("rrdbnet", scale=8, num_block=2, num_feat=8, num_grow_ch=4).state_dict())
    assert x8 - keys == {"conv_up3.weight", "conv_up3.bias"}


@pytest.mark.parametrize("scale,multiple,in_ch", [(1, 4, 48), (2, 2, 12)])
def test_rrdbnet_unshuffle_scales(scale, multiple, in_ch):
    net = tiny("rrdbnet", scale)
    assert net.size_multiple == multiple and net.conv_first.in_channels == in_ch
    y = net(torch.rand(1, 3, 8, 12))
    assert y.shape == (1, 3, 8 * scale, 12 * scale)
    with pytest.raises(ValueError, match=f"multiples of {multiple}"):
        net(torch.rand(1, 3, 8, 13))


def _rrdbnet_with_busy_weights(scale: int = 4) -> torch.nn.Module:
    # Real-sized weights (not the 0.1-scaled init) so every term of the dense blocks matters.
    torch.manual_seed(0)
    net = build_arch("rrdbnet", scale=scale, num_feat=8, num_block=2, num_grow_ch=4).eval()
    for name, param in net.named_parameters():
        if ".rdb" in name:
            torch.nn.init.normal_(param, std=0.15 if name.endswith("weight") else 0.1)
    return net


def _count_fused_calls(monkeypatch) -> list:
    from sr_cli.archs.rrdbnet import ResidualDenseBlock
    calls, original = [], ResidualDenseBlock._forward_fused
    monkeypatch.setattr(ResidualDenseBlock, "_forward_fused", lambda self, x: calls.append(1) or original(self, x))
    return calls


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs PyTorch's oneDNN CPU kernels")
@pytest.mark.parametrize("scale", [2, 4])
def test_rrdbnet_fused_inference_equals_the_stock_forward(monkeypatch, scale):
    net = _rrdbnet_with_busy_weights(scale)
    x = torch.rand(2, 3, 14, 10)
    with torch.no_grad():
        stock = net(x)  # NCHW: the stock path
    calls = _count_fused_calls(monkeypatch)
    assert not calls
    net.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        fused = net(x.contiguous(memory_format=torch.channels_last))
    assert len(calls) == 2 * 3  # every dense block of both RRDBs
    assert stock.abs().mean() > 0.01
    assert torch.allclose(fused, stock, atol=1e-5, rtol=1e-4)


def test_rrdbnet_fused_path_stays_out_of_training_and_when_switched_off(monkeypatch):
    net = _rrdbnet_with_busy_weights().to(memory_format=torch.channels_last)
    x = torch.rand(1, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    calls = _count_fused_calls(monkeypatch)
    net(x).mean().backward()  # autograd on: the stock path, gradients flow
    assert not calls and net.body[0].rdb1.conv2.weight.grad is not None
    set_fused_inference(net, False)
    with torch.inference_mode():
        net(x)
    assert not calls


def test_unsupported_scales_raise():
    for name in ("srresnet", "edsr", "rrdbnet", "autoencoder", "vae"):
        with pytest.raises(ValueError, match="scale"):
            tiny(name, 5)


def test_edsr_mean_shift_and_rgb_range():
    net = tiny("edsr", 2).eval()
    assert "mean" not in net.state_dict()  # a fixed buffer, not a weight
    x = torch.rand(1, 3, 5, 6)
    scaled = tiny("edsr", 2, rgb_range=255.0).eval()
    scaled.load_state_dict(net.state_dict())
    with torch.no_grad():
        # With zero biases the body is positively homogeneous, so rgb_range only rescales inside.
        for module in (net, scaled):
            for pname, p in module.named_parameters():
                if pname.endswith("bias"):
                    p.zero_()
        assert torch.allclose(net(x), scaled(x), atol=1e-5)
    assert "mean" in dict(net.named_buffers())


def test_autoencoder_size_multiple_and_up_modes():
    net = tiny("autoencoder", 2, num_down=2, up_mode="transpose", skips=False)
    assert net.size_multiple == 4
    assert net(torch.rand(1, 3, 8, 4)).shape == (1, 3, 16, 8)
    with pytest.raises(ValueError, match="multiples of 4"):
        net(torch.rand(1, 3, 6, 8))
    with pytest.raises(ValueError, match="up_mode"):
        tiny("autoencoder", 2, up_mode="bilinear")


def test_vae_sampling_kl_and_eval_determinism():
    net = tiny("vae", 2)
    x = torch.rand(1, 3, 8, 8)
    net.train()
    a, b = net(x), net(x)
    assert not torch.equal(a, b)  # reparameterised sample in training mode
    kl = net.kl_divergence()
    assert kl.ndim == 0 and kl.item() >= 0
    kl.backward()
    assert net.to_latent.weight.grad is not None
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), net(x))  # the mean in eval mode
    assert net.last_kl is not None


@pytest.mark.parametrize("name", ["espcn", "rrdbnet", "vae", "srresnet"])
def test_save_load_round_trip(tmp_path, name):
    params = {"scale": 2, **TINY[name]}
    net = build_arch(name, **params).eval()
    path = tmp_path / f"{name}.safetensors"
    save_model(net, path, arch=name, params=params)
    loaded = load_model(path)
    assert isinstance(loaded, SRModel)
    assert loaded.size_multiple == getattr(net, "size_multiple", 1)
    assert loaded.receptive_radius == net.receptive_radius
    x = torch.rand(1, 3, 6, 10)  # SRModel pads to the size multiple and crops
    y = loaded(x)
    assert y.shape == (1, 3, 12, 20)


# --- discriminators ---------------------------------------------------------------


def test_discriminators_registered():
    assert set(DISCRIMINATORS) == {"vgg", "unet"}
    with pytest.raises(ValueError, match="unknown discriminator"):
        build_discriminator("patchgan")
    with pytest.raises(ValueError, match="bad parameters"):
        build_discriminator("vgg", scale=4)


@pytest.mark.parametrize("size", [32, 40])
def test_vgg_discriminator_shapes_and_features(size):
    d = build_discriminator("vgg", num_feat=4, pool_size=2, dense_features=8)
    x = torch.rand(2, 3, size, size)
    logits, feats = d(x, return_features=True)
    assert logits.shape == (2, 1) and len(feats) == 8
    assert [f.shape[1] for f in feats] == [4, 4, 8, 8, 16, 16, 32, 32]
    assert feats[-1].shape[-1] == -(-size // 16)
    assert torch.equal(d.eval()(x), d(x))
    logits.mean().backward()
    assert all(p.grad is not None for p in d.parameters())


def test_vgg_discriminator_default_matches_srgan():
    d = build_discriminator("vgg")
    assert d.classifier[0].in_features == 512 * 6 * 6 and d.classifier[0].out_features == 1024


def test_unet_discriminator_shapes_keys_and_features():
    d = build_discriminator("unet", num_feat=4)
    x = torch.rand(2, 3, 16, 24)
    logits, feats = d(x, return_features=True)
    assert logits.shape == (2, 1, 16, 24) and len(feats) == 9
    keys = set(d.state_dict())
    assert {"conv0.weight", "conv1.weight_orig", "conv1.weight_u", "conv8.weight_v", "conv9.weight",
            "conv9.bias"} <= keys
    assert "conv1.bias" not in keys
    logits.mean().backward()
    assert all(p.grad is not None for p in d.parameters())
    with pytest.raises(ValueError, match="multiples of 8"):
        d(torch.rand(1, 3, 12, 16))


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("base,mode", [("nearest", "nearest"), ("bilinear", "bilinear")])
def test_litesr_starts_as_its_base_upsampling(scale, base, mode):
    # The tail is zero-initialised, so an untrained LiteSR is exactly its base: nearest
    # (added to the sub-pixel channels at LR size) or bilinear (added at HR size).
    net = build_arch("litesr", scale=scale, num_feat=8, num_blocks=1, base=base).eval()
    x = torch.rand(2, 3, 5, 7)
    expected = torch.nn.functional.interpolate(x, scale_factor=scale, mode=mode,
                                               **({} if mode == "nearest" else {"align_corners": False}))
    with torch.no_grad():
        torch.testing.assert_close(net(x), expected, rtol=0, atol=1e-6)


def test_litesr_block_grid_starts_as_the_network_without_it():
    # Fine-tuning a shipped fast model into a grid-aware one starts from the same outputs.
    plain = tiny("litesr", 2, base="nearest")
    torch.nn.init.normal_(plain.tail.weight, std=0.1)
    grid = tiny("litesr", 2, base="nearest", block_grid=8)
    missing = grid.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing == ["grid_bias"] and grid.size_multiple == 8
    x = torch.rand(1, 3, 16, 24)
    with torch.no_grad():
        assert torch.equal(grid.eval()(x), plain.eval()(x))


def test_litesr_block_grid_knows_the_phase_and_not_the_orientation():
    torch.manual_seed(0)
    net = tiny("litesr", 2, base="nearest", block_grid=8).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)
    # Training flips and transposes patches after compressing them: a pixel's place in its block
    # is mirrored, its distance to the block edge is not, and the bias depends only on that.
    pattern = net._grid_pattern(40, 40)
    assert torch.equal(pattern.flip(-1), pattern) and torch.equal(pattern.flip(-2), pattern)
    assert torch.equal(pattern.transpose(-1, -2), pattern)
    assert not torch.equal(pattern[..., :, 1:9], pattern[..., :, :8])
    # Away from the borders, cropping a whole block off keeps every output; one pixel does not.
    x = torch.rand(1, 3, 32, 48)
    r = 2 * net.receptive_radius  # in output pixels at x2, the radius plus a margin
    with torch.no_grad():
        y = net(x)[..., r:-r]
        by_block = net(x[..., 8:])[..., r:-r]
        by_pixel = net(x[..., 1:])[..., r:-r]
    assert torch.allclose(by_block, y[..., 16:], atol=1e-5)
    assert not torch.allclose(by_pixel, y[..., 2:], atol=1e-3)


def test_litesr_block_grid_is_the_codec_block():
    with pytest.raises(ValueError, match="block_grid"):
        build_arch("litesr", scale=2, block_grid=6)


def test_litesr_rejects_an_unknown_base():
    with pytest.raises(ValueError, match="base"):
        build_arch("litesr", scale=2, base="bicubic")


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("factor", [2, 3, 4])
def test_pixel_shuffle_matches_torch_and_returns_nchw(factor, channels_last):
    from sr_cli.archs.layers import pixel_shuffle
    x = torch.rand(2, 3 * factor * factor, 5, 7)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = pixel_shuffle(x, factor)
    assert out.is_contiguous()
    torch.testing.assert_close(out, torch.nn.functional.pixel_shuffle(x, factor), rtol=0, atol=0)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_srvgg_adds_the_nearest_upsampled_input_as_real_esrgan_does(scale):
    # Real-ESRGAN's SRVGGNetCompact: pixel_shuffle(body(x)) + nearest(x); ours adds at LR size.
    net = tiny("srvgg", scale).eval()
    x = torch.rand(2, 3, 6, 5)
    with torch.no_grad():
        body = x
        for layer in net.body:
            body = layer(body)
        expected = torch.nn.functional.pixel_shuffle(body, scale) + torch.nn.functional.interpolate(
            x, scale_factor=scale, mode="nearest")
        torch.testing.assert_close(net(x), expected, rtol=0, atol=1e-6)
