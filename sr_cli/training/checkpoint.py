"""A run's checkpoint, and the weights a generator starts from.

RUN_DIR/checkpoint.safetensors holds the tensors: ``model.*`` (generator), ``ema.*``, ``optim.*``
(Adam's state, ``optim.{param index}.{name}``), and in GAN mode ``disc.*`` and ``doptim.*``;
RUN_DIR/checkpoint.json the rest: step, EMA updates, optimiser hyperparameters and scalars, AMP
scalers, RNG states, the best validation, the config. Both are replaced atomically;
the safetensors metadata's step must match the JSON's.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn as nn

from ..archs import ARCHS
from ..atomic import atomic_path, write_bytes
from ..errors import first_line
from ..foreign import load_any
from ..weights import check_finite, read_state_dict
from .config import TrainConfig
from .objective import EMA

CHECKPOINT = "checkpoint.safetensors"
CHECKPOINT_STATE = "checkpoint.json"


def _rng_to_json(state: torch.Tensor) -> str:
    return base64.b64encode(state.cpu().numpy().tobytes()).decode("ascii")


def _rng_from_json(text: str) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(base64.b64decode(text), dtype=np.uint8).copy())


def write_json(path: Path, obj: Any) -> None:
    """``obj`` as indented JSON, replacing ``path`` atomically."""
    write_bytes(path, json.dumps(obj, indent=1).encode())


def _optimizer_parts(prefix: str, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimiser's state as tensors ``{prefix}.{param index}.{name}`` plus its JSON parts."""
    opt_state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, state in opt_state["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": opt_state["param_groups"], "scalars": scalars}


def _restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                       param_groups: list, scalars: dict[str, dict[str, Any]]) -> None:
    opt_state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        opt_state.setdefault(int(idx), {})[name] = value
    for idx, values in scalars.items():
        opt_state.setdefault(int(idx), {}).update(values)
    optimizer.load_state_dict({"state": opt_state, "param_groups": param_groups})


