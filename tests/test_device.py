"""Inference and training on the device SR_TEST_DEVICE names (cpu unless set).

On a GPU box: ``SR_TEST_DEVICE=cuda python -m pytest tests/test_device.py`` (benchmarks/gpu_check.sh
runs it). The shipped weights are used, so precision is judged on a real network.
"""
import numpy as np
import pytest
import torch
from conftest import smooth_image, tiny_train_config, write_smooth_pngs

from sr_cli import upscale_image
from sr_cli.metrics import calculate_psnr
from sr_cli.resolve import resolve_model
from sr_cli.training.trainer import train
from sr_cli.upscale import upscale_tensor


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return calculate_psnr(a, b, crop_border=0, test_y_channel=False)  # all of RGB, no crop


def test_fp32_on_the_device_matches_the_cpu(device):
    if device == "cpu":
        pytest.skip("compares another device with the CPU: set SR_TEST_DEVICE")
    image = smooth_image(40, 52, 3)
    on_cpu = upscale_image(image, scale=4, device="cpu")
    on_device = upscale_image(image, scale=4, device=device)
    # CUDA convolutions may use TF32 for fp32: close, not bit-equal
    assert psnr(on_cpu, on_device) > 50


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_stays_close_to_fp32(device, precision):
    if device == "cpu" and precision == "fp16":
        pytest.skip("fp16 is refused on the CPU (test_bad_requests_raise_value_error)")
    image = smooth_image(40, 52, 3)
    full = upscale_image(image, scale=4, device=device)
    half = upscale_image(image, scale=4, device=device, precision=precision)
    assert half.shape == full.shape and half.dtype == np.uint8
    assert psnr(full, half) > 40  # bf16 on this CPU: 54.5 dB


def test_batched_tiles_equal_tiles_one_at_a_time(device):
    model = resolve_model("default", 4).to(device)
    x = torch.rand(1, 3, 70, 90, generator=torch.Generator().manual_seed(0))
    one = upscale_tensor(model, x, tile=32, overlap=8, device=device, batch_size=1)
    batched = upscale_tensor(model, x, tile=32, overlap=8, device=device, batch_size=4)
    assert one.shape == (1, 3, 280, 360) and one.device.type == "cpu"
    # batch size can change the convolution kernel chosen (and TF32 on CUDA): not bit-equal there
    torch.testing.assert_close(batched, one, atol=1e-5 if device == "cpu" else 2e-3, rtol=0)


@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_training_steps_on_the_device(device, amp, tmp_path):
    if device == "cpu":
        pytest.skip("mixed precision is a GPU path (test_amp_is_ignored_on_cpu covers the CPU)")
    images = write_smooth_pngs(tmp_path / "hr")
    config = tiny_train_config(images, tmp_path / "run", patch=16, iters=20, lr=2e-3, amp=amp, device=device)
    logs = []
    run = train(config, on_log=logs.append)
    losses = [r["loss"] for r in logs if "loss" in r]
    assert len(losses) == 20 and all(np.isfinite(losses))
    assert not any("amp" in r.get("message", "") for r in logs)  # not ignored, as it is on the CPU
    assert (run / "model.safetensors").exists()
