"""Tiled inference with seamless blending (pure: no files, no devices, no models).

The input is cut into a grid of *cores* that partition it. Each tile reads its
core plus ``overlap`` pixels of context on every side (clipped at the image
border). Neighbouring tiles are cross-faded with complementary raised-cosine
ramps over a zone of ``overlap // 2`` input pixels either side of the core
boundary, so the weights of any output pixel sum to exactly one and no seam can
show. The other half of the overlap is guard context: when ``overlap`` is at
least twice the model's receptive radius, every pixel that gets weight was
computed with full context and the result equals untiled inference.

Each tile's finished output (the part no later tile touches) goes to ``sink`` as a
rectangle as soon as the tile has run, so a caller can quantise straight into a
preallocated uint8/uint16 image and never hold a float copy of the whole output,
nor of a whole row of tiles.

Arrays are numpy arrays (the ONNX Runtime engine) or torch tensors on any device (the
torch engine); the few operations that differ are in ``_NumpyOps`` and ``_TorchOps``, and torch is imported only
for tensors, so the ONNX path never loads it.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Union

import numpy as np

Array = Any  # numpy.ndarray or torch.Tensor, NCHW
TileFn = Callable[[Array], Array]
CPU_TILE_CAP = 256  # smaller tiles keep the feature maps in cache (docs/benchmarks.md, "Tiling on a CPU")
RectSink = Callable[[int, int, Array], None]


@dataclass(frozen=True)
class Span:
    """One tile along one axis, in input pixels."""

    core_start: int
    core_end: int
    read_start: int
    read_end: int
    fade_before: int  # half-width of the cross-fade zone at core_start (0 at the image border)
    fade_after: int   # half-width of the cross-fade zone at core_end


def plan_axis(length: int, tile: Optional[int], overlap: int, multiple: int = 1) -> list[Span]:
    """Split ``length`` pixels into near-equal cores of at most ``tile`` pixels.

    Tile starts (and the context) are kept on multiples of ``multiple`` so that
    networks that downsample internally see the same pixel grid as untiled.
    """
    if length <= 0:
        raise ValueError("cannot tile an empty axis")
    if tile is None or tile >= length:
        return [Span(0, length, 0, length, 0, 0)]
    if tile < 1 or overlap < 0 or multiple < 1:
        raise ValueError("tile and multiple must be >= 1 and overlap >= 0")
    overlap = -(-overlap // multiple) * multiple
    count = math.ceil(length / tile)
    bounds = sorted({0, length, *(round(i * length / count / multiple) * multiple for i in range(1, count))})
    bounds = [b for b in bounds if 0 <= b <= length]
    smallest_core = min(b - a for a, b in zip(bounds, bounds[1:]))
    # Fade zones of neighbouring boundaries must not meet, hence the core // 2 cap.
    fade = min(overlap // 2, smallest_core // 2)
    spans = []
    last = len(bounds) - 2
    for k, (start, end) in enumerate(zip(bounds, bounds[1:])):
        spans.append(Span(
            core_start=start, core_end=end,
            read_start=max(0, start - overlap), read_end=min(length, end + overlap),
            fade_before=fade if k > 0 else 0,
            fade_after=fade if k < last else 0,
        ))
    return spans


def blend_weights(span: Span, scale: int) -> np.ndarray:
    """Weights over the tile's output extent: 1 inside, ramps in fade zones, 0 beyond them."""
    length = (span.read_end - span.read_start) * scale
    weights = np.zeros(length, dtype=np.float32)
    lo = (span.core_start - span.fade_before - span.read_start) * scale
    hi = (span.core_end + span.fade_after - span.read_start) * scale
    weights[lo:hi] = 1.0
    if span.fade_before:
        ramp = _raised_cosine(2 * span.fade_before * scale)
        weights[lo:lo + ramp.size] = ramp
    if span.fade_after:
        ramp = _raised_cosine(2 * span.fade_after * scale)
        weights[hi - ramp.size:hi] = 1.0 - ramp
    return weights


def _raised_cosine(n: int) -> np.ndarray:
    # Sampled at pixel centres so r(t) + r(n - 1 - t) == 1: neighbours' weights sum to one.
    t = (np.arange(n, dtype=np.float64) + 0.5) / n
    return (0.5 - 0.5 * np.cos(math.pi * t)).astype(np.float32)


