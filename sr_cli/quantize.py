"""int8 ONNX forms of a model: static quantisation calibrated on real images, checked before it is kept.

Recipe (``export_int8``): the model is exported to fp32 ONNX (export.py), then quantised
by ONNX Runtime's static quantiser in QDQ format: per-channel int8 weights, uint8
activations whose ranges come from a percentile of the values seen on calibration patches
(bicubic, and optionally degraded, LR crops of the images in a folder). The first and last
convolutions stay fp32: the first sees raw pixels, the last writes the residual added to
the upsampled input, and both are small, so int8 saves little there and costs the most;
when that is not within the limits, the next ones in from each end are kept fp32 too
(``FP32_CONV_STEPS``), one more pair at a time.
Only convolutions are quantised: the residual stream (the sums of the skip connections)
stays float, so rounding errors do not pile up block after block. On default x4 that
halved the SSIM loss on Set5 (0.0020 -> 0.0013) for ~10% more time than an all-int8 graph.

The int8 file is then run beside the fp32 one on a check set (MATLAB-bicubic LR of its
HR images, PSNR/SSIM on Y as ``sr eval``; with ``check_degrade`` also on degraded LR, as
``sr eval --degrade``) and kept only when it loses at most ``max_psnr_loss`` dB and
``max_ssim_loss`` SSIM and its blockiness is within ``max_blockiness_change`` of fp32's.
Blockiness moves both ways: int8 rounding smooths a clean-trained model's enlarged JPEG grid
a little, which is still the int8 file behaving unlike its weights.
"""
from __future__ import annotations

import contextlib
import io
import json
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

CALIBRATION_PERCENTILE = 99.99
CALIBRATION_CROP = 64
CALIBRATION_IMAGES = 120
# Convolutions kept fp32 at (the start, the end) of the network, tried in turn until the int8 file is
# within the limits: the layers nearest the pixels are the most sensitive (a GAN's more than others).
FP32_CONV_STEPS = ((1, 1), (2, 2), (3, 3), (4, 4))


@dataclass
class Int8Check:
    images: int
    fp32_psnr: float
    int8_psnr: float
    fp32_ssim: float
    int8_ssim: float
    fp32_blockiness: float
    int8_blockiness: float
    degrade: Optional[str] = None  # the LR inputs' degradation, None: clean bicubic

    @property
    def psnr_loss(self) -> float:
        return self.fp32_psnr - self.int8_psnr

    @property
    def ssim_loss(self) -> float:
        return self.fp32_ssim - self.int8_ssim

    @property
    def blockiness_change(self) -> float:
        return abs(self.fp32_blockiness - self.int8_blockiness)

    def within(self, max_psnr_loss: float, max_ssim_loss: float, max_blockiness_change: float) -> bool:
        return (self.psnr_loss <= max_psnr_loss and self.ssim_loss <= max_ssim_loss
                and self.blockiness_change <= max_blockiness_change)

    def describe(self) -> str:
        return (f"{self.psnr_loss:+.3f} dB / {self.ssim_loss:+.4f} SSIM below fp32, blockiness "
                f"{self.int8_blockiness:.3f} vs {self.fp32_blockiness:.3f} on {self.images} images"
                + (f" ({self.degrade})" if self.degrade else ""))


