import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from sr_cli.training.losses import (
    GAN_KINDS, VGG19_LAYER_NAMES, PerceptualLoss, VGG19Features, artifact_loss, best_buddy_loss, build_pixel_loss,
    charbonnier_loss, feature_matching_loss, gan_loss, local_variance, parse_loss_spec, texture_mask,
)

LN2 = math.log(2.0)
VGG19_CONV_INDICES = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]


# --- pixel losses -------------------------------------------------------------


def test_pixel_losses_known_values():
    a = torch.zeros(1, 1, 2, 2)
    b = torch.tensor([[[[1.0, -1.0], [2.0, 0.0]]]])
    assert build_pixel_loss("l1")(a, b).item() == pytest.approx(1.0)
    assert build_pixel_loss("mse")(a, b).item() == pytest.approx(1.5)
    assert charbonnier_loss(a, a).item() == pytest.approx(1e-3, rel=1e-4)  # sqrt(0 + eps^2)
    expected = (2 * math.sqrt(1 + 1e-6) + math.sqrt(4 + 1e-6) + 1e-3) / 4
    assert build_pixel_loss("charbonnier")(a, b).item() == pytest.approx(expected, rel=1e-6)
    assert build_pixel_loss("charbonnier", eps=0.5)(a, a).item() == pytest.approx(0.5)
    # neighbour differences of b: across (-2, -2), down (1, 1); of a: 0
    assert build_pixel_loss("gradient")(a, b).item() == pytest.approx(2.0 + 1.0)
    with pytest.raises(ValueError, match="unknown pixel loss"):
        build_pixel_loss("l3")


def test_best_buddy_loss_lets_a_texture_the_image_has_stand_in_for_the_truth():
    # vertical stripes 3 px wide: an output drawn half a period off (each 3x3 tile inverted) is
    # as wrong as can be for L1, while every one of its tiles exists elsewhere in the truth
    x = torch.arange(48)
    stripes = ((x % 6) < 3).float().expand(48, 48).repeat(1, 3, 1, 1)
    shifted = torch.roll(stripes, 3, dims=-1)
    assert build_pixel_loss("l1")(shifted, stripes).item() == 1.0
    # alpha = beta: the buddy lies halfway, a grey tile of the truth's shrinks (stripes averaged)
    assert best_buddy_loss(shifted, stripes).item() == pytest.approx(0.5, abs=0.05)
    assert best_buddy_loss(shifted, stripes, alpha=1.0, beta=0.01).item() == 0.0  # close to what was drawn
    assert best_buddy_loss(shifted, stripes, alpha=0.01, beta=1.0).item() == 1.0  # the truth there: L1
    # on noise no other tile comes close: the buddy is the truth's own tile, the loss plain L1
    rng = np.random.default_rng(0)
    hr = torch.from_numpy(rng.uniform(0, 1, (2, 3, 24, 24))).float()
    sr = (hr + 0.02 * torch.from_numpy(rng.standard_normal(hr.shape)).float()).requires_grad_()
    loss = build_pixel_loss("best_buddy")(sr, hr)
    assert loss.item() == pytest.approx(build_pixel_loss("l1")(sr, hr).item(), rel=1e-6)
    loss.backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0
    assert best_buddy_loss(hr, hr).item() == 0.0


