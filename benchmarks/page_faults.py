"""Minor page faults and wall time of one pass: the reference tile loop against ours.

    .venv/bin/python benchmarks/page_faults.py
    MALLOC_MMAP_THRESHOLD_=268435456 MALLOC_TRIM_THRESHOLD_=1073741824 .venv/bin/python benchmarks/page_faults.py

Builds Real-ESRGAN-sized SRVGGNetCompact (64 features, 32 convs, PReLU, x4) with random
weights, runs the Real-ESRGAN-style reference loop (`sr_cli.bench.reference_tile_loop`) and
our pipeline on a 256x256 input, one warm-up pass each, then reports each timed pass's wall time
and the process's minor page faults during it (getrusage ru_minflt: pages touched for the first
time since they were mapped). The second command keeps glibc from handing large blocks back to
the kernel between allocations, so faults show how much of a pass is spent on fresh pages.
"""
from __future__ import annotations

import argparse
import resource
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="Input side in pixels.")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from sr_cli.archs import build_arch
    from sr_cli.bench import reference_tile_loop, synthetic_image
    from sr_cli.engines.torch_engine import TorchEngine
    from sr_cli.model import SRModel
    from sr_cli.upscale import Upscaler

    from reference_loop import ARCHS  # the same Real-ESRGAN sizes as the bench figures

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = build_arch("srvgg", scale=4, **ARCHS["srvgg"])
    model = SRModel.from_net(net, "srvgg", {}).to("cpu")
    pixels = synthetic_image(args.size, args.size)
    ours = Upscaler(engines=[TorchEngine(model, torch.device("cpu"))], scale=4, tile=256)
    runners = {
        "reference": lambda: reference_tile_loop(model, pixels, tile=256, device=torch.device("cpu"),
                                                 dtype=torch.float32),
        "sr": lambda: ours(pixels),
    }
    for name, run in runners.items():
        run()  # warm-up
        for _ in range(args.repeat):
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start = time.perf_counter()
            run()
            wall = time.perf_counter() - start
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
            print(f"{name:9s} {wall:.3f} s, {faults} minor page faults ({faults * 4096 / 1e9:.2f} GB of fresh pages)")


if __name__ == "__main__":
    main()