def export_int8(model, output: str | Path, *, calibration, check_set=None,
                degrade: Optional[str] = None, check_degrade: Optional[str] = None,
                max_psnr_loss: float = 0.05, max_ssim_loss: float = 0.002, max_blockiness_change: float = 0.01,
                percentile: float = CALIBRATION_PERCENTILE, crop: int = CALIBRATION_CROP,
                max_images: int = CALIBRATION_IMAGES, fp32_convs: Optional[tuple[int, int]] = None,
                overwrite: bool = False, seed: int = 0,
                progress: Optional[Callable[[str], None]] = None) -> dict:
    """Write an int8 ONNX form of ``model`` (an SRModel) to ``output``; return a summary with the
    check's figures. ``check_set``: a folder or several, each of which must be within the limits, on
    clean LR and, with ``check_degrade`` (an ``sr eval --degrade`` spec), on degraded LR too.
    ValueError (nothing written) when the loss is above a limit."""
    from .atomic import atomic_path
    from .export import export_model
    output = Path(output)
    if output.exists() and not overwrite:
        raise ValueError(f"{output} exists; pass --overwrite to replace it")
    folders = [calibration] if isinstance(calibration, (str, Path)) else list(calibration)
    calibration_images = [f for folder in folders for f in _image_files(folder, "--calibration")]
    if len(calibration_images) > max_images:  # a seeded draw, so every folder given is represented
        picked = np.random.default_rng(seed).choice(len(calibration_images), max_images, replace=False)
        calibration_images = [calibration_images[i] for i in sorted(picked)]
    if check_set is None:
        check_sets = [calibration_images[:10]]
    else:
        sets = [check_set] if isinstance(check_set, (str, Path)) else list(check_set)
        check_sets = [_image_files(folder, "--check-set") for folder in sets]
    conditions = [None] + ([check_degrade] if check_degrade else [])
    limits = (max_psnr_loss, max_ssim_loss, max_blockiness_change)
    say = progress or (lambda text: None)
    attempts = [fp32_convs] if fp32_convs is not None else FP32_CONV_STEPS
    with tempfile.TemporaryDirectory(prefix="sr-int8-") as work:
        fp32 = Path(work) / "fp32.onnx"
        export_model(model, fp32, fmt="onnx", check=True)
        info = _metadata(fp32)
        convs = _conv_count(fp32)
        attempts = [kept for kept in attempts if sum(kept) < convs] or [attempts[0]]
        cache = Path(work) / "calibration.json"  # the ranges of the fp32 model: measured once, for every attempt
        say(f"calibrating on {len(calibration_images)} images of {', '.join(str(f) for f in folders)}")
        for kept in attempts:
            quantised = Path(work) / f"int8_{kept[0]}_{kept[1]}.onnx"
            _quantise(fp32, quantised, _calibration_batches(calibration_images, model.scale, crop=crop,
                                                            degrade=degrade, seed=seed),
                      percentile=percentile, fp32_convs=kept, cache=cache)
            checks = [check_int8(fp32, quantised, images, model.scale, degrade=condition, seed=seed)
                      for images in check_sets for condition in conditions]
            # The set that loses most decides (PSNR first): every check must be within the limits.
            check = max(checks, key=lambda c: (not c.within(*limits), c.psnr_loss))
            within = all(c.within(*limits) for c in checks)
            say(f"first {kept[0]} and last {kept[1]} convolutions fp32: "
                + "; ".join(c.describe() for c in checks) + ("" if within else " (over a limit)"))
            if within:
                break
        else:
            raise ValueError(f"int8 is over the limits ({max_psnr_loss} dB, {max_ssim_loss} SSIM, blockiness "
                             f"{max_blockiness_change}) against fp32: {check.describe()}; not written")
        info.update(precision="int8", int8_recipe=json.dumps({
            "calibration": [Path(f).name for f in folders], "images": len(calibration_images),
            "crop": crop, "degrade": degrade, "check_degrade": check_degrade, "percentile": percentile,
            "fp32_convs": list(kept),
            "quantised": "Conv only", "seed": seed}))
        _set_metadata(quantised, info)
        with atomic_path(output) as tmp:
            tmp.write_bytes(quantised.read_bytes())
    return {"output": str(output), "scale": model.scale, "check": check, "checks": checks,
            "bytes": output.stat().st_size}


def _image_files(folder, option: str) -> list[Path]:
    from .imageio import READABLE_SUFFIXES
    path = Path(folder)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ValueError(f"{option} {folder}: no such folder")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in READABLE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"{option} {folder}: no images in it")
    return files


