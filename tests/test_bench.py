import json

import torch
from click.testing import CliRunner

from sr_cli.archs import build_arch
from sr_cli.bench import count_conv_flops, reference_tile_loop
from sr_cli.cli import cli
from sr_cli.model import SRModel


def test_conv_flops_match_hand_count():
    net = build_arch("srvgg", scale=2, num_feat=8, num_conv=2)
    model = SRModel.from_net(net, "srvgg", {})
    h, w = 10, 7
    macs_per_px = 3 * 8 * 9 + 2 * (8 * 8 * 9) + 8 * 3 * 4 * 9
    assert count_conv_flops(model, h, w) == 2 * macs_per_px * h * w


def test_bench_json_on_tiny_model(weights_dir):
    result = CliRunner().invoke(cli, ["bench", "--size", "24x16", "--scale", "2", "--tile", "8", "--tile", "0",
                                      "--repeat", "2", "--warmup", "0", "--compare-reference", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["conv_peak_gflops"] > 0
    runs = report["results"]
    assert {(r["runner"], r["tile"]) for r in runs} == {("sr", 8), ("reference", 8), ("sr", None), ("reference", None)}
    for r in runs:
        assert r["min_s"] <= r["median_s"] <= r["max_s"]
        assert r["flops_per_output_pixel"] > 0 and r["peak_rss_mb"] > 0 and r["parameters"] > 0
        assert abs(r["output_mp_per_s"] - 48 * 32 / 1e6 / r["median_s"]) < 1e-6


def test_reference_loop_equals_untiled_inside_tiles():
    # The reference pastes tiles without blending; with enough padding it matches untiled output.
    net = build_arch("srvgg", scale=2, num_feat=4, num_conv=1).eval()
    model = SRModel.from_net(net, "srvgg", {})
    pixels = (torch.rand(20, 18, 3) * 255).to(torch.uint8).numpy()
    tiled = reference_tile_loop(model, pixels, tile=8, tile_pad=10, device=torch.device("cpu"), dtype=torch.float32)
    full = reference_tile_loop(model, pixels, tile=64, tile_pad=10, device=torch.device("cpu"), dtype=torch.float32)
    assert tiled.shape == (40, 36, 3) and abs(tiled.astype(int) - full.astype(int)).max() <= 1