def test_grid_contrast_loss_sees_a_grid_either_way_but_not_texture_or_the_targets_own_edges():
    from sr_cli.metrics import blockiness
    grid_contrast = build_pixel_loss("grid_contrast", scale=4)
    target = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 0.2 + 0.4
    steps = torch.zeros(64)
    steps[32:] = 0.1  # a step across column and row line 32: the 8 x 4 pixel grid
    grid = target + steps.view(1, 1, 1, -1) + steps.view(1, 1, -1, 1)
    assert grid_contrast(target, target).item() == 0.0
    assert grid_contrast(grid, target).item() > 0.05
    as_uint8 = lambda x: (x[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()
    assert blockiness(as_uint8(grid), scale=4) > blockiness(as_uint8(target), scale=4)  # the metric agrees
    # noise everywhere (texture) or the target's own grid step: no loss
    noise = torch.rand(target.shape, generator=torch.Generator().manual_seed(1)) * 0.1
    assert grid_contrast(target + noise, target).item() < 0.005
    assert grid_contrast(grid, grid).item() == 0.0
    # lines smoother than their neighbours (an inverted grid) are scored too
    assert grid_contrast(target, grid).item() > 0.05
    with pytest.raises(ValueError, match="no line"):
        grid_contrast(target[..., :32, :32], target[..., :32, :32])


def test_local_variance_is_the_unbiased_variance_of_each_reflect_padded_window():
    x = torch.rand(2, 1, 12, 10, generator=torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (3, 3, 3, 3), mode="reflect")
    windows = padded.unfold(2, 7, 1).unfold(3, 7, 1)  # as LDL's get_local_weights
    expected = windows.var(dim=(-1, -2), unbiased=True)
    assert torch.allclose(local_variance(x, 7), expected, atol=1e-6)


def test_artifact_loss_weighs_noise_like_errors_and_spares_what_the_ema_also_misses():
    gen = torch.Generator().manual_seed(0)
    target = torch.rand(1, 3, 32, 32, generator=gen)
    dots = ((torch.arange(32).view(-1, 1) + torch.arange(32).view(1, -1)) % 2).float()
    dotted = target + 0.1 * dots  # every other pixel off: an error whose size jumps pixel to pixel
    offset = target + 0.05  # a smooth error of the same mean size
    perfect_ema = target
    assert (dotted - target).abs().mean() == pytest.approx((offset - target).abs().mean().item(), rel=1e-5)
    assert artifact_loss(dotted, target, perfect_ema) > 100 * artifact_loss(offset, target, perfect_ema)
    # where the EMA is further from HR than the output, the output is not penalised
    worse_ema = target + 0.2
    assert artifact_loss(dotted, target, worse_ema).item() == 0.0
    # the weight map is a constant: the gradient is that of a weighted L1 of the output only
    pred = dotted.clone().requires_grad_(True)
    artifact_loss(pred, target, perfect_ema).backward()
    assert pred.grad.abs().sum() > 0


def test_gradient_loss_ignores_offsets_and_sees_block_edges():
    torch.manual_seed(0)
    target = torch.rand(1, 3, 32, 32)
    gradient = build_pixel_loss("gradient")
    assert gradient(target + 0.1, target).item() == pytest.approx(0.0, abs=1e-6)
    # the same L1 error (0.05 everywhere) two ways: halves with one step between them, or 8x8
    # blocks with a step at each of their three inner edges: l1 cannot tell, gradient counts edges
    halves = target + torch.tensor([-0.05, 0.05]).repeat_interleave(16).view(1, 1, 1, 32)
    blocks = target + torch.tensor([-0.05, 0.05]).repeat(2).repeat_interleave(8).view(1, 1, 1, 32)
    l1 = build_pixel_loss("l1")
    assert l1(blocks, target).item() == pytest.approx(l1(halves, target).item())
    assert gradient(blocks, target).item() == pytest.approx(3 * gradient(halves, target).item(), rel=1e-4)
    assert gradient(halves, target).item() == pytest.approx(0.1 / 31, rel=1e-4)  # one step of 0.1 in 31 columns


def test_block_edge_loss_scores_only_the_jpeg_grid_lines():
    torch.manual_seed(0)
    target = torch.rand(1, 3, 64, 96)  # x4: the 8x8 LR grid lines are HR columns 32|31, 64|63 and row 32|31
    block_edge = build_pixel_loss("block_edge", scale=4)
    assert block_edge(target + 0.1, target).item() == pytest.approx(0.0, abs=1e-6)
    on_grid, off_grid = target.clone(), target.clone()
    on_grid[..., 32:] += 0.1   # a step of 0.1 between columns 31 and 32: one of the two column lines
    off_grid[..., 36:] += 0.1  # the same step 4 columns on: no grid line
    assert block_edge(on_grid, target).item() == pytest.approx(0.1 / 2, rel=1e-4)
    assert block_edge(off_grid, target).item() == pytest.approx(0.0, abs=1e-6)
    # the target's own steps on the grid are kept, not smoothed away
    edge = torch.zeros(1, 1, 64, 64)
    edge[..., 32:] = 1.0
    assert block_edge(edge, edge).item() == 0.0
    assert block_edge(torch.zeros_like(edge), edge).item() == pytest.approx(1.0 / 1)  # one column line
    # x2: a line every 16 HR columns (five of them), and the step at 36 is still on none
    block_edge_x2 = build_pixel_loss("block_edge", scale=2)
    assert block_edge_x2(on_grid, target).item() == pytest.approx(0.1 / 5, rel=1e-4)
    assert block_edge_x2(off_grid, target).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="no line"):
        block_edge(target[..., :32, :32], target[..., :32, :32])


# --- adversarial losses -------------------------------------------------------------


def test_gan_losses_known_values():
    zero = torch.zeros(4, 1)
    for kind in ("vanilla", "ragan"):
        assert gan_loss(kind, zero, zero, for_discriminator=True).item() == pytest.approx(LN2)
        assert gan_loss(kind, zero, zero, for_discriminator=False).item() == pytest.approx(LN2)
    assert gan_loss("lsgan", zero, zero, for_discriminator=True).item() == pytest.approx(0.5)
    assert gan_loss("lsgan", zero + 1, zero, for_discriminator=True).item() == pytest.approx(0.0)
    assert gan_loss("lsgan", None, zero + 1, for_discriminator=False).item() == pytest.approx(0.0)
    x = torch.full((3, 1, 2, 2), 1.5)  # per-pixel logits work too
    assert gan_loss("vanilla", None, x, for_discriminator=False).item() == pytest.approx(
        math.log1p(math.exp(-1.5)))


@pytest.mark.parametrize("kind", GAN_KINDS)
def test_gan_loss_signs(kind):
    high, low = torch.full((4, 1), 3.0), torch.full((4, 1), -3.0)
    # The discriminator is happier (lower loss) when it scores real high and fake low.
    assert (gan_loss(kind, high, low, for_discriminator=True)
            < gan_loss(kind, low, high, for_discriminator=True))
    # The generator is happier when its fakes score high (relative to the reals for ragan).
    real = torch.zeros(4, 1)
    assert (gan_loss(kind, real, high, for_discriminator=False)
            < gan_loss(kind, real, low, for_discriminator=False))
    # Gradient descent on the generator loss pushes fake logits up.
    fake = torch.zeros(4, 1, requires_grad=True)
    gan_loss(kind, real, fake, for_discriminator=False).backward()
    assert (fake.grad < 0).all()


def test_texture_mask_marks_where_the_truth_has_texture():
    rng = np.random.default_rng(0)
    flat = torch.full((1, 3, 32, 32), 0.4)
    assert texture_mask(flat, threshold=0.03).sum() == 0
    half = flat.clone()
    half[..., 16:] += torch.from_numpy(rng.uniform(-0.2, 0.2, (1, 1, 32, 16))).float()  # grey texture, right half
    mask = texture_mask(half, threshold=0.03)
    assert mask.shape == (1, 1, 32, 32)
    assert mask[..., :, :12].sum() == 0           # flat, beyond the 7x7 window's reach
    assert mask[..., :, 16:].mean() == 1.0         # every textured pixel
    # a step edge is texture within the window's reach of it only; a faint ripple stays flat
    edge = flat.clone()
    edge[..., 16:] = 0.8
    columns = texture_mask(edge, threshold=0.03)[0, 0].amax(0)
    assert columns[13:19].tolist() == [1.0] * 6 and columns[:12].sum() == 0 and columns[20:].sum() == 0
    ripple = flat + 0.01 * torch.from_numpy(rng.uniform(-1, 1, (1, 1, 32, 32))).float()
    assert texture_mask(ripple, threshold=0.03).sum() == 0


@pytest.mark.parametrize("kind", GAN_KINDS)
def test_gan_loss_region_weight(kind):
    real = torch.zeros(2, 1, 8, 8)
    fake = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    ones = torch.ones(2, 1, 16, 16)  # the image's size: averaged down to the logits' grid
    plain = gan_loss(kind, real, fake, for_discriminator=False)
    assert gan_loss(kind, real, fake, for_discriminator=False, weight=ones).item() == pytest.approx(plain.item())
    left = torch.zeros(2, 1, 16, 16)
    left[..., :8] = 1.0
    fake.requires_grad_(True)
    gan_loss(kind, real, fake, for_discriminator=False, weight=left).backward()
    # the right half of the logits (flat in the map) gets no push; the left half does
    if kind == "ragan":  # fake logits also move the real logits' relative term through its mean
        assert fake.grad[..., :4].abs().sum() > fake.grad[..., 4:].abs().sum()
    else:
        assert fake.grad[..., 4:].abs().sum() == 0 and fake.grad[..., :4].abs().sum() > 0
    # an (N, 1) discriminator: each image's term is scaled by its map's mean
    image_logits = torch.zeros(2, 1)
    per_image = torch.stack([torch.ones(1, 16, 16), torch.zeros(1, 16, 16)])
    if kind != "ragan":
        assert gan_loss(kind, None, image_logits, for_discriminator=False, weight=per_image).item() == \
            pytest.approx(0.5 * gan_loss(kind, None, image_logits, for_discriminator=False).item())
    with pytest.raises(ValueError, match="generator"):
        gan_loss(kind, real, fake.detach(), for_discriminator=True, weight=ones)


def test_gan_loss_generator_step_detaches_real_and_checks_arguments():
    real = torch.randn(4, 1, requires_grad=True)
    fake = torch.randn(4, 1, requires_grad=True)
    gan_loss("ragan", real, fake, for_discriminator=False).backward()
    assert real.grad is None and fake.grad is not None
    with pytest.raises(ValueError, match="real_logits"):
        gan_loss("ragan", None, fake, for_discriminator=False)
    with pytest.raises(ValueError, match="real_logits"):
        gan_loss("vanilla", None, fake, for_discriminator=True)
    with pytest.raises(ValueError, match="unknown GAN loss"):
        gan_loss("wgan", real, fake, for_discriminator=True)


def test_feature_matching_loss():
    real = [torch.zeros(1, 2, 4, 4), torch.ones(1, 3, 2, 2, requires_grad=True)]
    fake = [torch.ones(1, 2, 4, 4, requires_grad=True), torch.ones(1, 3, 2, 2, requires_grad=True)]
    loss = feature_matching_loss(real, fake)
    assert loss.item() == pytest.approx(0.5)  # mean of L1 1 and L1 0
    loss.backward()
    assert real[1].grad is None and fake[0].grad is not None
    assert feature_matching_loss(fake, fake).item() == 0
    with pytest.raises(ValueError):
        feature_matching_loss(real, fake[:1])


# --- VGG19 perceptual -----------------------------------------------------------------


def test_vgg19_keys_match_torchvision():
    keys = list(VGG19Features().state_dict())
    assert keys == [f"features.{i}.{p}" for i in VGG19_CONV_INDICES for p in ("weight", "bias")]
    assert len(VGG19_LAYER_NAMES) == 37
    assert VGG19_LAYER_NAMES[0] == "conv1_1" and VGG19_LAYER_NAMES[34] == "conv5_4"
    assert VGG19_LAYER_NAMES[35] == "relu5_4" and VGG19_LAYER_NAMES[36] == "pool5"
    assert VGG19_LAYER_NAMES[4] == "pool1" and VGG19_LAYER_NAMES[16] == "conv3_4"


@pytest.mark.parametrize("prefixed,fmt", [(True, "pth"), (False, "safetensors")])
def test_vgg19_weights_load_with_or_without_prefix(tmp_path, prefixed, fmt):
    source = VGG19Features(last_layer="relu2_2")
    state = {(k if prefixed else k[len("features."):]): v.clone() for k, v in source.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # a full torchvision file has these: ignored
    path = tmp_path / f"vgg19.{fmt}"
    if fmt == "pth":
        torch.save(state, path)
    else:
        save_file(state, str(path))
    loss = PerceptualLoss(weights_path=path, layer_weights={"relu2_2": 1.0})
    for key, value in source.state_dict().items():
        assert torch.equal(loss.vgg.state_dict()[key], value)
    assert not any(p.requires_grad for p in loss.parameters())


def test_vgg19_weights_missing_key_raises(tmp_path):
    path = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, path)
    with pytest.raises(ValueError, match="features.0.bias"):
        PerceptualLoss(weights_path=path, layer_weights={"conv1_2": 1.0})


def test_perceptual_loss_needs_weights_unless_random_init_is_asked():
    with pytest.raises(ValueError, match="allow_random_init"):
        PerceptualLoss()
    with pytest.raises(ValueError, match="unknown VGG19 layers"):
        PerceptualLoss(layer_weights={"conv6_1": 1.0}, allow_random_init=True)


def test_perceptual_loss_zero_for_identical_positive_otherwise():
    loss = PerceptualLoss(layer_weights={"relu1_2": 0.5, "conv2_2": 1.0}, allow_random_init=True)
    assert len(loss.vgg.features) == VGG19_LAYER_NAMES.index("conv2_2") + 1  # truncated
    x = torch.rand(1, 3, 12, 12)
    assert loss(x, x.clone()).item() == 0.0
    pred = (x + 0.1 * torch.randn_like(x)).requires_grad_(True)
    value = loss(pred, x)
    assert value.item() > 0
    value.backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    gray = torch.rand(1, 1, 12, 12)
    assert loss(gray, gray).item() == 0.0 and loss(gray, 1 - gray).item() > 0


def test_perceptual_loss_default_is_esrgan_conv5_4():
    loss = PerceptualLoss(allow_random_init=True).train()
    assert loss.layer_weights == {"conv5_4": 1.0} and not loss.vgg.training
    assert len(loss.vgg.features) == 35  # up to features.34, before its ReLU
    x = torch.rand(1, 3, 32, 32)
    assert loss(x, x).item() == 0.0 and loss(x, x.flip(-1)).item() > 0


# --- loss specs ---------------------------------------------------------------------


def test_parse_loss_spec():
    assert parse_loss_spec(["l1=1", "perceptual=0.01"]) == {"l1": 1.0, "perceptual": 0.01}
    assert parse_loss_spec("charbonnier=1, gan=5e-3,kl=0") == {"charbonnier": 1.0, "gan": 0.005, "kl": 0.0}
    for bad, message in [(["l2=1"], "unknown loss 'l2'"), (["l1"], "NAME=WEIGHT"),
                         (["l1=x"], "not a number"), (["l1=-1"], ">= 0"), (["l1=nan"], ">= 0"),
                         (["l1=1", "l1=2"], "twice"), ([], "empty")]:
        with pytest.raises(ValueError, match=message):
            parse_loss_spec(bad)


def test_ssim_loss_is_one_minus_the_eval_ssim_of_y():
    """Same window, constants and Y as `sr eval` (basicsr convention: Y not rounded)."""
    import cv2
    from sr_cli.metrics import calculate_ssim
    rng = np.random.default_rng(0)
    hr = (rng.random((40, 48, 3)) * 255).astype(np.uint8)
    sr = np.clip(cv2.GaussianBlur(hr, (5, 5), 1.0) + rng.normal(0, 8, hr.shape), 0, 255).astype(np.uint8)
    as_tensor = lambda x: torch.from_numpy(x).permute(2, 0, 1)[None].double() / 255  # noqa: E731
    loss = build_pixel_loss("ssim")(as_tensor(sr), as_tensor(hr)).item()
    expected = calculate_ssim(sr, hr, crop_border=0, test_y_channel=True, convention="basicsr")
    assert 0.2 < expected < 0.9
    assert loss == pytest.approx(1 - expected, abs=1e-9)
    assert build_pixel_loss("ssim")(as_tensor(hr), as_tensor(hr)).item() == pytest.approx(0.0, abs=1e-12)