class _NumpyOps:
    """What tiling needs of an array library, for numpy arrays."""

    @staticmethod
    def weights(values: np.ndarray, like: np.ndarray) -> np.ndarray:
        return values

    @staticmethod
    def empty(like: np.ndarray, shape: tuple) -> np.ndarray:
        return np.empty(shape, dtype=np.float32)

    @staticmethod
    def shares_memory(a: np.ndarray, b: np.ndarray) -> bool:
        return np.may_share_memory(a, b)

    @staticmethod
    def clone(a: np.ndarray) -> np.ndarray:
        return a.copy()

    @staticmethod
    def cat(arrays: list) -> np.ndarray:
        return np.concatenate(arrays, axis=0)

    @staticmethod
    def float32(a: np.ndarray) -> np.ndarray:
        return a.astype(np.float32, copy=False)

    @staticmethod
    def to_device_of(a: np.ndarray, like: np.ndarray) -> np.ndarray:
        return a

    inference = staticmethod(contextlib.nullcontext)


class _TorchOps:
    """The same for torch tensors: weights and blending live on the tiles' device."""

    def __init__(self):
        import torch
        self.torch = torch
        self.inference = torch.inference_mode  # models hand back inference tensors

    def weights(self, values: np.ndarray, like):
        return self.torch.from_numpy(values).to(like.device)

    @staticmethod
    def empty(like, shape: tuple):
        return like.new_empty(shape)

    @staticmethod
    def shares_memory(a, b) -> bool:
        return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()

    @staticmethod
    def clone(a):
        return a.clone()

    def cat(self, arrays: list):
        return self.torch.cat(arrays, dim=0)

    def float32(self, a):
        return a.to(self.torch.float32)

    @staticmethod
    def to_device_of(a, like):
        return a.to(like.device)


def _ops_for(x: Array):
    return _NumpyOps() if isinstance(x, np.ndarray) else _TorchOps()


def tiled_apply(fn: TileFn, x: Array, *, scale: int, tile: Union[int, tuple[int, int], None], overlap: int,
                sink: Optional[RectSink] = None, batch_size: int = 1, multiple: int = 1,
                on_tile: Optional[Callable[[int, int], None]] = None) -> Optional[Array]:
    """Apply ``fn`` (NCHW -> NCHW at ``scale`` times the size) to ``x`` tile by tile.

    With ``sink`` given, finished output rectangles are passed to ``sink(top, left, block)``
    (block is N x C x h x w float, on the device ``fn`` returns on, where the blending is
    done too), in raster order of the tiles, each output pixel exactly once, and None is
    returned; otherwise the whole output tensor is returned, on ``x``'s device. ``tile``:
    cores of at most this many input pixels a side, or (height, width), or None for one
    tile. ``batch_size`` tiles of equal shape from one tile row are stacked into one call
    of ``fn``. ``multiple``: the network's size multiple (tiles start on multiples of it).
    ``on_tile(done, total)`` is called after each tile, for progress bars.

    Blending is done in the tile's own output: it is weighted in place, the parts of its
    neighbours already run (the strip below the tile row above, the seam left of it) are
    added, and what no later tile touches goes to the sink at once. So the float memory
    beyond one tile is a strip ``2 * fade * scale`` rows high and the output's width, not a
    band of whole tile rows.
    """
    if x.ndim != 4:
        raise ValueError(f"expected NCHW input, got shape {tuple(x.shape)}")
    ops = _ops_for(x)
    height, width = x.shape[-2:]
    tile_height, tile_width = tile if isinstance(tile, tuple) else (tile, tile)
    rows = plan_axis(height, tile_height, overlap, multiple)
    cols = plan_axis(width, tile_width, overlap, multiple)
    out_width = width * scale
    col_weights_host = [blend_weights(c, scale) for c in cols]
    col_weights: Optional[list] = None  # on the tiles' device, made at the first tile
    total_tiles, done_tiles = len(rows) * len(cols), 0

    whole: Optional[Array] = None

    def keep(top: int, left: int, block: Array) -> None:
        nonlocal whole
        if whole is None:
            whole = ops.empty(block, (block.shape[0], block.shape[1], height * scale, out_width))
        whole[:, :, top:top + block.shape[2], left:left + block.shape[3]] = block

    emit = sink if sink is not None else keep
    above: Optional[Array] = None  # rows [band_top, above_bottom): the tile row above's unfinished strip
    for i, row in enumerate(rows):
        band_top = (row.core_start - row.fade_before) * scale
        band_bottom = (row.core_end + row.fade_after) * scale
        # Rows from done_until down are also the next tile row's: they wait in the strip.
        done_until = band_bottom if i == len(rows) - 1 else (rows[i + 1].core_start - rows[i + 1].fade_before) * scale
        read_top = row.read_start * scale
        # Only the rows of a tile that carry weight are blended.
        y_rows = slice(band_top - read_top, band_bottom - read_top)
        row_w_host = blend_weights(row, scale)[y_rows, None]
        row_w = None
        below: Optional[Array] = None
        seam: Optional[Array] = None  # the previous tile's columns that this tile also covers
        for j, y in _run_row(fn, x, row, cols, scale, batch_size, ops):
            col = cols[j]
            lo = (col.core_start - col.fade_before - col.read_start) * scale
            hi = (col.core_end + col.fade_after - col.read_start) * scale
            left = col.read_start * scale + lo
            right = col.read_start * scale + hi
            # Columns from final_right on are also the next tile's.
            final_right = right if j == len(cols) - 1 else (cols[j + 1].core_start - cols[j + 1].fade_before) * scale
            # Weights go where the tiles are, once per tile row, not per tile.
            if row_w is None:
                row_w = ops.weights(row_w_host, y)
            if col_weights is None:
                col_weights = [ops.weights(w, y) for w in col_weights_host]
            # The guard context has zero weight and is skipped; the rest is weighted in place
            # (the tile output is ours, unless fn returned its input).
            part = y[:, :, y_rows, lo:hi]
            if ops.shares_memory(y, x):
                part = ops.clone(part)
            with ops.inference():
                if col.fade_before or col.fade_after:  # otherwise its weights here are all 1
                    part *= col_weights[j][lo:hi]
                if row.fade_before or row.fade_after:
                    part *= row_w
                start = left
                if seam is not None:  # it already holds the strip above for its columns
                    part[:, :, :, : seam.shape[3]] += seam
                    start += seam.shape[3]
                if above is not None:
                    part[:, :, : above.shape[2], start - left:] += above[:, :, :, start:right]
            emit(band_top, left, part[:, :, : done_until - band_top, : final_right - left])
            if done_until < band_bottom:
                if below is None:
                    below = ops.empty(part, (part.shape[0], part.shape[1], band_bottom - done_until, out_width))
                below[:, :, :, left:final_right] = part[:, :, done_until - band_top:, : final_right - left]
            seam = ops.clone(part[:, :, :, final_right - left:]) if final_right < right else None
            del y, part
            done_tiles += 1
            if on_tile is not None:
                on_tile(done_tiles, total_tiles)
        above = below

    if sink is None:
        assert whole is not None
        return ops.to_device_of(whole, x)
    return None


