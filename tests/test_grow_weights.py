"""weights/grow.py: a LiteSR file grown deeper and wider computes what it did, and the new
parts can still learn (their zero weights get gradients)."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import random_net

from sr_cli.archs import build_arch
from sr_cli.weights import load_model, read_metadata, save_model

GROW = Path(__file__).resolve().parents[1] / "weights" / "grow.py"


@pytest.mark.subprocess
def test_grown_net_computes_the_same_and_its_new_weights_learn(tmp_path):
    torch.manual_seed(1)
    params = {"scale": 2, "num_feat": 8, "num_blocks": 2}
    small = random_net("litesr", std=0.1, **params)  # the tail starts at zero; make every path count
    save_model(small, tmp_path / "small.safetensors", arch="litesr", params=params)

    subprocess.run([sys.executable, str(GROW), str(tmp_path / "small.safetensors"),
                    str(tmp_path / "grown.safetensors"), "--blocks", "1", "--feat", "12"], check=True)
    grown = load_model(tmp_path / "grown.safetensors")
    assert grown.params["num_feat"] == 12 and grown.params["num_blocks"] == 3
    assert read_metadata(tmp_path / "grown.safetensors")["old_feat"] == "8"

    x = torch.rand(2, 3, 16, 20)
    net = grown.net.train()
    with torch.no_grad():
        torch.testing.assert_close(net(x), small.eval()(x), atol=1e-5, rtol=0)
    # The zero blocks (old outputs reading new channels, the new block's last conv) get gradients.
    net(x).sub(torch.rand(2, 3, 32, 40)).abs().mean().backward()
    assert net.tail.weight.grad[:, 8:].abs().sum() > 0
    assert net.body[0].conv1.weight.grad[:8, 8:].abs().sum() > 0
    assert net.body[2].conv2.weight.grad.abs().sum() > 0


@pytest.mark.subprocess
def test_grow_refuses_to_shrink(tmp_path):
    params = {"scale": 2, "num_feat": 8, "num_blocks": 1}
    save_model(build_arch("litesr", **params), tmp_path / "small.safetensors", arch="litesr", params=params)
    result = subprocess.run([sys.executable, str(GROW), str(tmp_path / "small.safetensors"),
                             str(tmp_path / "out.safetensors"), "--feat", "4"], capture_output=True, text=True)
    assert result.returncode != 0 and "only grows" in result.stderr
    assert not (tmp_path / "out.safetensors").exists()
