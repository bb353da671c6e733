"""Inference engines: one small interface, two implementations.

``torch`` (torch_engine.py) runs any architecture on CPU, CUDA or MPS, in fp32/fp16/bf16;
``onnx`` (onnx_engine.py) runs ONNX files, ours (int8 or fp32) or a community model's,
through ONNX Runtime on the CPU, and imports no torch. The core (upscale.py) talks to an
engine only through these members:

    scale, in_channels, receptive_radius, size_multiple   the model's contract (tiles start on
                                            multiples of size_multiple; the engine pads to it)
    device, precision, label, num_parameters what is running, for reports
    as_input(pixels, grey)   H x W x C integer pixels -> the NCHW array tiles are cut from
                             (grey: expanded to 3 channels for an RGB model)
    run(batch, input_max)    an NCHW tile (integer values up to input_max, or float) -> NCHW
                             float32 in [0, 1] at ``scale`` times the size
    to_pixels(rect, out, grey)  a finished NCHW float rectangle -> the h x w x C integer array
                             ``out`` (rounded as imageio.round_to_levels; ``rect`` may be used as
                             scratch space, its values are not kept)
    auto_tile(height, width) the tile side that fits in memory, or None for one tile
    is_out_of_memory(exc)    whether halving the tile may help
    threads / set_threads(n) intra-op threads (set_threads returns False if fixed)

``choose_engine`` decides, without importing torch or onnxruntime, which engine a model
runs on; ``resolve.open_engines`` loads one engine per native pass of a scale.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

ENGINES = ("auto", "torch", "onnx")
ENGINE_HELP = ("auto: ONNX Runtime on a CPU where the model has an ONNX form (the shipped models' int8 "
               "files, a .onnx file), torch otherwise and on GPUs; torch; onnx.")


def is_onnx_file(model: str) -> bool:
    return Path(model).suffix.lower() == ".onnx"


def choose_engine(model: str, *, engine: str = "auto", device: str = "auto", precision: str = "auto",
                  scales: Optional[list[int]] = None) -> str:
    """'torch' or 'onnx' for ``model`` (a name or a file) at native ``scales``; ValueError naming
    the conflict when the options cannot be met. Imports neither engine's library."""
    from ..blend import split_spec
    from ..registry import onnx_form
    return engine_kind(model, engine=engine, device=device, precision=precision,
                       blended=split_spec(model)[1] is not None, onnx_file=is_onnx_file(model),
                       has_int8=bool(scales) and all(onnx_form(model, s) is not None for s in scales))


def engine_kind(model: str, *, engine: str, device: str, precision: str, blended: bool, onnx_file: bool,
                has_int8: bool) -> str:
    """``choose_engine`` from what is known of the model (named ``model`` in the messages): whether it
    is blended ('NAME@S'), an ONNX file, or has an int8 form at every scale it runs."""
    from ..device import PRECISIONS, check_device_spec, gpu_present
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r} ({', '.join(ENGINES)})")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} ({', '.join(PRECISIONS)})")
    check_device_spec(device)
    if blended:  # blended weights exist only once torch has mixed them
        if engine == "onnx":
            raise ValueError("blended weights (--strength, NAME@S) run on torch: use --engine torch or auto")
        if precision == "int8":
            raise ValueError("blended weights (--strength, NAME@S) run on torch, in float")
        return "torch"
    kind = engine
    if engine == "auto":
        gpu = device not in ("auto", "cpu") or (device == "auto" and gpu_present())
        float_asked = precision in ("fp32", "fp16", "bf16")
        kind = "onnx" if onnx_file or (has_int8 and not gpu and not float_asked) else "torch"
    if kind == "torch":
        if onnx_file:
            raise ValueError(f"{model} is an ONNX file: it runs on --engine onnx (or auto), not torch")
        if precision == "int8":
            raise ValueError("int8 runs on the ONNX engine: use --engine onnx (or auto) on the CPU"
                             if has_int8 else f"{model!r} has no int8 form (`sr export --int8` makes one)")
        return "torch"
    # ONNX Runtime, asked for or chosen.
    if device not in ("auto", "cpu"):
        raise ValueError(f"the ONNX engine runs on the CPU; --device {device} needs --engine torch")
    if precision in ("fp16", "bf16"):
        raise ValueError(f"--precision {precision} runs on torch (--engine torch)")
    if onnx_file:
        return "onnx"
    if precision == "fp32":
        raise ValueError(f"{model!r} has no fp32 ONNX form: use --engine torch for fp32, or `sr export` "
                         "one and give the .onnx file to --model")
    if not has_int8:
        raise ValueError(f"{model!r} has no ONNX form: use --engine torch, or make one with "
                         "`sr export --int8` and give the .onnx file to --model")
    return "onnx"
