"""sr_cli.atomic: a target is replaced whole or left as it was, and no temporary file stays behind."""
from __future__ import annotations

import os

import pytest
import torch

from sr_cli.atomic import atomic_file, atomic_path, write_bytes
from sr_cli.weights import load_model, save_model

from conftest import random_net


def test_write_bytes_replaces_whole_and_leaves_nothing_beside(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old contents, longer than the new")
    write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["a.bin"]


def test_failure_midway_keeps_the_old_file(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_file(target) as file:
            file.write(b"half of the new")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.bin"]


def test_atomic_path_for_writers_that_take_a_name(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as temporary:
            assert temporary.parent == tmp_path and temporary != target
            temporary.write_bytes(b"half of the new")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.bin"]
    with atomic_path(target) as temporary:
        temporary.write_bytes(b"new")
        assert target.read_bytes() == b"old"  # replaced only when the block ends
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["a.bin"]


def test_save_model_leaves_only_its_file_and_loads_back(tmp_path):
    params = {"scale": 2, "num_feat": 8, "num_conv": 2}
    net = random_net("srvgg", **params)
    path = tmp_path / "w" / "m.safetensors"
    save_model(net, path, arch="srvgg", params=params, extra={"name": "m"})
    assert os.listdir(path.parent) == ["m.safetensors"]
    model = load_model(path)
    for key, value in net.state_dict().items():
        assert torch.equal(model.net.state_dict()[key], value)
