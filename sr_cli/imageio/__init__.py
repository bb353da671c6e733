"""Image files <-> pixel arrays: the only place that knows integer pixels and HWC; the core sees
NCHW float in [0, 1] (``to_tensor``/``from_tensor``).

  stills.py      one picture: read (orientation, ICC/EXIF, 16-bit, grey, alpha) and written (png,
                 jpg, webp, tiff, bmp, provenance tag); the format and suffix tables
  animations.py  GIF, APNG, animated WebP and multi-page TIFF, read and written a frame at a time
  tensors.py     pixel arrays <-> NCHW float tensors, and the rounding of what is written

Callers import from here (``from sr_cli.imageio import read_image``); the split is this package's own.
"""
from .animations import Animation, Frame, animation_format, frame_count, read_animation, write_animation
from .stills import (ANIMATION_FORMATS, FORMAT_SUFFIXES, READABLE_SUFFIXES, STILL_SUFFIXES, WRITABLE_SUFFIXES,
                     AnimatedImage, ImageData, ImageReadError, canonical_format, encode_image, format_from_suffix,
                     format_suffix, pil_to_pixels, pixels_to_pil, read_image, rgb8, set_input_limit, write_image)
from .tensors import from_tensor, round_half_up, round_to_levels, to_tensor, to_uint8

__all__ = ["ImageData", "ImageReadError", "AnimatedImage", "read_image", "rgb8", "write_image", "encode_image",
           "format_from_suffix", "format_suffix", "canonical_format", "set_input_limit",
           "to_tensor", "from_tensor", "round_to_levels", "round_half_up", "to_uint8", "pil_to_pixels", "pixels_to_pil",
           "Animation", "Frame", "read_animation", "write_animation", "animation_format", "frame_count",
           "FORMAT_SUFFIXES", "ANIMATION_FORMATS", "STILL_SUFFIXES", "WRITABLE_SUFFIXES", "READABLE_SUFFIXES"]
