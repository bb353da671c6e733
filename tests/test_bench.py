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


def test_conv_flops_count_every_conv_of_a_fused_rrdbnet():
    # The fused dense blocks bypass the Conv2d modules; the count must still see all of them.
    net = build_arch("rrdbnet", scale=4, num_feat=8, num_block=1, num_grow_ch=4)
    model = SRModel.from_net(net, "rrdbnet", {}).to("cpu")  # channels-last: the fused path
    h, w = 6, 5
    nf, gc = 8, 4
    dense = sum((nf + i * gc) * (gc if i < 4 else nf) for i in range(5)) * 9
    per_lr_px = 3 * nf * 9 + 3 * dense + nf * nf * 9  # conv_first, 3 dense blocks, conv_body
    per_lr_px += (4 + 16 + 16) * nf * nf * 9 + 16 * nf * 3 * 9  # conv_up1 (x2), conv_up2, conv_hr, conv_last
    assert count_conv_flops(model, h, w) == 2 * per_lr_px * h * w
    assert all(m.fused_inference for m in net.modules() if hasattr(m, "fused_inference"))


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
