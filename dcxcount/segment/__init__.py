"""Segmentation: engines, the bundled specialist model and its training."""

from .engines import Engine, ModelNotAvailableError, kind_of_marker, load_engine, model_file
from .specialist import SpecialistModel, bundled_model_path, load_specialist, save_specialist

__all__ = ["Engine", "ModelNotAvailableError", "kind_of_marker", "load_engine", "model_file",
           "SpecialistModel", "bundled_model_path", "load_specialist", "save_specialist"]
