"""Videos through `sr upscale`: tiny clips made with PyAV here, a tiny model (conftest's weights_dir)."""
import json
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sr_cli.cli import cli

av = pytest.importorskip("av", reason='the video extra: pip install "sr-cli[video]"')

SIZE = (32, 24)  # width, height


def frame_pixels(index: int, size=SIZE) -> np.ndarray:
    y, x = np.mgrid[0:size[1], 0:size[0]]
    return np.stack([(x * 8 + index * 20) % 256, (y * 10) % 256, np.full_like(x, index * 30 % 256)],
                    axis=2).astype(np.uint8)


def make_clip(path: Path, *, frames: int = 5, rate: int = 24, audio: bool = True, rotation: int = 0,
              pts_ms: list[int] = None, codec: str = "libx264", subtitles: bool = False) -> Path:
    """A clip of ``frames`` distinct frames; ``pts_ms``: variable frame rate, times in milliseconds;
    audio: AAC mono at 8 kHz for as long as the video."""
    with av.open(str(path), "w") as out:
        video = out.add_stream(codec, rate=rate)
        video.width, video.height = SIZE
        video.pix_fmt = "yuv420p"
        if pts_ms is not None:
            video.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            video.set_display_rotation(rotation)
        sound = None
        if audio:
            sound = out.add_stream("aac", rate=8000)
            sound.layout = "mono"
        text = out.add_mux_stream("subrip") if subtitles else None  # packets as they are, no encoder
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(frame_pixels(index), format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[index], Fraction(1, 1000)
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if sound is not None:
            seconds = (pts_ms[-1] / 1000 + 0.05) if pts_ms else frames / rate
            count = int(8000 * seconds)
            samples = (0.3 * np.sin(2 * np.pi * 440 * np.arange(count) / 8000)).astype(np.float32)[None]
            for first in range(0, count, 1024):
                chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, first:first + 1024]),
                                                   format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = 8000, first
                for packet in sound.encode(chunk):
                    out.mux(packet)
            for packet in sound.encode(None):
                out.mux(packet)
        if text is not None:
            packet = av.Packet(b"hello")
            packet.stream, packet.pts, packet.dts, packet.duration = text, 0, 0, 100
            packet.time_base = text.time_base = Fraction(1, 1000)
            out.mux(packet)
    return path


def video_facts(path: Path) -> dict:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        facts = {"size": (frames[0].width, frames[0].height), "frames": len(frames),
                 "times": [round(frame.time, 4) for frame in frames], "rotation": frames[0].rotation,
                 "codec": stream.codec_context.name, "pix_fmt": stream.codec_context.pix_fmt,
                 "streams": [s.type for s in container.streams]}
    return facts


def packets(path: Path, kind: str) -> list[tuple]:
    """(payload, pts, duration in seconds) of every packet of the first ``kind`` stream."""
    with av.open(str(path)) as container:
        stream = getattr(container.streams, kind)[0]
        return [(bytes(p), float(p.pts * p.time_base), float(p.duration * p.time_base))
                for p in container.demux(stream) if p.size]


def upscale(*args):
    return CliRunner().invoke(cli, ["upscale", *map(str, args)])


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_clip_upscaled_with_every_frame_timestamp_and_the_sound_bit_exact(weights_dir, tmp_path):
    clip = make_clip(tmp_path / "clip.mp4")
    result = upscale(clip, "-s", 2, "--quiet", "--json")
    assert result.exit_code == 0, result.output
    out = tmp_path / "clip_x2.mp4"
    before, after = video_facts(clip), video_facts(out)
    assert after["size"] == (64, 48) and after["frames"] == before["frames"] == 5
    assert after["times"] == before["times"]
    assert after["codec"] == "h264" and after["streams"] == ["video", "audio"]
    assert packets(out, "audio") == packets(clip, "audio")  # copied, not re-encoded
    entry = json.loads(result.stdout)["results"][0]
    assert entry["status"] == "ok" and entry["frames"] == 5 and entry["output_size"] == [64, 48]
    assert not leftovers(tmp_path)


def test_variable_frame_rate_rotation_and_subtitles_are_kept(weights_dir, tmp_path):
    times = [0, 40, 50, 200, 260]
    clip = make_clip(tmp_path / "vfr.mkv", pts_ms=times, rotation=90, subtitles=True)
    result = upscale(clip, "-s", 2, "--quiet")
    assert result.exit_code == 0, result.output
    out = tmp_path / "vfr_x2.mkv"
    facts = video_facts(out)
    assert facts["times"] == [t / 1000 for t in times]
    assert facts["rotation"] == 90 and facts["streams"] == ["video", "audio", "subtitle"]
    assert packets(out, "subtitles") == packets(clip, "subtitles")
    assert packets(out, "audio") == packets(clip, "audio")


