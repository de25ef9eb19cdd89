"""Segmentation engines behind one call: the bundled specialist or a cellpose model.

``load_engine(name, kind=...)`` returns an object with
``segment(image, *, pixel_size_um) -> labels``. Names:

- ``"specialist"``: the bundled specialist model for the object kind.
- ``"cpsam"``: cellpose's pretrained Cellpose-SAM, from cellpose's model folder.
- a path to a ``.safetensors`` specialist model, or to a cellpose 4 model file.

A model file is code's input, not code: specialist models are safetensors,
and a cellpose file must load with ``torch.load(weights_only=True)`` (tensors
only, no pickled objects) before cellpose is given it, and cellpose's own loads
run with weights-only loading forced. A file that is not a model is refused in
one line when the engine is loaded, before any section is counted.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ..environ import patched_environ
from ..vocabulary import kind_of_marker
from .specialist import OBJECT_DIAMETER_UM, bundled_model_path, load_specialist

__all__ = ["Engine", "ModelNotAvailableError", "load_engine", "model_file", "kind_of_marker", "check_cellpose_file",
           "OBJECT_DIAMETER_UM"]


class ModelNotAvailableError(RuntimeError):
    """A requested model is not on this machine; the message says how to get it."""


class Engine(Protocol):
    def segment(self, image: np.ndarray, *, pixel_size_um: float) -> np.ndarray: ...


@dataclass
class CellposeEngine:
    """A cellpose 4 model (Cellpose-SAM or a file of the user's) run through ``CellposeModel.eval``."""

    model_path: str
    kind: str

    def segment(self, image: np.ndarray, *, pixel_size_um: float) -> np.ndarray:
        with _LOADING:  # sections counted in threads load a model once, and patch the environment one at a time
            model = _cellpose_model(self.model_path)
        diameter_px = OBJECT_DIAMETER_UM[self.kind] / pixel_size_um
        masks, _, _ = model.eval(np.asarray(image, np.float32), diameter=diameter_px)
        return np.asarray(masks, np.int32)


_LOADING = threading.Lock()


@functools.lru_cache(maxsize=4)
def _cellpose_model(path: str):
    import torch
    from cellpose import models

    with _weights_only_loads():
        return models.CellposeModel(gpu=torch.cuda.is_available(), pretrained_model=path)


@contextlib.contextmanager
def _weights_only_loads() -> Iterator[None]:
    """Make every ``torch.load`` inside refuse pickled objects.

    cellpose reads a model file twice, once without ``weights_only``; torch
    defaults to weights-only loading from 2.6 (the floor in pyproject), but
    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` in a user's environment would turn
    that off. ``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` wins over both.
    """
    with patched_environ({"TORCH_FORCE_WEIGHTS_ONLY_LOAD": "1", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": None}):
        yield


def check_cellpose_file(path: Path) -> None:
    """Refuse a file that is not a cellpose 4 model, loading it without unpickling any object.

    Raises
    ------
    ModelNotAvailableError
        When the file does not load as tensors only (random bytes, a pickled
        object, a truncated download), or holds no cellpose 4 network.
    """
    import pickle
    import zipfile

    import torch

    if not zipfile.is_zipfile(path):
        raise ModelNotAvailableError(f"{path}: not a model file (cellpose 4 models are torch archives; "
                                     "this file is not one)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as error:  # what the weights-only unpickler raises for objects
        raise ModelNotAvailableError(
            f"{path}: refused: the file holds pickled Python objects besides weights, and loading those can run "
            "code; save the model's weights only (torch.save(net.state_dict(), ...), as cellpose does)") from error
    except Exception as error:  # torch raises many types for archives that are not its own
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelNotAvailableError(f"{path}: not a model file ({type(error).__name__}: {reason[:160]})") from error
    tensors = isinstance(state, Mapping) and state and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    if not tensors or not any(key.startswith("encoder.") for key in state):
        raise ModelNotAvailableError(
            f"{path}: not a cellpose 4 model (no network weights such as cellpose 4 saves; cellpose 3 models "
            "such as cyto3 do not run in cellpose 4)")


def cellpose_weights_path() -> Path | None:
    """Where cellpose keeps Cellpose-SAM weights, if they are on this machine."""
    from cellpose import models

    for name in ("cpsam_v2", "cpsam"):
        candidate = Path(models.MODEL_DIR) / name
        if candidate.is_file() and candidate.stat().st_size > 0:
            return candidate
    return None


def model_file(name: str, *, kind: str) -> Path | None:
    """The weights file an engine name stands for (None for Cellpose-SAM weights not on this machine)."""
    if name == "specialist":
        return bundled_model_path(kind)
    if name == "cpsam":
        return cellpose_weights_path()
    return Path(os.path.expanduser(name))


@functools.lru_cache(maxsize=8)
def load_engine(name: str, *, kind: str) -> Engine:
    """Load a segmentation engine for objects of ``kind`` ("dcx" or "nuclear").

    Raises
    ------
    ModelNotAvailableError
        For ``"cpsam"`` when its weights are not on disk (cellpose would
        otherwise try to download 1.2 GB), a path that does not exist, or a
        file that is not a model (see :func:`check_cellpose_file`).
    """
    if name == "specialist":
        return load_specialist(bundled_model_path(kind))
    if name == "cpsam":
        weights = cellpose_weights_path()
        if weights is None:
            from cellpose import models

            raise ModelNotAvailableError(
                f"Cellpose-SAM weights are not on this machine (looked in {models.MODEL_DIR}). "
                "Download them once where there is internet, e.g. "
                "`python -c \"from cellpose import models; models.CellposeModel()\"`, then copy the "
                f"file 'cpsam_v2' into {models.MODEL_DIR} (or set CELLPOSE_LOCAL_MODELS_PATH to its "
                "folder); or give its path, e.g. `model=/path/to/cpsam_v2`. A GPU is advised.")
        check_cellpose_file(weights)
        return CellposeEngine(str(weights), kind)
    path = Path(os.path.expanduser(name))
    if not path.is_file():
        raise ModelNotAvailableError(
            f"model '{name}' is neither 'specialist', 'cpsam' nor an existing model file")
    if path.suffix == ".safetensors":
        try:
            return load_specialist(path)
        except Exception as error:  # safetensors, json and torch errors on a file that is not ours
            raise ModelNotAvailableError(f"{path}: not a dcxcount specialist model ({error})") from error
    check_cellpose_file(path)
    return CellposeEngine(str(path), kind)
