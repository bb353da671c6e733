"""Animated GIF/APNG/WebP and multi-page TIFF: every frame upscaled, timing and looping kept."""
import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image

from sr_cli.cli import cli
from sr_cli.imageio import AnimatedImage, read_animation, read_image

COLOURS = [(255, 0, 0), (0, 0, 255), (0, 160, 0)]


def frames(size=(8, 6), alpha=False):
    mode = "RGBA" if alpha else "RGB"
    images = []
    for index, colour in enumerate(COLOURS):
        image = Image.new(mode, size, colour + ((255,) if alpha else ()))
        image.putpixel((index, 0), (255, 255, 255) + ((255,) if alpha else ()))  # no two frames alike
        if alpha:
            image.putpixel((size[0] - 1, size[1] - 1), (0, 0, 0, 0))
        images.append(image)
    return images


def upscale(*args):
    return CliRunner().invoke(cli, ["upscale", *map(str, args)])


def info_of(path: Path) -> dict:
    with Image.open(path) as im:
        found = {"format": im.format, "frames": im.n_frames, "size": im.size, "loop": im.info.get("loop"),
                 "durations": [], "disposal": []}
        for index in range(im.n_frames):
            im.seek(index)
            im.load()  # WebP sets a frame's duration when it is loaded
            found["durations"].append(im.info.get("duration"))
            found["disposal"].append(getattr(im, "disposal_method", im.info.get("disposal")))
    return found


def test_animated_gif_keeps_every_frame_durations_loop_and_disposal(weights_dir, tmp_path):
    first, *rest = frames()
    first.save(tmp_path / "anim.gif", save_all=True, append_images=rest, duration=[100, 200, 300], loop=2,
               disposal=[1, 2, 1])
    result = upscale(tmp_path / "anim.gif", "-s", 2, "--quiet", "--json")
    assert result.exit_code == 0, result.output
    out = tmp_path / "anim_x2.gif"  # an animated GIF stays a GIF (a still one becomes PNG)
    found = info_of(out)
    assert (found["frames"], found["size"], found["loop"]) == (3, (16, 12), 2)
    assert found["durations"] == [100, 200, 300] and found["disposal"] == [1, 2, 1]
    with Image.open(out) as im:  # the frames in order, each its own colour
        for index, colour in enumerate(COLOURS):
            im.seek(index)
            centre = np.asarray(im.convert("RGB"))[6, 10]
            assert np.abs(centre.astype(int) - colour).max() < 60
    entry = json.loads(result.stdout)["results"][0]
    assert entry["frames"] == 3 and entry["output_size"] == [16, 12]


def test_apng_keeps_alpha_durations_disposal_and_blend(weights_dir, tmp_path):
    first, *rest = frames(alpha=True)
    first.save(tmp_path / "anim.png", save_all=True, append_images=rest, duration=[50, 60, 70], loop=0,
               disposal=[0, 1, 2], blend=[0, 1, 0])
    assert upscale(tmp_path / "anim.png", "-s", 2, "--quiet").exit_code == 0
    found = info_of(tmp_path / "anim_x2.png")
    assert (found["format"], found["frames"], found["size"]) == ("PNG", 3, (16, 12))
    assert found["durations"] == [50, 60, 70] and found["disposal"] == [0, 1, 2]
    with Image.open(tmp_path / "anim_x2.png") as im:
        assert im.mode == "RGBA" and im.getpixel((15, 11))[3] < 128 and im.getpixel((8, 6))[3] == 255


def test_animated_webp_and_multipage_tiff(weights_dir, tmp_path):
    first, *rest = frames()
    first.save(tmp_path / "anim.webp", save_all=True, append_images=rest, duration=[80, 90, 100], loop=3,
               lossless=True)
    pages = [Image.new("RGB", (8, 6), "red"), Image.new("L", (5, 7), 200)]  # pages stand alone
    pages[0].save(tmp_path / "pages.tif", save_all=True, append_images=pages[1:])
    assert upscale(tmp_path / "anim.webp", tmp_path / "pages.tif", "-s", 2, "--quiet").exit_code == 0
    found = info_of(tmp_path / "anim_x2.webp")
    assert (found["frames"], found["size"], found["loop"]) == (3, (16, 12), 3)
    assert found["durations"] == [80, 90, 100]
    with Image.open(tmp_path / "pages_x2.tif") as im:
        assert im.n_frames == 2 and (im.size, im.mode) == ((16, 12), "RGB")
        im.seek(1)
        assert (im.size, im.mode) == ((10, 14), "L")


def test_frames_range_and_single_frame_formats(weights_dir, tmp_path):
    first, *rest = frames()
    first.save(tmp_path / "anim.gif", save_all=True, append_images=rest, duration=[100, 200, 300], loop=0)
    assert upscale(tmp_path / "anim.gif", "-s", 2, "--frames", "1:3", "--quiet").exit_code == 0
    found = info_of(tmp_path / "anim_x2.gif")
    assert found["frames"] == 2 and found["durations"] == [200, 300]
    result = upscale(tmp_path / "anim.gif", "-s", 2, "-f", "jpg", "--quiet")  # JPEG holds one frame
    assert result.exit_code == 1 and "holds one frame" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp") or p.suffix == ".jpg"]


def test_read_image_names_the_frames_and_read_animation_reads_them(tmp_path):
    first, *rest = frames()
    first.save(tmp_path / "anim.gif", save_all=True, append_images=rest, duration=100)
    try:
        read_image(tmp_path / "anim.gif")
        raise AssertionError("a multi-frame file must not come back as one frame")
    except AnimatedImage as exc:
        assert exc.frames == 3 and "3 frames" in str(exc)
    with read_animation(tmp_path / "anim.gif") as animation:
        read = list(animation.frames())
    assert [f.index for f in read] == [0, 1, 2] and all(f.pixels.shape[:2] == (6, 8) for f in read)
    assert animation.loop is None  # no loop extension: plays once, and is written so


class RepeatUpscaler:
    """x4 by pixel repetition, with the Upscaler's checks (no limit)."""
    scale = 4

    def __call__(self, pixels):
        return np.repeat(np.repeat(pixels, 4, axis=0), 4, axis=1)

    def output_size(self, height, width):
        return height * 4, width * 4

    def check_fits(self, *args):
        pass


def test_animation_memory_does_not_grow_with_the_frame_count(tmp_path):
    """#31 class 5: every upscaled frame was held until Pillow wrote the file (1500 frames of 128x128
    x4: 3.9 GB). Frames now stream to the writer: the peak of 60 frames is that of 6."""
    import tracemalloc
    from sr_cli.animation import upscale_animation
    rng = np.random.default_rng(0)
    peaks = {}
    for fmt in ("gif", "png", "webp", "tif"):
        for count in (6, 60):
            images = [Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)) for _ in range(count)]
            source = tmp_path / f"in{count}.{fmt}"
            images[0].save(source, save_all=True, append_images=images[1:], duration=40)
            tracemalloc.start()
            stats = upscale_animation(source, tmp_path / f"out{count}.{fmt}", RepeatUpscaler())
            peaks[fmt, count] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert stats.frames == count
            with Image.open(tmp_path / f"out{count}.{fmt}") as im:
                assert im.n_frames == count and im.size == (192, 192)
        one_frame = 192 * 192 * 3
        assert peaks[fmt, 60] < peaks[fmt, 6] + 10 * one_frame, (fmt, peaks)  # held: + 54 frames
