"""`sr models` lists from the safetensors headers alone: same facts as loading, without torch."""
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from sr_cli import registry
from sr_cli.cli import cli
from sr_cli.header import count_elements, read_header
from sr_cli.weights import load_model, read_metadata

SHIPPED = [registry.WEIGHTS_DIR / file for files in registry.NAMED_MODELS.values() for file in files.values()
           if (registry.WEIGHTS_DIR / file).is_file()]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_header_agrees_with_loading(path):
    metadata, tensors = read_header(path)
    assert metadata == read_metadata(path)
    assert count_elements(tensors) == load_model(path).num_parameters


def test_header_of_our_test_weights(weights_dir):
    metadata, tensors = read_header(weights_dir / "default_x3.safetensors")
    model = load_model(weights_dir / "default_x3.safetensors")
    assert metadata["arch"] == "litesr" and metadata["scale"] == "3"
    assert count_elements(tensors) == model.num_parameters > 0


@pytest.mark.parametrize("content", [b"", b"\x05\x00", (10).to_bytes(8, "little") + b"not json!!",
                                     (2**40).to_bytes(8, "little")])
def test_header_rejects_other_files(tmp_path, content):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not a safetensors file"):
        read_header(path)


def test_models_json_from_headers(weights_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SR_CACHE_DIR", str(tmp_path / "cache"))
    result = CliRunner().invoke(cli, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    default = {r["scale"]: r for r in rows if r["name"] == "default"}
    expected = load_model(weights_dir / "default_x4.safetensors").num_parameters
    assert default[4]["parameters"] == expected and default[4]["source"] == "shipped"
    catalogue = [r for r in rows if r["source"] == "catalogue"]
    assert {r["name"] for r in catalogue} == set(registry.catalogue())
    assert all(not r["installed"] and len(r["sha256"]) == 64 and r["url"].startswith("https://") for r in catalogue)
    table = CliRunner(env={"COLUMNS": "200"}).invoke(cli, ["models"])
    assert table.exit_code == 0 and "RealESRGAN_x4plus_anime_6B" in table.output and "not pulled" in table.output


@pytest.mark.subprocess
def test_models_imports_no_torch(tmp_path):
    code = ("import sys, json; from sr_cli.cli import cli; cli.main(['models', '--json'], standalone_mode=False); "
            "assert 'torch' not in sys.modules, 'sr models imported torch'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"SR_CACHE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert any(r["source"] == "shipped" and r["installed"] and r["parameters"] for r in rows)


def test_weights_dir_override(monkeypatch, tmp_path):
    monkeypatch.setenv("SR_WEIGHTS_DIR", str(tmp_path))
    assert registry._shipped_weights_dir() == tmp_path
    monkeypatch.delenv("SR_WEIGHTS_DIR")
    found = registry._shipped_weights_dir()
    assert (found / "README.md").is_file() or found.name == "shipped_weights"
