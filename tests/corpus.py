"""A corpus of bad inputs: every way a section image, a samplesheet, an option or a model file was tried.

Each entry builds its input in a folder and says what the user must get for
it. docs/reliability.md lists the same cases in words; tests/test_reliability.py
runs them. The images are written at test time (small synthetic sections, or
bytes cut from them), so the corpus holds no binary files.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from dcxcount.synth import SynthParams, make_section

# 256 x 256 px at 1 um: a section counted in about a second, 256 um across
# (the smallest a section may be is 100 um).
GOOD = SynthParams(shape_px=(256, 256), pixel_size_um=1.0, markers=("dcx", "neun"), seed=3)
OTHER = dataclasses.replace(GOOD, seed=4)  # another section: other counts


def good_image(params: SynthParams = GOOD) -> np.ndarray:
    """The (C, Y, X) uint16 image of a synthetic section with DCX and NeuN."""
    return make_section(params).image


def write_ome(path: Path, data: np.ndarray, names=("DCX", "NeuN"), *, pixel_size_um: float | None = 1.0,
              axes: str = "CYX") -> Path:
    metadata = {"axes": axes, "Channel": {"Name": list(names)}}
    if pixel_size_um:
        metadata.update(PhysicalSizeX=pixel_size_um, PhysicalSizeY=pixel_size_um)
    tifffile.imwrite(path, data, ome=True, metadata=metadata)
    return path


@dataclass(frozen=True)
class SectionCase:
    """A bad (or odd) section image and what its row of sections.csv must say.

    Attributes
    ----------
    build : callable
        ``build(folder, image) -> path`` writes the input (``image``: a good
        section's pixels) and returns the samplesheet's ``path`` (relative).
    status : str
        Regular expression the row's status must match (``ok``, or the reason).
    already_handled : bool
        True for cases the batch handled before issue 11 (kept as regressions).
    """

    build: Callable[[Path, np.ndarray], str]
    status: str
    already_handled: bool = False


def _ok(folder: Path, image: np.ndarray) -> str:
    write_ome(folder / "ok.ome.tif", image)
    return "ok.ome.tif"


def _zero_bytes(folder: Path, image: np.ndarray) -> str:
    (folder / "zero.tif").write_bytes(b"")
    return "zero.tif"


def _cut(folder: Path, image: np.ndarray, name: str, keep) -> str:
    whole = write_ome(folder / "whole.ome.tif", image).read_bytes()
    (folder / name).write_bytes(whole[:keep(len(whole))])
    return name


def _truncated_half(folder: Path, image: np.ndarray) -> str:
    return _cut(folder, image, "half.ome.tif", lambda n: n // 2)


def _truncated_tail(folder: Path, image: np.ndarray) -> str:
    return _cut(folder, image, "tail.ome.tif", lambda n: n - 1000)


def _not_a_tiff(folder: Path, image: np.ndarray) -> str:
    (folder / "text.tif").write_text("this is not an image\n")
    return "text.tif"


def _missing(folder: Path, image: np.ndarray) -> str:
    return "missing.ome.tif"


def _a_folder(folder: Path, image: np.ndarray) -> str:
    (folder / "a_folder.tif").mkdir()
    return "a_folder.tif"


def _no_pixel_size(folder: Path, image: np.ndarray) -> str:
    write_ome(folder / "nopixel.ome.tif", image, pixel_size_um=None)
    return "nopixel.ome.tif"


def _no_dcx(folder: Path, image: np.ndarray) -> str:
    write_ome(folder / "nodcx.ome.tif", image[1:], names=("NeuN",))
    return "nodcx.ome.tif"


def _time_series(folder: Path, image: np.ndarray) -> str:
    write_ome(folder / "series.ome.tif", np.stack([image, image]), axes="TCYX")
    return "series.ome.tif"


def _unknown_axis(folder: Path, image: np.ndarray) -> str:
    tifffile.imwrite(folder / "q.ome.tif", np.stack([image, image]), ome=True,
                     metadata={"axes": "QCYX", "PhysicalSizeX": 1.0, "PhysicalSizeY": 1.0})
    return "q.ome.tif"


def _empty_image(folder: Path, image: np.ndarray) -> str:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tifffile warns about writing an empty image
        tifffile.imwrite(folder / "empty.tif", np.zeros((0, 5), np.uint16))
    return "empty.tif"


def _nan_patch(folder: Path, image: np.ndarray) -> str:
    data = image.astype(np.float32)
    data[:, 100:200, 100:200] = np.nan  # 100 x 100 px, in every channel
    write_ome(folder / "nanpatch.ome.tif", data)
    return "nanpatch.ome.tif"


def _inf_pixels(folder: Path, image: np.ndarray) -> str:
    data = image.astype(np.float64)  # float64 is read as float32
    data[0, :5, :5] = np.inf
    data[1, -5:, -5:] = -np.inf
    write_ome(folder / "inf.ome.tif", data)
    return "inf.ome.tif"


def _nan_plane(folder: Path, image: np.ndarray) -> str:
    stack = np.stack([image, image]).astype(np.float32)
    stack[1] = np.nan  # one z-plane lost: the other still images every pixel
    write_ome(folder / "nanplane.ome.tif", stack, axes="ZCYX")
    return "nanplane.ome.tif"


def _all_nan(folder: Path, image: np.ndarray) -> str:
    write_ome(folder / "allnan.ome.tif", np.full(image.shape, np.nan, np.float32))
    return "allnan.ome.tif"


def _saturated(folder: Path, image: np.ndarray) -> str:
    write_ome(folder / "saturated.ome.tif", np.full(image.shape, 65535, np.uint16))
    return "saturated.ome.tif"


def _mostly_saturated(folder: Path, image: np.ndarray) -> str:
    data = image.copy()
    data[:, : int(0.6 * data.shape[1])] = 65535
    write_ome(folder / "clipped.ome.tif", data)
    return "clipped.ome.tif"


def _blank(folder: Path, image: np.ndarray) -> str:
    write_ome(folder / "blank.ome.tif", np.zeros_like(image))
    return "blank.ome.tif"


def _tiny(folder: Path, image: np.ndarray) -> str:
    write_ome(folder / "tiny.ome.tif", image[:, :10, :10])
    return "tiny.ome.tif"


def _huge(folder: Path, image: np.ndarray) -> str:
    """A 30,000^2 px, 2-channel header over zlib tiles of zeros: 3.6 GB of pixels in a few MB of file."""
    shape = (2, 30_000, 30_000)
    tile = np.zeros((1024, 1024), np.uint16)
    tiles = (tile for _ in range(shape[0] * 30 * 30))
    tifffile.imwrite(folder / "huge.ome.tif", tiles, shape=shape, dtype=np.uint16, tile=(1024, 1024),
                     compression="zlib", ome=True,
                     metadata={"axes": "CYX", "Channel": {"Name": ["DCX", "NeuN"]}, "PhysicalSizeX": 0.65,
                               "PhysicalSizeY": 0.65})
    return "huge.ome.tif"


SECTION_CASES: dict[str, SectionCase] = {
    "ok": SectionCase(_ok, r"ok", already_handled=True),
    "zero_bytes": SectionCase(_zero_bytes, r"^error: .*zero\.tif: the file is empty"),
    "truncated_half": SectionCase(_truncated_half, r"^error: .*half\.ome\.tif: the file is (damaged or )?cut short"),
    "truncated_tail": SectionCase(_truncated_tail, r"^error: .*tail\.ome\.tif: the file is (damaged or )?cut short"),
    "not_a_tiff": SectionCase(_not_a_tiff, r"^error: .*text\.tif: cannot read as TIFF", already_handled=True),
    "missing": SectionCase(_missing, r"^error: .*missing\.ome\.tif: no such file"),
    "a_folder": SectionCase(_a_folder, r"^error: .*a_folder\.tif: is a folder"),
    "no_pixel_size": SectionCase(_no_pixel_size, r"^error: .*nopixel\.ome\.tif: no pixel size found.*`pixel_size_um`",
                                 already_handled=True),
    "no_dcx_channel": SectionCase(_no_dcx, r"^error: .*nodcx\.ome\.tif: no channel for marker 'dcx'",
                                  already_handled=True),
    "time_series": SectionCase(_time_series, r"^error: .*series\.ome\.tif: a time series", already_handled=True),
    "unknown_axis": SectionCase(_unknown_axis, r"^error: .*q\.ome\.tif: cannot tell what axis 'Q'",
                                already_handled=True),
    "empty_image": SectionCase(_empty_image, r"^error: .*empty\.tif: the image is empty", already_handled=True),
    "nan_patch": SectionCase(_nan_patch, r"ok"),
    "inf_pixels": SectionCase(_inf_pixels, r"ok", already_handled=True),  # counted; nonfinite_px is new
    "nan_plane": SectionCase(_nan_plane, r"ok"),
    "all_nan": SectionCase(_all_nan, r"^error: .*allnan\.ome\.tif: the dcx channel \('DCX'\) has no finite pixel"),
    "saturated": SectionCase(_saturated, r"^error: .*saturated\.ome\.tif: the dcx channel \('DCX'\) is saturated"),
    "mostly_saturated": SectionCase(_mostly_saturated, r"^error: .*clipped\.ome\.tif: the dcx channel \('DCX'\) is "
                                                       r"saturated: 60% of its pixels are at 65535"),
    "blank": SectionCase(_blank, r"^error: .*blank\.ome\.tif: the dcx channel \('DCX'\) is blank: every pixel is 0"),
    "tiny": SectionCase(_tiny, r"^error: .*tiny\.ome\.tif: the image is too small .*10 x 10 px"),
    "huge": SectionCase(_huge, r"^error: .*huge\.ome\.tif: too large to count here: 30000 x 30000 px, 2 channels, "
                               r"uint16 \(3\.6 GB of pixels\) needs about [0-9.]+ GB of memory"),
}
"""Bad section images: the row's status for each, and the rest of the batch is counted."""

NONFINITE_PX = {"nan_patch": 100 * 100, "inf_pixels": 2 * 5 * 5, "nan_plane": 256 * 256}
"""nonfinite_px the counted cases with NaN or infinite pixels must report."""


# --- run-level inputs: the samplesheet, options and model files -------------------

@dataclass(frozen=True)
class RunCase:
    """A run that must stop before counting: exit status 2, one line per problem.

    Attributes
    ----------
    build : callable
        ``build(folder, good_path) -> (samplesheet, extra arguments)``: the
        samplesheet to give ``dcxcount count`` (its one row points at a good
        image) and the options after ``--out``.
    message : str
        Regular expression a line of stderr must match.
    """

    build: Callable[[Path, str], tuple[Path, list[str]]]
    message: str


def _sheet(folder: Path, text: str, name: str = "sheet.csv", encoding: str = "utf-8") -> Path:
    path = folder / name
    path.write_bytes(text.encode(encoding))
    return path


def _good_sheet(folder: Path, good: str) -> Path:
    return _sheet(folder, f"path,animal,section\n{good},m1,1\n")


def _with_options(*options: str) -> Callable[[Path, str], tuple[Path, list[str]]]:
    return lambda folder, good: (_good_sheet(folder, good), list(options))


def _with_rules(text: str) -> Callable[[Path, str], tuple[Path, list[str]]]:
    def build(folder: Path, good: str) -> tuple[Path, list[str]]:
        (folder / "rules.json").write_bytes(text.encode("latin-1"))
        return _good_sheet(folder, good), ["--stage-rules", str(folder / "rules.json")]
    return build


def _with_model(content: bytes | Callable[[Path], None], name: str) -> Callable[[Path, str], tuple[Path, list[str]]]:
    def build(folder: Path, good: str) -> tuple[Path, list[str]]:
        path = folder / name
        if callable(content):
            content(path)
        else:
            path.write_bytes(content)
        return _good_sheet(folder, good), ["--model", str(path)]
    return build


class _Payload:
    """Pickled, it runs code on loading: it writes a file named like the model plus '.pwned'."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def _pickled_code(path: Path) -> None:
    import torch

    torch.save({"encoder.weight": _Payload(f"{path}.pwned")}, path)


def _not_cellpose(path: Path) -> None:
    import torch

    torch.save({"conv.weight": torch.zeros(2, 2)}, path)


def _sheet_text(text: str, name: str = "sheet.csv", encoding: str = "utf-8"):
    return lambda folder, good: (_sheet(folder, text.replace("GOOD", good), name, encoding), [])


def _xls(folder: Path, good: str) -> tuple[Path, list[str]]:
    return _sheet_bytes(folder, "sheet.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512)), []


def _sheet_bytes(folder: Path, name: str, data: bytes) -> Path:
    (folder / name).write_bytes(data)
    return folder / name


def _out_is_a_file(folder: Path, good: str) -> tuple[Path, list[str]]:
    (folder / "taken").write_text("a file where the results folder should go")
    return _good_sheet(folder, good), ["--out", str(folder / "taken")]  # the last --out wins


def _xlsx_not_zip(folder: Path, good: str) -> tuple[Path, list[str]]:
    return _sheet(folder, f"path,animal\n{good},m1\n", name="sheet.xlsx"), []


RUN_CASES: dict[str, RunCase] = {
    # options, checked before the first section
    "section_interval_0": RunCase(_with_options("--section-interval", "0"), r"--section-interval.*0"),
    "section_interval_text": RunCase(_with_options("--section-interval", "six"), r"--section-interval.*six"),
    "hemispheres_3": RunCase(_with_options("--hemispheres", "3"), r"--hemispheres.*3"),
    "workers_0": RunCase(_with_options("--workers", "0"), r"--workers.*0"),
    "pixel_size_negative": RunCase(_with_options("--pixel-size-um", "-0.65"), r"--pixel-size-um.*-0\.65"),
    "pixel_size_nan": RunCase(_with_options("--pixel-size-um", "nan"), r"--pixel-size-um.*nan"),
    "thickness_0": RunCase(_with_options("--thickness-um", "0"), r"--thickness-um.*0"),
    "overlap_2": RunCase(_with_options("--min-overlap-fraction", "2"), r"--min-overlap-fraction.*2"),
    "signal_threshold_unknown_marker": RunCase(_with_options("--signal-threshold", "foo=auto"),
                                               r"--signal-threshold foo.*no marker 'foo'"),
    "signal_threshold_nan": RunCase(_with_options("--signal-threshold", "neun=nan"), r"--signal-threshold.*neun=nan"),
    "signal_threshold_text": RunCase(_with_options("--signal-threshold", "neun=bright"),
                                     r"--signal-threshold.*neun=bright"),
    "model_unknown_marker": RunCase(_with_options("--model", "foo=specialist"), r"--model foo.*no marker 'foo'"),
    "channel_malformed": RunCase(_with_options("--channel", "dcx"), r"--channel expects MARKER=NAME_OR_INDEX"),
    "memory_limit_not_a_size": RunCase(_with_options(), r"DCXCOUNT_MEMORY_LIMIT='lots' is not a size"),
    "out_is_a_file": RunCase(_out_is_a_file, r"--out .*taken: exists and is not a folder"),
    # --stage-rules: types and ranges
    "stub_negative": RunCase(_with_rules('{"stub_um": -8}'), r"--stage-rules .*stub_um must be a length > 0.*-8"),
    "stub_text": RunCase(_with_rules('{"stub_um": "8"}'), r"--stage-rules .*stub_um must be a length > 0.*'8'"),
    "stub_nan": RunCase(_with_rules('{"stub_um": NaN}'), r"--stage-rules .*stub_um must be .*nan"),
    "tips_fraction": RunCase(_with_rules('{"f_min_tips": 2.5}'), r"--stage-rules .*f_min_tips must be a whole number"),
    "angle_bool": RunCase(_with_rules('{"radial_max_angle_deg": true}'), r"radial_max_angle_deg must be an angle"),
    "angle_100": RunCase(_with_rules('{"radial_max_angle_deg": 100}'), r"radial_max_angle_deg must be an angle"),
    "rules_not_object": RunCase(_with_rules("[8]"), r"--stage-rules .*must be a JSON object"),
    "rules_unknown_key": RunCase(_with_rules('{"stub": 8}'), r"--stage-rules .*unknown: stub"),
    "rules_not_json": RunCase(_with_rules("stub_um = 8"), r"--stage-rules .*cannot read the stage rules"),
    "rules_not_utf8": RunCase(_with_rules('{"stub_um": 8} \xe4'), r"--stage-rules .*cannot read the stage rules"),
    # model files
    "model_random_bytes": RunCase(_with_model(os.urandom(4096), "random.pt"), r"--model: .*random\.pt: not a model"),
    "model_pickled_code": RunCase(_with_model(_pickled_code, "evil.pt"), r"--model: .*evil\.pt: refused: .*pickled"),
    "model_not_cellpose": RunCase(_with_model(_not_cellpose, "conv.pt"), r"--model: .*conv\.pt: not a cellpose 4"),
    "model_random_safetensors": RunCase(_with_model(os.urandom(4096), "random.safetensors"),
                                        r"--model: .*random\.safetensors: not a dcxcount specialist model"),
    "model_missing": RunCase(_with_options("--model", "nowhere.pt"), r"--model: model 'nowhere\.pt' is neither"),
    # samplesheets
    "sheet_missing": RunCase(lambda folder, good: (folder / "nowhere.csv", []), r"nowhere\.csv: samplesheet not found"),
    "sheet_no_animal_column": RunCase(_sheet_text("path\nGOOD\n"), r"missing required column.*animal"),
    "sheet_repeated_section": RunCase(_sheet_text("path,animal,section\nGOOD,m1,1\nGOOD,m1,1\n"),
                                      r"row 3: animal 'm1' section 1 repeats row 2"),
    "sheet_undecodable_byte": RunCase(lambda folder, good: (_sheet_bytes(
        folder, "sheet.csv", f"path,animal\n{good},m\x81us\n".encode("latin-1")), []),
        r"sheet\.csv, row 2: byte 0x81 is not text in UTF-8, Windows-1252 or Latin-1"),
    "sheet_xls": RunCase(_xls, r"sheet\.xls: an Excel 97-2003 workbook"),
    "sheet_binary": RunCase(lambda folder, good: (_sheet_bytes(folder, "sheet.csv", b"path\x00animal\x00"), []),
                            r"sheet\.csv: a binary file"),
    "sheet_xlsx_not_a_workbook": RunCase(_xlsx_not_zip, r"sheet\.xlsx: named like an Excel workbook but is not one"),
    "sheet_broken_xlsx": RunCase(lambda folder, good: (_sheet_bytes(folder, "sheet.xlsx", b"PK\x03\x04broken"), []),
                                 r"sheet\.xlsx: cannot read as an Excel workbook"),
}
"""Runs that must stop with status 2 before any section is counted, and the line that says why."""

RUN_ENV = {"memory_limit_not_a_size": {"DCXCOUNT_MEMORY_LIMIT": "lots"}}
"""Environment variables a run case sets."""

PICKLE_SENTINEL = "evil.pt.pwned"
"""The file the pickled-code model would create if it were ever unpickled."""