def _hr_lr(path: Path, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 HR (mod-cropped) and its MATLAB-bicubic LR, as ``sr eval`` makes them."""
    from .evaluate import bicubic_downscale
    from .resize import modcrop
    from .imageio import read_image, rgb8
    hr = modcrop(rgb8(read_image(path).pixels), scale)
    return hr, bicubic_downscale(hr, scale)


def _calibration_batches(files: list[Path], scale: int, *, crop: int, degrade: Optional[str], seed: int):
    """One 1 x 3 x crop x crop float patch per image (a second, degraded one with ``degrade``); images
    whose LR is smaller than ``crop`` are passed over (the calibrator needs one patch shape)."""
    spec = None
    if degrade:
        from .degrade import parse_degrade_spec
        spec = parse_degrade_spec(degrade)
    for path in files:
        rng = np.random.default_rng([seed, zlib.crc32(path.name.encode())])
        hr, lr = _hr_lr(path, scale)
        variants = [lr]
        if spec is not None:
            variants.append(spec.apply(hr, lr, scale=scale, rng=rng))
        for image in variants:
            height, width = image.shape[:2]
            if height < crop or width < crop:
                break
            top = int(rng.integers(0, height - crop + 1))
            left = int(rng.integers(0, width - crop + 1))
            patch = image[top:top + crop, left:left + crop]
            yield np.ascontiguousarray(patch.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0


def _quantise(fp32: Path, output: Path, batches, *, percentile: float, fp32_convs: tuple[int, int],
              cache: Optional[Path] = None) -> None:
    """Quantise every Conv but the first ``fp32_convs[0]`` and the last ``fp32_convs[1]``; the
    residual stream between them stays float (only convolutions are quantised, each with a
    quantise/dequantise pair of its own on its input)."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(batches)

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"input": batch}

    prepared = output.with_name("prepared.onnx")
    # Symbolic shape inference fails on these graphs (dynamic height and width); ONNX's own is enough.
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    convs = [node.name for node in onnx.load(str(prepared)).graph.node if node.op_type == "Conv"]
    with contextlib.redirect_stdout(io.StringIO()):  # the calibrator prints its progress
        quantize_static(str(prepared), str(output), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["Conv"],
                        nodes_to_exclude=convs[:fp32_convs[0]] + convs[len(convs) - fp32_convs[1]:],
                        calibrate_method=CalibrationMethod.Percentile, calibration_cache_path=cache,
                        extra_options={"CalibPercentile": percentile, "DedicatedQDQPair": True})


def _conv_count(path: Path) -> int:
    import onnx
    return sum(node.op_type == "Conv" for node in onnx.load(str(path)).graph.node)


def _metadata(path: Path) -> dict[str, str]:
    import onnx
    return {entry.key: entry.value for entry in onnx.load(str(path)).metadata_props}


def _set_metadata(path: Path, info: dict[str, str]) -> None:
    import onnx
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in info.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def check_int8(fp32: Path, int8: Path, files: list[Path], scale: int, *, degrade: Optional[str] = None,
               seed: int = 0) -> Int8Check:
    """Mean PSNR/SSIM/blockiness of both files on ``files``, exactly as ``sr eval [--degrade SPEC
    --seed SEED]`` scores them (mod-crop, MATLAB-bicubic LR, degraded per image as eval does, grey
    kept grey, Y channel, border = scale, MATLAB convention)."""
    from .engines.onnx_engine import OnnxEngine
    from .evaluate import score_image
    spec = None
    if degrade:
        from .degrade import parse_degrade_spec
        spec = parse_degrade_spec(degrade)
    engines = {"fp32": OnnxEngine(fp32), "int8": OnnxEngine(int8)}
    scores = {name: ([], [], []) for name in engines}
    for path in files:  # labelled by folder, so the degraded LR is sr eval's for that set
        found = score_image(path, path.parent.name, scale=scale, loaded=engines, crop_border=scale, spec=spec,
                            seed=seed, tile=None)
        for name, score in found.items():
            scores[name][0].append(score.psnr)
            scores[name][1].append(score.ssim)
            scores[name][2].append(score.blockiness)
    mean = {name: [float(np.mean(v)) for v in values] for name, values in scores.items()}
    return Int8Check(images=len(files), fp32_psnr=mean["fp32"][0], int8_psnr=mean["int8"][0],
                     fp32_ssim=mean["fp32"][1], int8_ssim=mean["int8"][1], fp32_blockiness=mean["fp32"][2],
                     int8_blockiness=mean["int8"][2], degrade=degrade)
