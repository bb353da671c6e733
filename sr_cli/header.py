"""A safetensors file's header, read without torch: what `sr models` needs, in milliseconds.

The format is an 8-byte little-endian length, then that many bytes of JSON: one entry per
tensor (dtype, shape, offsets) and an optional ``__metadata__`` of strings. Our files keep
their architecture, scale and scores there (see weights.py, which loads the tensors).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

MAX_HEADER = 100_000_000  # the safetensors library's own limit


def read_header(path: str | Path) -> tuple[dict[str, str], dict[str, dict]]:
    """(metadata, tensors) of a safetensors file: tensors maps each name to its dtype/shape/offsets."""
    path = Path(path)
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        size = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
        if not 0 < size <= MAX_HEADER:
            raise ValueError(f"{path}: not a safetensors file (no valid header length)")
        raw = handle.read(size)
    try:
        header = json.loads(raw)
    except ValueError:
        raise ValueError(f"{path}: not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: not a safetensors file (its header is not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    return dict(metadata), header


def count_elements(tensors: dict[str, dict]) -> int:
    """Numbers stored in the file: the sum over tensors of the product of their shape."""
    return sum(math.prod(entry.get("shape", [])) for entry in tensors.values())
