"""Deepen a LiteSR weights file by N residual blocks that start as the identity.

    python weights/deepen.py runs/fast_x3/model.safetensors runs/fast_x3_deep/init.safetensors --blocks 1

The new blocks go at the end of the body; each one's second conv is zero, so the deeper
network computes exactly what the file did, and training (`sr train --init OUT`) starts
from its quality instead of from scratch.
"""
from __future__ import annotations

import argparse

import torch

from sr_cli.archs import build_arch
from sr_cli.weights import load_model, save_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("--blocks", type=int, default=1)
    args = parser.parse_args()
    model = load_model(args.source)
    if model.arch != "litesr":
        raise SystemExit(f"{args.source} is {model.arch}, not litesr")
    params = dict(model.params)
    old_blocks = int(params.get("num_blocks", 6))
    params["num_blocks"] = old_blocks + args.blocks
    torch.manual_seed(0)
    deeper = build_arch("litesr", **params)
    state = deeper.state_dict()
    state.update(model.net.state_dict())  # every tensor of the old net keeps its name
    for index in range(old_blocks, params["num_blocks"]):
        state[f"body.{index}.conv2.weight"].zero_()
        state[f"body.{index}.conv2.bias"].zero_()
    deeper.load_state_dict(state)
    x = torch.rand(1, model.in_channels, 24, 24)
    with torch.no_grad():
        assert torch.allclose(deeper.eval()(x), model.net.eval()(x), atol=1e-6), "deepened net differs"
    save_model(deeper, args.target, arch="litesr", params=params,
               extra={"deepened_from": args.source, "added_blocks": args.blocks})
    print(args.target, params)


if __name__ == "__main__":
    main()
