"""The ONNX Runtime engine: ONNX files on the CPU, int8 or float, without torch.

Our files (``sr export``, the shipped ``*.int8.onnx``) carry their scale, channels and
receptive radius in the model's metadata and pad to their size multiple inside the graph.
A community file (any image-to-image ONNX model) carries none of that: its scale is found
by a probe run on a small input and must be a whole number, the same on both axes; a graph
that does not map one N x C x H x W image to another is refused. No custom-operator
library is ever registered, so a file can only use ONNX Runtime's own operators.
"""
from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import Optional

import numpy as np

from ..device import available_memory
from ..errors import first_line
from ..parallel import map_in_order
from ..tiling import CPU_TILE_CAP, auto_tile

# An input of up to 864x480 pixels (a 480p video frame, a 512x512 image) runs as one tile: a 512x512 x4
# with default 8% faster than in 256-pixel tiles, an 854x480 frame 1.2x (docs/benchmarks.md, "Engines"),
# as no overlap is run twice. Larger inputs are tiled at 256 as on torch: ONNX Runtime's arena keeps the
# largest tile's buffers, and 512-pixel tiles of a 4096x4096 x4 job peaked 615 MB above the output
# against torch's 530.
ONNX_WHOLE_PIXELS = 864 * 480
PIXEL_ROWS = 128  # output rows converted to pixels at a time
PROBE_SIDES = ((13, 11), (48, 32))  # an odd size first; models that need multiples get the second
PROBE_MULTIPLE = 16


