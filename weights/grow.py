"""Grow a LiteSR weights file deeper (more residual blocks) and/or wider (more channels).

    python weights/grow.py runs/fast_x3/model.safetensors runs/fast_x3_deep/init.safetensors --blocks 1
    python weights/grow.py weights/default_x4.safetensors runs/w48/init_x4.safetensors --feat 48

Either way the grown network computes exactly what the file did, so training
(`sr train --pretrained-g OUT`) starts from its quality instead of from scratch:
- new blocks go at the end of the body with their second conv zero (identity blocks);
- new channels get fresh random weights into them and zero weights out of them into
  the old channels (Net2Net-style), so they change nothing until training moves those
  zeros, which their non-zero activations let it do from the first step.
"""
from __future__ import annotations

import argparse

import torch

from sr_cli.archs import build_arch
from sr_cli.weights import load_model, save_model


def grow_state(new_state: dict[str, torch.Tensor], old_state: dict[str, torch.Tensor]) -> None:
    """Copy every old tensor into the top-left corner of its larger namesake, in place."""
    for name, old in old_state.items():
        new = new_state[name]
        new[tuple(slice(0, n) for n in old.shape)] = old
        if new.ndim == 4 and new.shape[1] > old.shape[1]:
            new[: old.shape[0], old.shape[1]:] = 0  # new inputs do not reach old outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("--blocks", type=int, default=0, help="residual blocks to add")
    parser.add_argument("--feat", type=int, default=None, help="new channel count (>= the old)")
    args = parser.parse_args()
    model = load_model(args.source)
    if model.arch != "litesr":
        raise SystemExit(f"{args.source} is {model.arch}, not litesr")
    params = dict(model.params)
    old_blocks = int(params.get("num_blocks", 6))
    old_feat = int(params.get("num_feat", 32))
    params["num_blocks"] = old_blocks + args.blocks
    params["num_feat"] = args.feat or old_feat
    if params["num_feat"] < old_feat or args.blocks < 0:
        raise SystemExit("grow.py only grows: --feat must be >= the old width, --blocks >= 0")
    torch.manual_seed(0)
    grown = build_arch("litesr", **params)
    state = grown.state_dict()
    grow_state(state, model.net.state_dict())  # every tensor of the old net keeps its name
    for index in range(old_blocks, params["num_blocks"]):
        state[f"body.{index}.conv2.weight"].zero_()
        state[f"body.{index}.conv2.bias"].zero_()
    grown.load_state_dict(state)
    x = torch.rand(1, model.in_channels, 24, 24)
    with torch.no_grad():
        assert torch.allclose(grown.eval()(x), model.net.eval()(x), atol=1e-5), "grown net differs"
    save_model(grown, args.target, arch="litesr", params=params,
               extra={"grown_from": args.source, "added_blocks": args.blocks,
                      "old_feat": old_feat})
    print(args.target, params)


if __name__ == "__main__":
    main()
