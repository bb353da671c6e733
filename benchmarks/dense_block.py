"""One RRDBNet dense block, stock forward (torch.cat) against the concat-free CPU path.

    .venv/bin/python benchmarks/dense_block.py                 # 272x272 (a 256 px tile + context)
    .venv/bin/python benchmarks/dense_block.py --size 128 --repeat 9

Same process, same weights and input, taking turns; prints the median and min of each and
the largest difference between their outputs.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from sr_cli.archs.rrdbnet import ResidualDenseBlock


def time_block(block: ResidualDenseBlock, x: torch.Tensor, fused: bool, repeat: int) -> list[float]:
    block.fused_inference = fused
    times = []
    with torch.inference_mode():
        block(x)  # warm-up: oneDNN builds its kernels on the first call
        for _ in range(repeat):
            start = time.perf_counter()
            block(x)
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=272)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    block = ResidualDenseBlock(64, 32).eval().to(memory_format=torch.channels_last)
    x = torch.rand(1, 64, args.size, args.size).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        block.fused_inference = False
        stock = block(x)
        block.fused_inference = True
        fused = block(x)
    results = {"stock": [], "fused": []}
    for _ in range(2):  # alternate, so drift in the machine's speed hits both
        for name in results:
            results[name] += time_block(block, x, name == "fused", args.repeat)
    print(f"dense block 64+4x32 ch on {args.size}x{args.size}, {args.threads} threads, channels-last")
    for name, times in results.items():
        print(f"  {name}: median {statistics.median(times) * 1e3:.1f} ms, min {min(times) * 1e3:.1f} ms")
    print(f"  speed-up x{statistics.median(results['stock']) / statistics.median(results['fused']):.2f}, "
          f"max |difference| {(stock - fused).abs().max().item():.1e}")


if __name__ == "__main__":
    main()
