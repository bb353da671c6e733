"""resolve.py: a --model value to loaded engines in one pass, each file read once."""
import torch
from conftest import random_net

from sr_cli import foreign, header, resolve, weights
from sr_cli.upscale import Upscaler


def count_calls(monkeypatch, module, name):
    calls = []
    real = getattr(module, name)

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)
    monkeypatch.setattr(module, name, counting)
    return calls


def test_our_file_by_path_has_its_header_read_once(weights_dir, monkeypatch):
    path = weights_dir / "default_x2.safetensors"
    headers = count_calls(monkeypatch, header, "read_header")
    opened = count_calls(monkeypatch, weights, "safe_open")
    upscaler = Upscaler.create(str(path), 2, engine="torch", device="cpu")
    assert upscaler.engines[0].scale == 2
    assert headers == [path]          # for the scale and the architecture, without torch
    assert opened == [str(path)]      # for the tensors


def test_a_community_file_is_read_and_recognised_once(tmp_path, monkeypatch):
    path = tmp_path / "compact.pth"
    net = random_net("srvgg", scale=2, num_feat=8, num_conv=2)
    torch.save({"params": net.state_dict()}, path)
    reads = count_calls(monkeypatch, foreign, "read_state_dict")
    located = resolve.locate(str(path))
    assert (located.kind, located.scales) == ("foreign", [2])
    model = resolve.resolve_model(located, 2)
    assert model.scale == 2 and reads == [path]


def test_a_named_model_reads_no_header_before_loading(weights_dir, monkeypatch):
    headers = count_calls(monkeypatch, header, "read_header")
    located = resolve.locate("default")
    assert located.scales == [2, 4] and headers == []  # the shipped table: default has no x3
    assert resolve.plan_passes(located, 8) == [4, 2]
