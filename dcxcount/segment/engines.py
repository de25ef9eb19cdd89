"""Segmentation engines behind one call: the bundled specialist or a cellpose model.

``load_engine(name, kind=...)`` returns an object with
``segment(image, *, pixel_size_um) -> labels``. Names:

- ``"specialist"``: the bundled specialist model for the object kind.
- ``"cpsam"``: cellpose's pretrained Cellpose-SAM, from cellpose's model folder.
- a path to a ``.safetensors`` specialist model, or to a cellpose 4 model file.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from .specialist import OBJECT_DIAMETER_UM, bundled_model_path, load_specialist

__all__ = ["Engine", "ModelNotAvailableError", "load_engine", "kind_of_marker", "OBJECT_DIAMETER_UM"]


class ModelNotAvailableError(RuntimeError):
    """A requested model is not on this machine; the message says how to get it."""


class Engine(Protocol):
    def segment(self, image: np.ndarray, *, pixel_size_um: float) -> np.ndarray: ...


def kind_of_marker(marker: str) -> str:
    """Object kind a marker's stain labels: DCX somata or nuclei (every other marker)."""
    return "dcx" if marker == "dcx" else "nuclear"


@dataclass
class CellposeEngine:
    """A cellpose 4 model (Cellpose-SAM or a file of the user's) run through ``CellposeModel.eval``."""

    model_path: str
    kind: str

    def segment(self, image: np.ndarray, *, pixel_size_um: float) -> np.ndarray:
        model = _cellpose_model(self.model_path)
        diameter_px = OBJECT_DIAMETER_UM[self.kind] / pixel_size_um
        masks, _, _ = model.eval(np.asarray(image, np.float32), diameter=diameter_px)
        return np.asarray(masks, np.int32)


@functools.lru_cache(maxsize=4)
def _cellpose_model(path: str):
    import torch
    from cellpose import models

    return models.CellposeModel(gpu=torch.cuda.is_available(), pretrained_model=path)


def cellpose_weights_path() -> Path | None:
    """Where cellpose keeps Cellpose-SAM weights, if they are on this machine."""
    from cellpose import models

    for name in ("cpsam_v2", "cpsam"):
        candidate = Path(models.MODEL_DIR) / name
        if candidate.is_file() and candidate.stat().st_size > 0:
            return candidate
    return None


@functools.lru_cache(maxsize=8)
def load_engine(name: str, *, kind: str) -> Engine:
    """Load a segmentation engine for objects of ``kind`` ("dcx" or "nuclear").

    Raises
    ------
    ModelNotAvailableError
        For ``"cpsam"`` when its weights are not on disk (cellpose would
        otherwise try to download 1.2 GB), or a path that does not exist.
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
                "folder); or pass its path: --model /path/to/cpsam_v2. A GPU is advised.")
        return CellposeEngine(str(weights), kind)
    path = Path(os.path.expanduser(name))
    if not path.is_file():
        raise ModelNotAvailableError(
            f"model '{name}' is neither 'specialist', 'cpsam' nor an existing model file")
    if path.suffix == ".safetensors":
        return load_specialist(path)
    return CellposeEngine(str(path), kind)