def save_checkpoint(run_dir: Path, *, step: int, net: nn.Module, ema: Optional[EMA],
                    optimizer: torch.optim.Optimizer, config: TrainConfig, best: dict[str, Any],
                    disc: Optional[nn.Module] = None, disc_optimizer: Optional[torch.optim.Optimizer] = None,
                    scalers: Optional[dict[str, Any]] = None) -> None:
    """Tensors to checkpoint.safetensors, everything else to checkpoint.json (both replaced atomically).

    Keys: ``model.*`` (generator), ``ema.*``, ``optim.*``, and in GAN mode ``disc.*`` and ``doptim.*``.
    """
    from safetensors.torch import save_file
    tensors = {f"model.{k}": v for k, v in net.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v for k, v in ema.net.state_dict().items()})
    opt_tensors, opt_json = _optimizer_parts("optim", optimizer)
    tensors.update(opt_tensors)
    state: dict[str, Any] = {
        "step": step,
        "ema_updates": ema.updates if ema is not None else 0,
        "optim_param_groups": opt_json["param_groups"],
        "optim_scalars": opt_json["scalars"],
    }
    if disc is not None and disc_optimizer is not None:
        tensors.update({f"disc.{k}": v for k, v in disc.state_dict().items()})
        d_tensors, d_json = _optimizer_parts("doptim", disc_optimizer)
        tensors.update(d_tensors)
        state.update(doptim_param_groups=d_json["param_groups"], doptim_scalars=d_json["scalars"])
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    state.update({
        "scalers": {name: scaler.state_dict() for name, scaler in (scalers or {}).items() if scaler.is_enabled()},
        "rng_torch": _rng_to_json(torch.get_rng_state()),
        "rng_cuda": [_rng_to_json(s) for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
        "best": best,
        "config": config.to_json(),
    })
    with atomic_path(run_dir / CHECKPOINT) as temporary:
        save_file(tensors, temporary, metadata={"step": str(step)})
    write_json(run_dir / CHECKPOINT_STATE, state)


def load_checkpoint(run_dir: Path, *, net: nn.Module, ema: Optional[EMA],
                    optimizer: torch.optim.Optimizer, disc: Optional[nn.Module] = None,
                    disc_optimizer: Optional[torch.optim.Optimizer] = None,
                    scalers: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Restore what save_checkpoint wrote; returns the JSON state (step, best, config).

    A damaged checkpoint (truncated, not JSON/safetensors, tensors that do not fit the
    network, NaN weights) raises one ValueError line naming the run folder."""
    try:
        return _load_checkpoint(run_dir, net=net, ema=ema, optimizer=optimizer, disc=disc,
                                disc_optimizer=disc_optimizer, scalers=scalers)
    except ValueError as exc:
        if str(exc).startswith(str(run_dir)):
            raise
        raise ValueError(f"{run_dir}: the checkpoint cannot be resumed ({first_line(exc, 300)})") from None
    except Exception as exc:  # safetensors errors, state dicts that do not fit, missing keys
        raise ValueError(f"{run_dir}: the checkpoint cannot be resumed ({type(exc).__name__}: "
                         f"{first_line(exc, 300)}); start a new run folder, or restore the files") from None


def read_checkpoint_state(run_dir: Path) -> dict[str, Any]:
    """The checkpoint's JSON state, checked to be an object with a step and a config."""
    path = run_dir / CHECKPOINT_STATE
    try:
        state = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: damaged checkpoint state ({first_line(exc, 300)}); start a new run folder, "
                         "or restore the file") from None
    if not isinstance(state, dict) or not isinstance(state.get("step"), int) or not isinstance(state.get("config"), dict):
        raise ValueError(f"{path}: damaged checkpoint state (no step or config); start a new run folder, "
                         "or restore the file")
    return state


def _load_checkpoint(run_dir: Path, *, net: nn.Module, ema: Optional[EMA],
                     optimizer: torch.optim.Optimizer, disc: Optional[nn.Module] = None,
                     disc_optimizer: Optional[torch.optim.Optimizer] = None,
                     scalers: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    from safetensors import safe_open

    state = read_checkpoint_state(run_dir)
    with safe_open(str(run_dir / CHECKPOINT), framework="pt") as handle:
        if int((handle.metadata() or {}).get("step", -1)) != state["step"]:
            raise ValueError(f"{run_dir}: {CHECKPOINT} and {CHECKPOINT_STATE} are from different steps")
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    check_finite({k: v for k, v in tensors.items() if k.startswith(("model.", "ema.", "disc."))},
                 run_dir / CHECKPOINT)

    def section(prefix):
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    net.load_state_dict(section("model."), strict=True)
    if ema is not None:
        ema_state = section("ema.")
        if not ema_state:
            raise ValueError(f"{run_dir}: checkpoint has no EMA weights; resume with the same --ema")
        ema.net.load_state_dict(ema_state, strict=True)
        ema.updates = state["ema_updates"]
    _restore_optimizer(optimizer, section("optim."), state["optim_param_groups"], state["optim_scalars"])
    if disc is not None and disc_optimizer is not None:
        disc_state = section("disc.")
        if not disc_state or "doptim_param_groups" not in state:
            raise ValueError(f"{run_dir}: checkpoint has no discriminator (not a GAN run)")
        disc.load_state_dict(disc_state, strict=True)
        _restore_optimizer(disc_optimizer, section("doptim."), state["doptim_param_groups"], state["doptim_scalars"])
    for name, scaler in (scalers or {}).items():
        saved = state.get("scalers", {}).get(name)
        if scaler.is_enabled() and saved:
            scaler.load_state_dict(saved)
    torch.set_rng_state(_rng_from_json(state["rng_torch"]))
    if state["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_rng_from_json(s) for s in state["rng_cuda"]])
    return state


def load_init_weights(net: nn.Module, path: str | Path) -> tuple[int, list[str]]:
    """Copy every tensor of ``path`` whose name and shape match into ``net``.

    For fine-tuning across scales the upsampling tail differs and is left as
    built; returns (tensors loaded, names left as built). Raises when fewer than
    half of the network's tensors match (most likely a different architecture).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such weights file: {path}")
    source, _ = read_state_dict(path)  # unwrapped (BasicSR's params_ema, ...), DDP's module. stripped
    own = net.state_dict()
    matched = {k: v for k, v in source.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if len(matched) * 2 < len(own):
        raise ValueError(f"{path}: only {len(matched)} of {len(own)} tensors match this architecture")
    net.load_state_dict(matched, strict=False)
    return len(matched), sorted(set(own) - set(matched))


def read_generator(path: str | Path) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
    """(arch, hyperparameters with scale, state dict) of a generator weights file: one of ours,
    or any layout ``sr_cli.foreign`` recognises (Real-ESRGAN, ESRGAN, EDSR; .pth or .safetensors)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such weights file: {path}")
    model = load_any(path)
    if model.arch not in ARCHS or not isinstance(model.net, nn.Module):
        raise ValueError(f"{path}: a {model.arch} model; only our architectures ({', '.join(ARCHS)}) can be trained")
    return model.arch, dict(model.params), model.net.state_dict()


def load_pretrained(net: nn.Module, config: TrainConfig) -> str:
    """Load all of ``config.pretrained_g`` into ``net`` (same arch and scale); returns the log line."""
    arch, params, state = read_generator(config.pretrained_g)
    path = config.pretrained_g
    if arch != config.arch or int(params["scale"]) != config.scale:
        raise ValueError(f"{path} is a x{params['scale']} {arch} model, this run trains a x{config.scale} "
                         f"{config.arch} (use --init for a partial start across scales)")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = first_line(exc, 200)
        shown = {k: v for k, v in params.items() if k != "scale"}
        raise ValueError(f"{path} does not fit this {arch} ({detail}); its hyperparameters: {shown}") from None
    return f"generator: {len(state)} tensors from {path}"


def load_pretrained_disc(disc: nn.Module, path: str) -> str:
    """Load a discriminator from ``path``: a run's checkpoint (its ``disc.*`` tensors) or a file of the
    discriminator's own tensors (.safetensors, or .pth as ``weights.read_state_dict`` reads them);
    every tensor must fit (ValueError). Returns the log line."""
    tensors, _ = read_state_dict(path)
    state = {k[len("disc."):]: v for k, v in tensors.items() if k.startswith("disc.")} or tensors
    try:
        disc.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path} does not fit this discriminator ({first_line(exc, 200)}); give the "
                         f"--disc and --disc-opt it was trained with") from None
    return f"discriminator: {len(state)} tensors from {path}"