def test_frames_range_is_a_preview_starting_at_zero(weights_dir, tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=8, rate=10)
    result = upscale(clip, "-s", 2, "--frames", "2:5", "--quiet")
    assert result.exit_code == 0, result.output
    facts = video_facts(tmp_path / "clip_x2.mp4")
    assert facts["frames"] == 3 and facts["times"] == [0.0, 0.1, 0.2]
    sound = packets(tmp_path / "clip_x2.mp4", "audio")
    assert sound and all(-0.2 < when < 0.35 for _, when, _ in sound)  # the excerpt's stretch, shifted
    assert upscale(clip, "--frames", "5:2").exit_code == 2


def test_codec_crf_and_pixel_format_options(weights_dir, tmp_path):
    clip = make_clip(tmp_path / "clip.mkv", frames=3, audio=False)
    result = upscale(clip, "-s", 2, "--codec", "libx265", "--crf", 30, "--pix-fmt", "yuv444p", "--quiet")
    assert result.exit_code == 0, result.output
    facts = video_facts(tmp_path / "clip_x2.mkv")
    assert (facts["codec"], facts["pix_fmt"], facts["frames"]) == ("hevc", "yuv444p", 3)
    bad = upscale(clip, "-s", 2, "--pix-fmt", "nonsense", "--overwrite", "--quiet")
    # #31: a pixel format that does not exist is a usage error when parsed (exit 2), before any work.
    assert bad.exit_code == 2 and "--pix-fmt nonsense" in bad.stderr.strip().splitlines()[-1]
    bad = upscale(clip, "-s", 2, "--pix-fmt", "gray16be", "--overwrite", "--quiet")  # exists; libx264 lacks it
    assert bad.exit_code == 1 and "--pix-fmt gray16be" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 2  # the file's line, then the count
    assert not leftovers(tmp_path)


