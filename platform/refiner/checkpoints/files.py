"""Checkpoints: the orchestrator's full state in one file, safe to load.

Contents: model weights and config, orchestration config, step count, recent losses and
gradient norms, edit performance, Grokfast state, memory bank, optimizer, LR scheduler,
RNG states (torch, CUDA, numpy, python) and a caller's `extra` dict (e.g. data epoch).
With an EMA of the weights (`ema_decay`) the model weights are the average, what every
reader evaluates, and the live weights are kept beside them for resuming.

Only tensors and plain containers are stored (configs as dicts), so files load with
`torch.load(weights_only=True)`, which refuses pickled code. Writes go to a temporary
file that is renamed into place, so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from refiner.checkpoints.upgrades import upgrade_state
from refiner.config.sections import ConfigError, ModelConfig, OrchestrationConfig
from refiner.train.interface import Orchestrator

FORMAT = "refiner-checkpoint"
FORMAT_VERSION = 1
CHECKPOINT_FILE = "checkpoint.pt"  # in a checkpoint folder: weights and training state
CONFIG_FILE = "config.yaml"  # beside it: the run config the training loop writes
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written, read or applied; the message says why."""


def save_checkpoint(
    path: str | Path,
    orchestrator: Orchestrator,
    optimizer: torch.optim.Optimizer | None = None,
    lr_scheduler: Any = None,
    extra: dict | None = None,
) -> Path:
    """Atomically write the full training state to `path`; returns the path."""
    path = Path(path)
    state = orchestrator.state_dict()
    for key, tensor in state["model"].items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(
                f"refusing to save {path}: model weight {key!r} has non-finite values"
            )
    extra = dict(extra or {})
    _check_plain(extra, "extra")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "torch_version": str(torch.__version__),  # TorchVersion would not load safely
        "orchestrator": state,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "lr_scheduler": lr_scheduler.state_dict() if lr_scheduler is not None else None,
        "rng": _rng_state(),
        "extra": extra,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(
    path: str | Path,
    orchestrator: Orchestrator,
    optimizer: torch.optim.Optimizer | None = None,
    lr_scheduler: Any = None,
) -> dict:
    """Restore everything `save_checkpoint` wrote into existing objects; returns `extra`.

    The orchestrator keeps its own config; model shapes must match the checkpoint.
    """
    payload = read_checkpoint(path)
    state = payload["orchestrator"]
    check_model_shapes(state["model"], orchestrator.core.state_dict(), path)
    for name, obj in (("optimizer", optimizer), ("lr_scheduler", lr_scheduler)):
        if obj is not None and payload[name] is None:
            raise CheckpointError(f"{path}: has no {name} state, but one was passed to restore")
    try:
        # with an optimizer this resumes training (an EMA run's live weights come back)
        orchestrator.load_state_dict(state, resume_training=optimizer is not None)
        if optimizer is not None:
            optimizer.load_state_dict(payload["optimizer"])
        if lr_scheduler is not None:
            lr_scheduler.load_state_dict(payload["lr_scheduler"])
    except (KeyError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: does not fit these objects: {err}") from None
    _set_rng_state(payload["rng"])
    return payload["extra"]


def read_checkpoint(path: str | Path) -> dict:
    """Load and validate a checkpoint file without applying it; its orchestrator state
    upgraded to today's (refiner.checkpoints.upgrades)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise CheckpointError(f"{path}: empty file (truncated write?)")
    if head == _ZIP_MAGIC:
        _check_crc(path)  # torch.load does not: flipped bytes would load as wrong weights
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
        if "Unsupported global" in str(err):  # the weights-only unpickler met a class or function
            raise CheckpointError(
                f"{path}: refused: it holds pickled objects other than tensors and plain "
                "containers (loading them could run arbitrary code)"
            ) from None
        if head != _ZIP_MAGIC:
            raise CheckpointError(
                f"{path}: not a checkpoint file (torch.save writes a zip archive)"
            ) from None
        raise CheckpointError(
            f"{path}: truncated or corrupt checkpoint ({_first_line(err)})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a refiner checkpoint (no {FORMAT!r} format marker)")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r}; this code reads version {FORMAT_VERSION}"
        )
    if not isinstance(payload.get("orchestrator"), dict):
        raise CheckpointError(f"{path}: has no orchestrator state")
    try:  # older states gain what they lack (refiner.checkpoints.upgrades)
        upgrade_state(payload["orchestrator"])
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from None
    return payload


def checkpoint_configs(path: str | Path) -> tuple[ModelConfig, OrchestrationConfig]:
    """The model and orchestration configs stored in a checkpoint (to rebuild the objects)."""
    return stored_configs(read_checkpoint(path)["orchestrator"], path)


def stored_configs(
    state: dict, path: str | Path = "checkpoint"
) -> tuple[ModelConfig, OrchestrationConfig]:
    """`checkpoint_configs` of a checkpoint already read (its "orchestrator" entry)."""
    try:
        return ModelConfig.from_dict(state["model_config"]), OrchestrationConfig.from_dict(
            state["config"]
        )
    except ConfigError as err:
        raise CheckpointError(f"{path}: stored config is invalid: {err}") from None


def check_model_shapes(saved: dict, current: dict, path: str | Path = "checkpoint") -> None:
    """Raise CheckpointError naming the first missing, unexpected or mis-shaped weight."""
    missing = [k for k in current if k not in saved]
    if missing:
        raise CheckpointError(f"{path}: model weight {missing[0]!r} missing from the checkpoint")
    unexpected = [k for k in saved if k not in current]
    if unexpected:
        raise CheckpointError(
            f"{path}: checkpoint has model weight {unexpected[0]!r} this model lacks"
        )
    for key, tensor in current.items():
        if saved[key].shape != tensor.shape:
            raise CheckpointError(
                f"{path}: model weight {key!r} has shape {tuple(saved[key].shape)} in the checkpoint, "
                f"{tuple(tensor.shape)} in this model (different ModelConfig?)"
            )


def _rng_state() -> dict:
    np_state = cast("tuple[Any, ...]", np.random.get_state(legacy=True))  # legacy: a tuple
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [
            np_state[0],
            torch.from_numpy(np_state[1].astype(np.int64)),
            *map(float, np_state[2:]),
        ],
        "python": random.getstate(),
    }


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _check_plain(value: Any, where: str) -> None:
    """`extra` must load under weights_only: tensors and plain containers only."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise CheckpointError(
                    f"{where}: keys must be strings, got {type(k).__name__} {k!r}"
                )
            _check_plain(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
    elif not (value is None or isinstance(value, (bool, int, float, str, torch.Tensor))):
        raise CheckpointError(
            f"{where}: {type(value).__name__} cannot be stored (use plain types or tensors)"
        )


def _check_crc(path: Path) -> None:
    """Every member of the zip archive matches the CRC-32 that torch.save recorded."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise CheckpointError(
            f"{path}: truncated or corrupt checkpoint ({_first_line(err)})"
        ) from None
    if bad is not None:
        raise CheckpointError(f"{path}: corrupt checkpoint: {bad!r} fails its CRC-32 check")


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
