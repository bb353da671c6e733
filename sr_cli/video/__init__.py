"""Video clips through PyAV: decode, upscale every frame with the same tiled core, encode.

PyAV (the optional extra ``sr-cli[video]``) is FFmpeg's libraries in a wheel: every
container and codec FFmpeg knows, with libx264/libx265/libvpx/SVT-AV1 encoders, and no
``ffmpeg`` binary to find, no pipes of raw frames to frame by hand, and packets (audio,
subtitles) that can be copied as they are.

Three threads overlap: one demuxes and decodes, the caller's runs the model, one encodes
and muxes. Frames stream through bounded queues (``QUEUE_FRAMES`` each), so memory does not
grow with the clip. Audio and subtitle packets travel through the same queues in demux order
and are muxed unchanged (copied, not re-encoded; FFmpeg's muxer interleaves them).

What is kept: every frame's timestamp (variable frame rate too: the encoder runs in the
input stream's time base), the frame rate, the rotation (display matrix), the sample aspect
ratio, the colour tags (untagged SD is tagged BT.601 and untagged HD BT.709, as players would
have read the input, because the output's size would make them guess otherwise), container
metadata, and every audio and subtitle stream. Other streams (data, attachments, a second
video) are left out. The output is written to a temporary file and renamed at the end.

``--frames A:B`` takes frames A (inclusive) to B (exclusive), counted in presentation order
from 0, decoding from the start (frame-accurate, no keyframe seeking); copied packets in that
stretch are kept and every timestamp is shifted so the excerpt starts where frame A was at 0.

  common.py    suffixes, PyAV's import, options and statistics, the bounded queue between stages
  decoder.py   demux and decode (the --frames window, the copied packets held back in order)
  encoder.py   the encoder chosen and set up (codec, pixel format, CRF, colour tags), encode and mux
  pipeline.py  upscale_video: the three stages on their threads, and the checks of the frame count
"""
from .common import (VIDEO_SUFFIXES, WRITABLE_VIDEO_SUFFIXES, VideoOptions, VideoStats, VideoUnavailable, is_video,
                     load_av, output_suffix, parse_frames, probe_size)
from .encoder import check_codec_options
from .pipeline import upscale_video

__all__ = ["VIDEO_SUFFIXES", "WRITABLE_VIDEO_SUFFIXES", "VideoOptions", "VideoStats", "VideoUnavailable", "is_video",
           "load_av", "output_suffix", "parse_frames", "probe_size", "check_codec_options", "upscale_video"]
