"""The nuclear specialist model on a real fluorescence image with expert instance masks.

The image and its masks ship inside the ``stardist`` wheel from PyPI
(``stardist/data/images/img2d.tif`` and ``mask2d.tif``, what
``stardist.data.test_image_nuclei_2d(return_mask=True)`` returns): one 512 x 512 px
fluorescence image of cultured-cell nuclei from the 2018 Data Science Bowl
(Caicedo et al., Nature Methods 16, 1247-1253, 2019; BBBC038v1, released CC0), with
125 annotated nuclei. Nothing is downloaded at run time, and stardist is never
imported (that would pull in its TensorFlow-facing modules): the files are found
through the installed distribution's metadata. ``pip install -e ".[test]"`` installs
it (stardist's own requirements are csbdeep, numba, scikit-image and imageio, no
TensorFlow). These images are never used for training.

**Pixel size.** The file carries none (its resolution tags are 1/1, no unit), and DSB
2018 does not publish one per image. The nominal pixel size is fixed by a rule chosen
before any score was seen: the median true nucleus (equivalent diameter 23.67 px)
is taken to be as large as the nuclei the model is built for, 9 um
(``OBJECT_DIAMETER_UM["nuclear"]``), so 9 / 23.67 = 0.380 um per pixel. That puts the
nuclei at the size the model would see them in a section whose pixel size is known.
``--pixel-size-um`` scans other assumptions; the scan is reported beside the nominal
value, never used to pick it.

**Scores.** Detection: centroids matched one to one within half the median true
diameter (11.8 px, 4.5 um at the nominal pixel size; the distance is fixed in pixels
so a pixel-size scan does not change what counts as a match), pooled into precision,
recall and F1 (``dcxcount.metrics.match_centroids``). Segmentation: cellpose's average
precision at IoU 0.5 (``dcxcount.metrics.average_precision``). All 125 annotated
nuclei count, including the 13 cut by the image border.

Usage::

    python benchmarks/real_nuclei.py                         # bundled nuclear model, nominal pixel size
    python benchmarks/real_nuclei.py --model new.safetensors # compare a retrained model with the bundled one
    python benchmarks/real_nuclei.py --pixel-size-um 0.3 0.38 0.45 0.6   # scan the assumed pixel size
    python benchmarks/real_nuclei.py --overlay overlay.png   # also draw truth (green) and found (magenta) outlines

Prints a markdown table, one row per model and pixel size.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import time
from pathlib import Path

import numpy as np
import tifffile
from skimage.measure import regionprops

from dcxcount.metrics import average_precision, label_centroids_um, match_centroids
from dcxcount.segment.engines import OBJECT_DIAMETER_UM
from dcxcount.segment.specialist import bundled_model_path, load_specialist

__all__ = ["load_dsb2018_nuclei", "median_diameter_px", "nominal_pixel_size_um", "evaluate", "TABLE_HEADER"]

DATA_PACKAGE = "stardist"
IMAGE_FILE = "stardist/data/images/img2d.tif"
MASK_FILE = "stardist/data/images/mask2d.tif"

TABLE_HEADER = ("| model | pixel size (um, assumed) | F1 | precision | recall | AP@IoU 0.5 | true | found | matched "
                "| seconds |\n|---|---|---|---|---|---|---|---|---|---|")


def load_dsb2018_nuclei() -> tuple[np.ndarray, np.ndarray]:
    """The DSB 2018 image (uint16, 512 x 512) and its instance masks (int32) from the stardist wheel.

    Raises
    ------
    importlib.metadata.PackageNotFoundError
        When stardist is not installed (``pip install -e ".[test]"`` or ``pip install stardist``).
    FileNotFoundError
        When the installed stardist does not ship the files.
    """
    distribution = importlib.metadata.distribution(DATA_PACKAGE)
    paths = [Path(distribution.locate_file(name)) for name in (IMAGE_FILE, MASK_FILE)]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not in the installed {DATA_PACKAGE} {distribution.version}")
    image, masks = (tifffile.imread(path) for path in paths)
    return image, masks.astype(np.int32)


def median_diameter_px(labels: np.ndarray) -> float:
    """Median equivalent-circle diameter of the labelled objects, in pixels."""
    return float(np.median([region.equivalent_diameter_area for region in regionprops(labels)]))


def nominal_pixel_size_um(labels: np.ndarray) -> float:
    """Pixel size at which the median true nucleus is the model's nuclear diameter (9 um)."""
    return OBJECT_DIAMETER_UM["nuclear"] / median_diameter_px(labels)


