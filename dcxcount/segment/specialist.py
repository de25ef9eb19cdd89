"""The bundled specialist model: loading, saving and running it.

A specialist model is one :class:`~dcxcount.segment.network.FlowUNet` stored as
safetensors (no pickle, so loading a file cannot run code) with its settings in
the file's metadata: which kind of object it segments, the pixel size it was
trained at and the network widths. Images are rescaled to that pixel size, so
the network always sees cells at the size it learned.
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from cellpose import dynamics
from safetensors.torch import load_file, save_file
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .network import FlowUNet
from .rescale import nearest_resize, normalize_image, resize_image

__all__ = ["SpecialistModel", "load_specialist", "save_specialist", "bundled_model_path", "masks_from_flows",
           "OBJECT_DIAMETER_UM"]

# Typical object diameters (docs/biology.md): DCX somata 8-12 um, nuclei 7-10 um.
# They set cellpose's object size in pixels and its flow-following steps.
OBJECT_DIAMETER_UM = {"dcx": 10.0, "nuclear": 9.0}

_BUNDLED_DIR = Path(__file__).resolve().parent.parent / "models"


def bundled_model_path(kind: str) -> Path:
    """Path of the bundled specialist weights for ``kind`` ("dcx" or "nuclear")."""
    return _BUNDLED_DIR / f"specialist_{kind}.safetensors"


@dataclass
class SpecialistModel:
    """A flow network plus the settings needed to apply it.

    Attributes
    ----------
    net : FlowUNet
        The network, in eval mode.
    kind : str
        "dcx" (DCX somata, processes excluded) or "nuclear" (NeuN, DAPI, BrdU, EdU nuclei).
    pixel_size_um : float
        Pixel size the network was trained at.
    info : dict
        Free-form provenance (training command, data, metrics) stored with the weights.
    """

    net: FlowUNet
    kind: str
    pixel_size_um: float
    info: dict = field(default_factory=dict)

    def predict(self, image: np.ndarray, *, pixel_size_um: float, tile_px: int = 1024,
                overlap_px: int = 32) -> np.ndarray:
        """Flows and cell probability at the model's pixel size.

        Parameters
        ----------
        image : (Y, X) array
            One raw channel.
        pixel_size_um : float
            The image's pixel size.
        tile_px, overlap_px : int
            Tiles bound memory on large sections (a 1024 px tile needs about
            0.3 GB); the overlap is discarded, so each output pixel comes from
            a tile where it had full context. Smaller tiles cost more time:
            512 px tiles take about 1.5x as long as 1024 px ones.

        Returns
        -------
        (3, Y', X') float32
            dY, dX (cellpose's 5x flow scale) and the cell-probability logit,
            with Y', X' the image shape rescaled to the model's pixel size.
        """
        scale = pixel_size_um / self.pixel_size_um
        scaled = resize_image(normalize_image(image), scale=scale)
        return _predict_tiled(self._inference_net, scaled, tile_px=tile_px, overlap_px=overlap_px)

    @functools.cached_property
    def _inference_net(self) -> FlowUNet:
        # In eval mode a batch norm is a per-channel affine map, so folding it
        # into the convolution before it gives the same output up to float
        # rounding and saves two passes over every feature map (~20 % of the
        # network's time). ``net`` itself stays unfused so it can be trained.
        fused = copy.deepcopy(self.net).eval()
        for block in [*fused.down, *fused.merge]:
            for conv_at, norm_at in ((0, 1), (3, 4)):
                block[conv_at] = fuse_conv_bn_eval(block[conv_at], block[norm_at])
                block[norm_at] = torch.nn.Identity()
        return fused

    def segment(self, image: np.ndarray, *, pixel_size_um: float, min_area_um2: float = 15.0,
                cellprob_threshold: float = 0.0, flow_threshold: float = 0.0) -> np.ndarray:
        """Label image of the objects in ``image``, at the image's own resolution.

        ``cellprob_threshold`` and ``flow_threshold`` are passed to :func:`masks_from_flows`.
        """
        flows = self.predict(image, pixel_size_um=pixel_size_um)
        masks = masks_from_flows(flows, min_area_px=min_area_um2 / self.pixel_size_um**2,
                                 diameter_px=OBJECT_DIAMETER_UM[self.kind] / self.pixel_size_um,
                                 cellprob_threshold=cellprob_threshold,
                                 flow_threshold=flow_threshold)
        return nearest_resize(masks, shape=image.shape)


def masks_from_flows(flows: np.ndarray, *, min_area_px: float, diameter_px: float,
                     cellprob_threshold: float = 0.0, flow_threshold: float = 0.0) -> np.ndarray:
    """Cellpose's mask reconstruction from predicted flows; int32 labels.

    Parameters
    ----------
    flows : (3, Y, X) array
        dY, dX and cell-probability logit, as :meth:`SpecialistModel.predict` returns them.
    min_area_px : float
        Smaller masks are discarded.
    diameter_px : float
        Typical object diameter. Sets the number of flow-following steps by
        cellpose's own rule (200 for 30 px objects, proportionally fewer for
        smaller ones, as ``CellposeModel.eval`` does after rescaling).
    cellprob_threshold : float
        Pixels with a larger cell-probability logit are followed.
    flow_threshold : float
        Cellpose's flow-consistency check: masks whose flows, recomputed from
        the mask, differ from the predicted ones by more than this are removed.
        0 (the default here) skips it: on held-out sections it removed no mask
        of the bundled models (docs/benchmarks.md) and took more time than the
        rest of the mask step. Cellpose's default is 0.4.
    """
    niter = max(int(round(200 * diameter_px / 30)), 1)
    # cellpose builds a sparse tensor and torch warns unless told whether to
    # check it; checking is off by default, and saying so keeps the warning
    # out of every user's terminal.
    with torch.sparse.check_sparse_tensor_invariants(enable=False):
        masks = dynamics.compute_masks(flows[:2], flows[2], niter=niter, cellprob_threshold=cellprob_threshold,
                                       flow_threshold=flow_threshold, min_size=int(round(min_area_px)))
    return np.asarray(masks, dtype=np.int32)


def _predict_tiled(net: FlowUNet, image: np.ndarray, *, tile_px: int, overlap_px: int) -> np.ndarray:
    stride = net.stride
    height, width = image.shape
    out = np.zeros((3, height, width), np.float32)
    core = tile_px - 2 * overlap_px
    with torch.inference_mode():
        for y0 in range(0, height, core):
            for x0 in range(0, width, core):
                # Window with context on every side, clipped to the image, padded to the stride.
                wy0, wx0 = max(y0 - overlap_px, 0), max(x0 - overlap_px, 0)
                wy1, wx1 = min(y0 + core + overlap_px, height), min(x0 + core + overlap_px, width)
                window = image[wy0:wy1, wx0:wx1]
                pad_y = (-window.shape[0]) % stride
                pad_x = (-window.shape[1]) % stride
                window = np.pad(window, ((0, pad_y), (0, pad_x)), mode="reflect")
                tensor = torch.from_numpy(np.ascontiguousarray(window))[None, None]
                pred = net(tensor.to(memory_format=torch.channels_last))[0].numpy()
                y1, x1 = min(y0 + core, height), min(x0 + core, width)
                out[:, y0:y1, x0:x1] = pred[:, y0 - wy0:y1 - wy0, x0 - wx0:x1 - wx0]
    return out


def save_specialist(model: SpecialistModel, path: str | Path) -> Path:
    """Write weights and settings to a safetensors file (and a JSON model card beside it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    settings = {"kind": model.kind, "pixel_size_um": model.pixel_size_um,
                "widths": list(model.net.widths)}
    state = {k: v.detach().cpu().contiguous() for k, v in model.net.state_dict().items()}
    save_file(state, str(path), metadata={"dcxcount": json.dumps(settings)})
    card = {**settings, **model.info}
    path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return path


def load_specialist(path: str | Path) -> SpecialistModel:
    """Load a specialist model written by :func:`save_specialist`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such specialist model file")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if "dcxcount" not in metadata:
        raise ValueError(f"{path}: not a dcxcount specialist model (no 'dcxcount' metadata)")
    settings = json.loads(metadata["dcxcount"])
    net = FlowUNet(widths=tuple(settings["widths"]))
    net.load_state_dict(load_file(str(path)))
    net.eval().to(memory_format=torch.channels_last)
    card_path = path.with_suffix(".json")
    info = json.loads(card_path.read_text()) if card_path.is_file() else {}
    return SpecialistModel(net=net, kind=settings["kind"],
                           pixel_size_um=float(settings["pixel_size_um"]), info=info)