def _run_row(fn: TileFn, x: Array, row: Span, cols: list[Span], scale: int,
             batch_size: int, ops) -> Iterator[tuple[int, Array]]:
    """Run the tiles of one tile row, yielding (column index, output) left to right.

    Tiles of equal shape are stacked up to ``batch_size`` per call. A batch may run ahead
    of a narrower tile to its left; its outputs wait until their turn, so with
    ``batch_size`` 1 only one tile output is alive at a time.
    """
    crops = [x[:, :, row.read_start:row.read_end, c.read_start:c.read_end] for c in cols]
    by_shape: dict[tuple, list[int]] = {}
    for index, crop in enumerate(crops):
        by_shape.setdefault(tuple(crop.shape), []).append(index)
    step = max(1, batch_size)
    chunks = sorted(indices[start:start + step] for indices in by_shape.values()
                    for start in range(0, len(indices), step))
    waiting: dict[int, Array] = {}
    next_column = 0
    for chunk in chunks:
        batch = ops.cat([crops[j] for j in chunk]) if len(chunk) > 1 else crops[chunk[0]]
        result = fn(batch)
        expected = (batch.shape[-2] * scale, batch.shape[-1] * scale)
        if tuple(result.shape[-2:]) != expected:
            raise ValueError(f"tile function returned {tuple(result.shape[-2:])}, expected {expected}")
        n = x.shape[0]
        for offset, j in enumerate(chunk):
            # Left on fn's device: blending happens there, and the sink gets rectangles on it
            # (on a GPU, quantised there, so only the uint8 image crosses to the host).
            waiting[j] = ops.float32(result[offset * n:(offset + 1) * n])
        del result
        while next_column in waiting:
            yield next_column, waiting.pop(next_column)
            next_column += 1


def auto_tile(scale: int, height: int, width: int, *, budget: float, cap: int = CPU_TILE_CAP,
              overlap: int = 16) -> Optional[int]:
    """The largest tile (``cap``, halving down to 64) whose working memory fits in ``budget``
    bytes; None if one tile covers the image.

    Working memory: the tile's activations (a few feature maps at LR size plus the
    upscaled output) and the blending strip (a few output rows, the output's width).
    """
    strip = overlap * scale**2 * width * 3 * 4
    tile = cap
    while tile > 64:
        read = tile + 2 * overlap
        activations = read * read * 4 * (6 * 64 + 4 * 3 * scale**2)
        if activations + strip <= budget:
            break
        tile //= 2
    return None if tile >= max(height, width) else tile
