"""The `sr` group's wiring: every command attached, reporting errors through sr_cli.errors, help without torch."""
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from conftest import write_smooth_pngs
from sr_cli.cli import cli
from sr_cli.commands.options import parse_tile
from sr_cli.commands.upscale_cmd import parse_max_pixels
from sr_cli.errors import friendly_errors

WRAPPER_CODE = friendly_errors(lambda: None).__code__


def all_commands(group=cli, path=()):
    for name, command in group.commands.items():
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from all_commands(command, (*path, name))


def reports_errors(command) -> bool:
    function = command.callback
    while function is not None:
        if getattr(function, "__code__", None) is WRAPPER_CODE:
            return True
        function = getattr(function, "__wrapped__", None)  # under click.pass_context and the like
    return False


def test_every_command_is_attached_and_reports_errors_in_one_place():
    names = {" ".join(path) for path, _ in all_commands()}
    assert names == {"upscale", "models", "models pull", "eval", "train", "bench", "convert", "export", "data",
                     "data list", "data pull", "compare", "info"}
    assert [" ".join(path) for path, command in all_commands() if not reports_errors(command)] == []


@pytest.mark.subprocess
def test_help_imports_no_torch():
    code = ("import sys; from sr_cli.cli import cli\n"
            "for args in ([], ['upscale'], ['models'], ['models', 'pull'], ['eval'], ['train'], ['bench'],"
            " ['convert'], ['export'], ['data'], ['data', 'list'], ['data', 'pull'], ['compare'], ['info']):\n"
            "    cli.main([*args, '--help'], standalone_mode=False)\n"
            "assert 'torch' not in sys.modules, 'help imported torch'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Upscale images" in done.stdout and "Score models" in done.stdout


def test_main_help_lists_every_command_in_one_uncut_line():
    from click.testing import CliRunner
    from sr_cli.cli import cli
    lines = CliRunner().invoke(cli, ["--help"], terminal_width=80).output.split("Commands:")[1].strip().splitlines()
    assert sorted(line.split()[0] for line in lines) == sorted(cli.commands)
    assert not [line for line in lines if line.rstrip().endswith("...")]


def test_upscale_option_parsers():
    assert [parse_tile(v) for v in ("auto", "0", "128")] == ["auto", None, 128]
    assert [parse_max_pixels(v) for v in ("auto", "4e9")] == [None, 4_000_000_000]
    for parse, bad in ((parse_tile, "big"), (parse_tile, "-1"), (parse_max_pixels, "0"), (parse_max_pixels, "inf")):
        with pytest.raises(click.BadParameter):
            parse(bad)


def invoke(args):
    return CliRunner().invoke(cli, args)


def assert_one_line(result, code, message):
    assert "Traceback" not in result.output, result.output
    assert result.exit_code == code, result.output
    assert result.stderr.splitlines() == [message]


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("SR_DEBUG", raising=False)  # SR_DEBUG=1 shows tracebacks on purpose


def fail(error):
    def raising(*args, **kwargs):
        raise error
    return raising


def test_eval_runtime_error_is_one_line(tmp_path, monkeypatch):
    import sr_cli.evaluate
    monkeypatch.setattr(sr_cli.evaluate, "evaluate", fail(RuntimeError("CUDA error: out of memory\ndetails")))
    result = invoke(["eval", str(tmp_path), "-s", "2"])
    assert_one_line(result, 1, "Error: CUDA error: out of memory")


def test_bench_runtime_error_is_one_line(monkeypatch):
    import sr_cli.bench
    monkeypatch.setattr(sr_cli.bench, "conv_peak_gflops", fail(RuntimeError("no kernel image is available")))
    result = invoke(["bench", "--device", "cpu"])
    assert_one_line(result, 1, "Error: no kernel image is available")


@pytest.fixture
def train_args(tmp_path):
    images = write_smooth_pngs(tmp_path / "hr", count=1, size=16)
    return ["train", "--arch", "litesr", "--data", str(images), "--out", str(tmp_path / "run"), "--display", "plain"]


def test_train_unexpected_error_is_one_line(train_args, monkeypatch):
    # A KeyError escaped the command's own (ValueError, OSError, RuntimeError) net as a traceback.
    import sr_cli.training.trainer
    monkeypatch.setattr(sr_cli.training.trainer, "train", fail(KeyError("lr")))
    assert_one_line(invoke(train_args), 1, "Error: 'lr'")


def test_train_interrupted_exits_130_and_says_resume(train_args, monkeypatch):
    import sr_cli.training.trainer
    monkeypatch.setattr(sr_cli.training.trainer, "train", fail(KeyboardInterrupt()))
    assert_one_line(invoke(train_args), 130, "interrupted (Ctrl-C): continue with --resume (from the last checkpoint)")


def test_train_unreadable_config_is_a_usage_error(tmp_path):
    config = tmp_path / "run.toml"
    config.write_bytes(b"arch = \"\xff\xfe\"\n")
    result = invoke(["train", "--config", str(config)])
    assert result.exit_code == 2 and "--config" in result.stderr and "Traceback" not in result.output