def test_folder_with_a_corrupt_clip_reports_it_and_writes_the_rest(weights_dir, tmp_path):
    import cv2
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    make_clip(src / "good.mp4", frames=3)
    good = (src / "good.mp4").read_bytes()
    (src / "broken.mp4").write_bytes(good[: len(good) // 3])  # cut short
    (src / "noise.mkv").write_bytes(np.random.default_rng(0).bytes(4000))
    cv2.imwrite(str(src / "still.png"), frame_pixels(0))
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    result = upscale(src, "-o", out, "-s", 2, "--quiet", "--json")
    assert result.exit_code == 1
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed ")]
    assert {Path(line.split()[1].rstrip(":")).name for line in failed} == {"broken.mp4", "noise.mkv"}
    assert video_facts(out / "good.mp4")["frames"] == 3
    assert cv2.imread(str(out / "still.png")).shape == (48, 64, 3)
    assert sorted(p.name for p in out.iterdir()) == ["good.mp4", "still.png"]
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before and not leftovers(tmp_path)
    summary = json.loads(result.stdout)
    assert (summary["ok"], summary["failed"]) == (2, 2)
    # Run again: outputs exist (an error), or are skipped with --skip-existing.
    again = upscale(src, "-o", out, "-s", 2, "--quiet", "--skip-existing", "--json")
    statuses = {Path(r["source"]).name: r["status"] for r in json.loads(again.stdout)["results"]}
    assert statuses["good.mp4"] == "skipped" and statuses["still.png"] == "skipped"


def test_fail_fast_stops_at_the_broken_clip(weights_dir, tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"not a video")
    make_clip(tmp_path / "b.mp4", frames=2, audio=False)
    result = upscale(tmp_path, "-s", 2, "--quiet", "--fail-fast")
    assert result.exit_code == 1 and not (tmp_path / "b_x2.mp4").exists()


def test_without_pyav_a_video_is_one_line_saying_how_to_install_it(weights_dir, tmp_path, monkeypatch):
    clip = make_clip(tmp_path / "clip.mp4", frames=2, audio=False)
    monkeypatch.setitem(sys.modules, "av", None)  # import av now raises ImportError
    result = upscale(clip, "-s", 2, "--quiet")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0].endswith('video input needs PyAV: pip install "sr-cli[video]"')
    assert not (tmp_path / "clip_x2.mp4").exists() and not leftovers(tmp_path)


def test_earlier_output_in_the_folder_is_not_an_input(weights_dir, tmp_path):
    make_clip(tmp_path / "clip.mp4", frames=2, audio=False)
    assert upscale(tmp_path, "-s", 2, "--quiet").exit_code == 0
    again = upscale(tmp_path, "-s", 2, "--quiet", "--json")  # clip_x2.mp4 is twice clip.mp4's size
    results = {Path(r["source"]).name: r for r in json.loads(again.stdout)["results"]}
    assert results["clip_x2.mp4"]["status"] == "skipped" and "earlier output" in results["clip_x2.mp4"]["error"]


def test_a_users_clip_named_like_an_output_is_never_replaced(weights_dir, tmp_path):
    """#31 class 1: clip_x2.mp4 is the user's own (no provenance tag; its own audio): an input, never replaced."""
    from sr_cli.provenance import read
    make_clip(tmp_path / "clip.mp4", frames=2, audio=False)
    SIZE_2 = (SIZE[0] * 2, SIZE[1] * 2)
    theirs = tmp_path / "clip_x2.mp4"
    with av.open(str(theirs), "w") as out:  # twice the size, with audio: as an output would look
        video = out.add_stream("libx264", rate=24)
        video.width, video.height = SIZE_2
        video.pix_fmt = "yuv420p"
        for index in range(2):
            for packet in video.encode(av.VideoFrame.from_ndarray(frame_pixels(index, SIZE_2), format="rgb24")):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
    before = theirs.read_bytes()
    result = upscale(tmp_path, "-s", 2, "--quiet", "--overwrite", "--json")
    results = {Path(r["source"]).name: r for r in json.loads(result.stdout)["results"]}
    assert results["clip.mp4"]["status"] == "failed" and "is itself an input" in results["clip.mp4"]["error"]
    assert results["clip_x2.mp4"]["status"] == "ok" and theirs.read_bytes() == before
    tag = read(tmp_path / "clip_x2_x2.mp4")
    assert tag is not None and tag["source"] == "clip_x2.mp4" and read(theirs) is None


def test_a_clip_cut_short_fails_unless_partial_output_is_asked_for(weights_dir, tmp_path):
    """#31 class 4: the header declares 30 frames, 12 or so decode cleanly up to the cut: before, "ok"
    and exit 0. Now a failure (exit 1) naming the counts, nothing published unless --allow-partial."""
    whole = make_clip(tmp_path / "whole.mkv", frames=30, audio=False)
    data = whole.read_bytes()
    clip = tmp_path / "cut.mkv"
    clip.write_bytes(data[: int(len(data) * 0.6)])
    result = upscale(clip, "-s", 2, "--json")
    assert result.exit_code == 1, result.stderr
    (entry,) = json.loads(result.stdout)["results"]
    assert entry["status"] == "failed" and "cut short" in entry["error"] and "of the 30 frames" in entry["error"]
    assert not (tmp_path / "cut_x2.mkv").exists() and not leftovers(tmp_path)
    result = upscale(clip, "-s", 2, "--quiet", "--allow-partial")
    assert result.exit_code == 0, result.stderr
    assert 0 < video_facts(tmp_path / "cut_x2.mkv")["frames"] < 30


def test_odd_output_sizes_are_handled_or_named(weights_dir, tmp_path):
    """#31 class 10: an odd output size with yuv420p failed with "cannot encode frame 1 with libx264
    (Generic error in an external library)". Now: full-resolution chroma (yuv444p) when the format was
    not asked for; asked for, one line naming the size and the fix."""
    clip = make_clip(tmp_path / "clip.mp4", frames=3, audio=False)  # 32x24 -> x1.5: 48x36; x1.53: 49x37
    result = upscale(clip, "-s", "1.53", "-m", "bicubic", "--quiet")
    assert result.exit_code == 0, result.output
    facts = video_facts(tmp_path / "clip_x1.53.mp4")
    assert facts["size"] == (49, 37) and facts["frames"] == 3 and facts["pix_fmt"] == "yuv444p"
    result = upscale(clip, "-s", "1.53", "-m", "bicubic", "--quiet", "--pix-fmt", "yuv420p", "-o", tmp_path / "b.mp4")
    assert result.exit_code == 1 and "49x37" in result.stderr and "--pix-fmt yuv444p" in result.stderr
    assert "Generic error" not in result.stderr and not (tmp_path / "b.mp4").exists() and not leftovers(tmp_path)
