"""sr: image super-resolution. ``from sr_cli import upscale_image``."""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["upscale_image", "Upscaler", "__version__"]


def __getattr__(name: str):
    # Lazy, so `sr --help` does not pay for importing torch.
    if name in ("upscale_image", "Upscaler"):
        from . import upscale
        return getattr(upscale, name)
    raise AttributeError(f"module 'sr_cli' has no attribute {name!r}")