def evaluate(model_path: str | Path, image: np.ndarray, truth: np.ndarray, *, pixel_size_um: float,
             max_distance_px: float) -> dict:
    """Segment ``image`` with a specialist model and score it against ``truth``.

    Returns a dict with the :class:`~dcxcount.metrics.Detection` (``detection``), ``f1``,
    ``precision``, ``recall``, ``ap50``, ``n_true``, ``n_found``, ``n_matched``, ``seconds``
    and the predicted ``labels``.
    """
    model = load_specialist(model_path)
    started = time.perf_counter()
    labels = model.segment(image, pixel_size_um=pixel_size_um)
    seconds = time.perf_counter() - started
    detection, pairs = match_centroids(label_centroids_um(labels, pixel_size_um=1.0),
                                       label_centroids_um(truth, pixel_size_um=1.0),
                                       max_distance_um=max_distance_px)  # both in pixels here
    return {"detection": detection, "f1": detection.f1, "precision": detection.precision,
            "recall": detection.recall, "ap50": average_precision(labels, truth, iou=0.5),
            "n_true": int(len(np.unique(truth)) - 1), "n_found": int(len(np.unique(labels)) - 1),
            "n_matched": int(len(pairs)), "seconds": seconds, "labels": labels}


def table_row(name: str, pixel_size_um: float, row: dict, *, nominal: bool) -> str:
    size = f"{pixel_size_um:.3f}" + (" (nominal)" if nominal else "")
    return (f"| {name} | {size} | {row['f1']:.3f} | {row['precision']:.3f} | {row['recall']:.3f} "
            f"| {row['ap50']:.3f} | {row['n_true']} | {row['n_found']} | {row['n_matched']} | {row['seconds']:.1f} |")


def save_overlay(path: str, image: np.ndarray, truth: np.ndarray, found: np.ndarray) -> None:
    """PNG of the image with true (green) and found (magenta) outlines."""
    from skimage.io import imsave
    from skimage.segmentation import find_boundaries

    low, high = np.percentile(image, [1, 99.8])
    grey = np.clip((image.astype(np.float32) - low) / max(high - low, 1e-6), 0, 1)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    rgb[find_boundaries(truth, mode="inner")] = (0.0, 1.0, 0.0)
    rgb[find_boundaries(found, mode="inner")] = (1.0, 0.0, 1.0)
    imsave(path, (rgb * 255).astype(np.uint8), check_contrast=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[],
                        help="specialist .safetensors to score beside the bundled nuclear model (repeatable)")
    parser.add_argument("--no-bundled", action="store_true", help="score only the --model files")
    parser.add_argument("--pixel-size-um", type=float, nargs="+", default=None,
                        help="assumed pixel sizes to scan (default: the nominal one, 9 um / median true diameter)")
    parser.add_argument("--overlay", help="PNG of truth and found outlines (first model, first pixel size)")
    args = parser.parse_args()

    image, truth = load_dsb2018_nuclei()
    diameter_px = median_diameter_px(truth)
    nominal = nominal_pixel_size_um(truth)
    max_distance_px = diameter_px / 2
    models = ([] if args.no_bundled else [("bundled nuclear", bundled_model_path("nuclear"))])
    models += [(Path(path).name, path) for path in args.model]
    sizes = args.pixel_size_um or [nominal]
    print(f"DSB 2018 image from {DATA_PACKAGE} {importlib.metadata.version(DATA_PACKAGE)}: {image.shape[1]} x "
          f"{image.shape[0]} px, {len(np.unique(truth)) - 1} nuclei, median diameter {diameter_px:.2f} px; "
          f"nominal pixel size {nominal:.3f} um; match within {max_distance_px:.1f} px\n")
    print(TABLE_HEADER)
    for index, (name, path) in enumerate(models):
        for size_index, pixel_size_um in enumerate(sizes):
            row = evaluate(path, image, truth, pixel_size_um=pixel_size_um, max_distance_px=max_distance_px)
            print(table_row(name, pixel_size_um, row, nominal=abs(pixel_size_um - nominal) < 5e-4), flush=True)
            if args.overlay and index == 0 and size_index == 0:
                save_overlay(args.overlay, image, truth, row["labels"])


if __name__ == "__main__":
    main()
