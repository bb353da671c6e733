"""Frames per second of `sr upscale clip.mp4`: a 480p clip with sound, x2 and x4, per model.

    python benchmarks/video_fps.py                        # fast and default, x2 and x4, 8 frames, on the CPU
    python benchmarks/video_fps.py --device cuda --frames 48
    python benchmarks/video_fps.py --engine torch --engine onnx --model default --scale 4

The clip is made here (854x480, 24 fps, H.264 yuv420p, AAC): a window panning across
docs/sample.png (real texture for the encoder), written once into a temporary folder. Each
run goes through ``video.upscale_video``, the code `sr upscale` runs, with the default
settings (auto tiles, H.264 CRF 18). fps is frames over the pipeline's wall time; decode,
inference and encode are the seconds each stage was busy (they overlap on three threads,
so they add up to more than the wall time when the pipeline overlaps well). The first
frame's one-off costs (model warm-up, encoder start) are inside the figure: use enough
frames for the rate you want to quote. Needs the video extra (pip install "sr-cli[video]").
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def make_clip(path: Path, frames: int, width: int = 854, height: int = 480, rate: int = 24) -> Path:
    import av
    from PIL import Image
    source = np.asarray(Image.open(REPO / "docs" / "sample.png").convert("RGB"))
    scale = max(height / source.shape[0], (width + frames * 4) / source.shape[1], 1.0)
    if scale > 1:
        size = (int(np.ceil(source.shape[1] * scale)), int(np.ceil(source.shape[0] * scale)))
        source = np.asarray(Image.fromarray(source).resize(size, Image.BICUBIC))
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=rate, options={"crf": "18"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = out.add_stream("aac", rate=48000)
        sound.layout = "stereo"
        step = max(1, (source.shape[1] - width) // max(frames, 1))
        for index in range(frames):
            left = min(index * step, source.shape[1] - width)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(source[:height, left:left + width]), format="rgb24")
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        count = int(48000 * frames / rate)
        tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(count) / 48000)).astype(np.float32)
        samples = np.stack([tone, tone])
        for first in range(0, count, 1024):
            chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, first:first + 1024]),
                                               format="fltp", layout="stereo")
            chunk.sample_rate, chunk.pts, chunk.time_base = 48000, first, Fraction(1, 48000)
            for packet in sound.encode(chunk):
                out.mux(packet)
        for packet in sound.encode(None):
            out.mux(packet)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", help="model names (default: fast, default)")
    parser.add_argument("--scale", action="append", type=int, help="scales (default: 2, 4)")
    parser.add_argument("--frames", type=int, default=8, help="frames in the 480p clip")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--engine", action="append", help="engines to compare (default: auto)")
    args = parser.parse_args(argv)
    import torch

    from sr_cli import registry, resolve
    from sr_cli.upscale import Upscaler
    from sr_cli.video import upscale_video

    models, scales = args.model or ["fast", "default"], args.scale or [2, 4]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        clip = make_clip(Path(folder) / "clip480.mp4", args.frames)
        for model in models:
            for scale in scales:
                for engine in args.engine or ["auto"]:
                    upscaler = Upscaler.create(model, scale, device=args.device, precision=args.precision,
                                               engine=engine)
                    files = [registry.NAMED_MODELS.get(model, {}).get(s, "?")
                             for s in resolve.plan_passes(model, scale)]
                    out = Path(folder) / f"out_{model}_x{scale}_{engine}.mp4"
                    stats = upscale_video(clip, out, upscaler)
                    stages = stats.stages
                    runs_on = f"{upscaler.engines[0].name} {upscaler.engines[0].precision}"
                    rows.append((model, scale, ",".join(files), runs_on, stats.frames,
                                 f"{stats.output_size[0]}x{stats.output_size[1]}", stats.fps, stats.seconds,
                                 stages["decode"], stages["inference"], stages["encode"]))
                    print(f"{model} x{scale} {runs_on}: {stats.frames} frames in {stats.seconds:.1f} s, "
                          f"{stats.fps:.3f} fps", file=sys.stderr)
    device = Upscaler.create("bicubic", 2, device=args.device).device
    print(f"\n480p clip (854x480, {args.frames} frames, 24 fps, AAC stereo), device {device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {time.strftime('%Y-%m-%d')}\n")
    import onnxruntime
    print(f"onnxruntime {onnxruntime.__version__}\n")
    print("| model | scale | weights | engine | frames | output | fps | wall s | decode s | inference s | encode s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for model, scale, files, runs_on, frames, size, fps, wall, dec, inf, enc in rows:
        print(f"| {model} | x{scale} | {files} | {runs_on} | {frames} | {size} | {fps:.3f} | {wall:.1f} | {dec:.2f} "
              f"| {inf:.1f} | {enc:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