class OnnxEngine:
    name = "onnx"
    device = "cpu"

    def __init__(self, path: str | Path, *, name: str = "", threads: Optional[int] = None):
        import onnxruntime as ort
        self.path = Path(path)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: no warnings about unused initialisers
        # Idle threads sleep instead of spinning: the decode, encode and write threads of videos and
        # batches need those cores between runs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # ONNX Runtime's own exception types, whatever the file's fault
            raise ValueError(f"{self.path}: ONNX Runtime cannot load it: {first_line(exc)}") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1 or len(inputs[0].shape) != 4 or len(outputs[0].shape) != 4:
            raise ValueError(f"{self.path}: not an image-to-image model (needs one N x C x H x W input and "
                             f"output; has {len(inputs)} input(s) {[i.shape for i in inputs]}, "
                             f"{len(outputs)} output(s))")
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.input_type = np.float16 if inputs[0].type == "tensor(float16)" else np.float32
        if inputs[0].type not in ("tensor(float)", "tensor(float16)"):
            raise ValueError(f"{self.path}: its input is {inputs[0].type}, not a float image")
        meta = self.session.get_modelmeta().custom_metadata_map
        self.metadata = dict(meta)
        self.label = name or meta.get("name") or self.path.name
        self.arch = meta.get("arch", "onnx")
        self.precision = meta.get("precision", "as stored")
        self.pad_multiple = 1
        if "scale" in meta:  # ours: the graph pads to its own size multiple
            self.scale = int(meta["scale"])
            self.in_channels = int(meta.get("in_channels", 3))
            self.receptive_radius = int(meta.get("receptive_radius", 16))
            self.size_multiple = int(meta.get("size_multiple", 1))
        else:
            self.in_channels = _static_channels(inputs[0].shape)
            self.scale = self._probe()
            self.receptive_radius = 16
            self.size_multiple = self.pad_multiple
        self.num_parameters = int(meta.get("parameters", 0))

    def _probe(self) -> int:
        """The scale of a community model, from running it on small inputs."""
        failure = ""
        for height, width in PROBE_SIDES:
            x = np.full((1, self.in_channels, height, width), 0.5, dtype=self.input_type)
            try:
                y = self.session.run([self.output_name], {self.input_name: x})[0]
            except Exception as exc:
                failure = first_line(exc)
                continue
            if y.ndim != 4 or y.shape[1] != self.in_channels:
                raise ValueError(f"{self.path}: not an image-to-image model ({self.in_channels}-channel "
                                 f"{height}x{width} in, {tuple(y.shape)} out)")
            if y.shape[2] % height or y.shape[3] % width or y.shape[2] // height != y.shape[3] // width:
                raise ValueError(f"{self.path}: a {height}x{width} input gives {y.shape[2]}x{y.shape[3]}: "
                                 "not a whole-number scale on both axes")
            if (height, width) != PROBE_SIDES[0]:
                self.pad_multiple = PROBE_MULTIPLE
            scale = y.shape[2] // height
            if scale < 1:
                raise ValueError(f"{self.path}: the output is smaller than the input")
            return scale
        raise ValueError(f"{self.path}: does not run on a small test image: {failure}")

    @property
    def threads(self) -> int:
        configured = self.session.get_session_options().intra_op_num_threads
        return configured or (os.cpu_count() or 1)

    def set_threads(self, count: int) -> bool:
        return False  # fixed when the session is made

    def as_input(self, pixels: np.ndarray, grey: bool = False) -> np.ndarray:
        x = pixels.transpose(2, 0, 1)[None]  # a view: tiles are converted one at a time
        return np.broadcast_to(x, (1, 3, *x.shape[2:])) if grey else x

    def run(self, batch: np.ndarray, input_max: float = 1.0) -> np.ndarray:
        x = np.array(batch, dtype=np.float32)  # a contiguous float copy of the tile only
        if input_max != 1.0:
            np.divide(x, np.float32(input_max), out=x)
        height, width = x.shape[-2:]
        m = self.pad_multiple
        if m > 1 and (height % m or width % m):
            x = np.pad(x, ((0, 0), (0, 0), (0, -height % m), (0, -width % m)), mode="edge")
        y = self.session.run([self.output_name], {self.input_name: x.astype(self.input_type, copy=False)})[0]
        y = y[..., : height * self.scale, : width * self.scale].astype(np.float32, copy=False)
        return np.clip(y, 0.0, 1.0, out=y if y.flags.writeable else None)

    def to_pixels(self, rect: np.ndarray, out: np.ndarray, grey: bool = False) -> None:
        maximum = np.float32(65535.0 if out.dtype == np.uint16 else 255.0)
        values = rect[0].mean(axis=0, keepdims=True) if grey else rect[0]
        if values.dtype != np.float32 or not values.flags.writeable:
            values = values.astype(np.float32)

        def convert(top: int) -> None:
            # In place on the rectangle (scratch space by contract), in as few passes as numpy
            # allows. The rounding of imageio.round_to_levels: fmax/fmin take NaN to 0 and clip,
            # rint rounds halves to even.
            block = values[:, top:top + PIXEL_ROWS]
            np.multiply(block, maximum, out=block)
            np.fmax(block, np.float32(0.0), out=block)
            np.fmin(block, maximum, out=block)
            np.rint(block, out=block)
            np.copyto(out[top:top + PIXEL_ROWS], block.transpose(1, 2, 0), casting="unsafe")

        # Every output pixel passes through here: blocks of rows on the session's threads (numpy
        # releases the GIL), as torch's engine converts on its intra-op threads.
        for _ in map_in_order(convert, range(0, values.shape[1], PIXEL_ROWS), threads=self.threads):
            pass

    def auto_tile(self, height: int, width: int) -> Optional[int]:
        budget = available_memory() * 0.25
        side = math.ceil(math.sqrt(height * width))  # one tile's memory taken as a square's of its area
        if height * width <= ONNX_WHOLE_PIXELS and auto_tile(self.scale, side, side, budget=budget, cap=side) is None:
            return None  # one tile
        return auto_tile(self.scale, height, width, budget=budget, cap=CPU_TILE_CAP)

    def is_out_of_memory(self, exc: BaseException) -> bool:
        return False

    def synchronize(self) -> None:
        pass


def _static_channels(shape) -> int:
    channels = shape[1]
    if isinstance(channels, int):
        if channels not in (1, 3):
            raise ValueError(f"not an image model: its input has {channels} channels (1 or 3 expected)")
        return channels
    return 3


def open_file(path: str | Path) -> OnnxEngine:
    """The ``OnnxEngine`` of a ``--model FILE.onnx``, one per file version (path, mtime, size):
    resolve.locate probes it for the file's native scale and the same session then runs it."""
    path = Path(path)
    stat = path.stat()
    return _open_cached(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=2)
def _open_cached(path: str, mtime_ns: int, size: int) -> OnnxEngine:
    return OnnxEngine(path, name=Path(path).name)
