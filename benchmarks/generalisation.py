"""Do counts hold on looks the models never saw? Leave-one-family-out and held-out settings.

Every section is counted by the whole pipeline (`dcxcount.pipeline.count_section`, DCX,
NeuN and, with ``--dapi``, DAPI) and scored against the generator's truth. Three sets of
held-out sections, each at two DCX densities (60 and 150 cells per mm SGZ), each a small
per-animal study (by default 3 animals x 2 sections of 1024^2 px, drawn with DCX, NeuN and
DAPI channels; DAPI, which no figure uses, is counted only with ``--dapi``):

``lofo``
    Every appearance family (`dcxcount.appearance.FAMILIES`) drawn from its *training*
    ranges (``split="train"``). Counted with the control model trained on all families
    (``lofo_none``) and with each leave-one-family-out model ``lofo_F``, trained with every
    family but F (F kept at the plain look). The sections are the same for every model,
    so "control vs lofo_F" is a paired comparison: the only novelty for ``lofo_F`` is
    family F. A family that does not touch a kind of object (nuclei: DCX; soma and
    processes: nuclear) has no model of that kind left out; the control's is used.
``unseen``
    Every family drawn from its *held-out* bands (``split="test"``), values no training run
    could draw. Counted with the plain models (before) and the all-families models (after).
``default``
    The plain look (a default `SynthParams`, 0.5 um pixels). Plain vs all-families
    models: on the look the plain models were made for, no figure should get worse.

A fourth set, ``tracing``, needs no model: the DCX processes are traced and staged from
the *true* somata and GCL, on sections where one family at a time is drawn from its
held-out band (and on the plain look, "none"), to tell which look breaks the tracing
rather than the segmentation. Every counted set also reports this tracing-alone accuracy
on its own sections.

Seeds: set ``lofo`` uses 700_000 + 100 x density + i, ``unseen`` 740_000 + ...,
``default`` 780_000 + ..., ``tracing`` 820_000 + ... (the same seeds for every family;
i = animal x sections per animal + section; densities below 400 per mm). The knobs are
drawn from ``numpy.random.default_rng(seed)``. Training draws its section seeds as
``default_rng(0).integers(2**31) + index``; `training_seeds` repeats those draws for the
32-section training runs of the bundled and leave-one-family-out models, and the run stops
if any benchmark seed is one of them.

Figures per condition (set, model, density), pooled over the condition's sections:

- DCX F1 and NeuN F1: centroids matched one-to-one within 5 um;
- soma split rate: true DCX somata covered by two or more detected objects
  (`dcxcount.metrics.soma_split_rate`);
- false somata on processes per mm SGZ: unmatched DCX objects whose centroid lies within
  2 um of a true process (`dcxcount.metrics.false_somata_on_processes`), over the SGZ
  length in the field;
- per-animal DCX count error |found - true| / true, counting every DCX object in the
  field (not only the counted region), mean and worst over animals;
- stage (A-F) and stage-group accuracy on detected DCX cells matched to an untruncated
  true cell, on all of them and on those not flagged ``stage_doubtful``;
- the 6 x 6 stage confusion matrix of those cells (JSON only; rows true A-F, columns found);
- per animal, the share of DCX objects in each stage group (proliferative, intermediate,
  postmitotic) found vs true; the worst absolute difference, in percentage points, over
  groups and animals.

Usage::

    python benchmarks/generalisation.py                       # the full run (~25 min, 2 cores)
    python benchmarks/generalisation.py --quick               # a smoke run
    python benchmarks/generalisation.py --sets unseen default --cache /tmp/gen-cache

It prints markdown tables and writes the figures, per animal and per section, to
``benchmarks/results/generalisation.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import pickle
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dcxcount.appearance import FAMILIES, sample_params
from dcxcount.features import process_features
from dcxcount.gcl import frame_from_gcl
from dcxcount.io import Section
from dcxcount.metrics import Detection, false_somata_on_processes, match_centroids, soma_split_rate
from dcxcount.pipeline import CountSettings, count_section
from dcxcount.staging import stage_cells
from dcxcount.synth import SynthParams, SynthSection, make_section
from dcxcount.vocabulary import STAGE_GROUPS

REPO = Path(__file__).resolve().parents[1]
SEED_BASE = {"lofo": 700_000, "unseen": 740_000, "default": 780_000, "tracing": 820_000}
SPLIT = {"lofo": "train", "unseen": "test", "default": None, "tracing": "test"}
# The appearance families that change how each kind of object looks.
TOUCHES = {"dcx": ("soma", "processes", "background", "camera", "scale"),
           "nuclear": ("nuclei", "background", "camera", "scale")}
GROUPS = ("proliferative", "intermediate", "postmitotic")
STAGES = ("A", "B", "C", "D", "E", "F")
MATCH_UM = 5.0
PROCESS_UM = 2.0
# Training runs whose seeds the benchmark's must avoid: (sections, families), training seed 0.
TRAINING_RUNS = ((32, FAMILIES),) + tuple((32, tuple(f for f in FAMILIES if f != left)) for left in FAMILIES)


# --------------------------------------------------------------------------- sections


def section_seed(set_name: str, density: float, index: int) -> int:
    """Seed of section ``index`` of a set at one density (see the module docstring)."""
    if not 0 <= density < 400 or not 0 <= index < 100:
        raise ValueError("seeds are laid out for densities below 400 per mm and at most 100 sections")
    return SEED_BASE[set_name] + 100 * int(round(density)) + index


def study_params(set_name: str, *, density: float, n_sections: int, size_px: int,
                 families: Sequence[str] = FAMILIES) -> list[SynthParams]:
    """The `SynthParams` of a set's sections at one density (appearance knobs drawn, if any).

    ``families`` are the families drawn (the set ``tracing`` draws one at a time).
    """
    out = []
    for index in range(n_sections):
        seed = section_seed(set_name, density, index)
        base = SynthParams(shape_px=(size_px, size_px), markers=("dcx", "neun", "dapi"),
                           dcx_per_mm_sgz=float(density), seed=seed)
        split = SPLIT[set_name]
        out.append(base if split is None or not families else
                   sample_params(base, np.random.default_rng(seed), families=families, split=split))
    return out


def training_seeds(*, n_sections: int, families: Sequence[str], seed: int = 0) -> set[int]:
    """The section seeds `dcxcount.segment.training.synthetic_samples` draws (its draws, repeated)."""
    rng = np.random.default_rng(seed)
    seeds = set()
    for index in range(n_sections):
        rng.uniform(60, 300), rng.uniform(0.2, 0.6), rng.uniform(0.1, 0.5)
        section_seed_ = int(rng.integers(2**31)) + index
        seeds.add(section_seed_)
        sample_params(SynthParams(seed=section_seed_), rng, families=families, split="train")
    return seeds


def check_seeds_held_out(params: Sequence[SynthParams]) -> None:
    """Stop if any section seed is one a documented training run drew."""
    used = set().union(*(training_seeds(n_sections=n, families=f) for n, f in TRAINING_RUNS))
    clash = sorted(p.seed for p in params if p.seed in used)
    if clash:
        raise RuntimeError(f"benchmark seeds {clash} were drawn by training")


def _cached(cache: Path | None, key: str, make):
    if cache is None:
        return make()
    path = cache / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    value = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".tmp").write_bytes(pickle.dumps(value))
    path.with_suffix(".tmp").replace(path)
    return value


# --------------------------------------------------------------------------- one section


def _model_key(name: str) -> str:
    path = Path(name)
    if not path.is_file():
        return name
    return f"{path.resolve()}:{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}"


def score_section(synth: SynthSection, models: dict[str, str], *, dapi: bool = False) -> dict:
    """Count one synthetic section with ``models`` (kind -> engine name or path) and score it.

    Returns the raw numbers of the section (pooled later): detections, split and
    false-soma counts, SGZ length, DCX counts, the stage-group counts found and true,
    and the matched untruncated cells' stages.
    """
    channels = [0, 1, 2] if dapi else [0, 1]
    section = Section(path="synthetic", data=synth.image[channels],
                      channel_names=tuple(synth.channel_names[i] for i in channels),
                      pixel_size_um=synth.pixel_size_um, pixel_size_source="synthetic", projection="none")
    settings = CountSettings(marker_models={"dcx": models["dcx"], "neun": models["nuclear"],
                                            "dapi": models["nuclear"]})
    started = time.perf_counter()
    result = count_section(section, settings=settings)
    seconds = time.perf_counter() - started
    px = synth.pixel_size_um
    record: dict = {"seed": synth.params.seed, "pixel_size_um": px, "seconds": seconds}
    for marker in ("dcx", "neun"):
        found = result.cells[result.cells["marker"] == marker].reset_index(drop=True)
        real = synth.cells[synth.cells["marker"] == marker].reset_index(drop=True)
        detection, pairs = match_centroids(found[["x_um", "y_um"]].to_numpy(), real[["x_um", "y_um"]].to_numpy(),
                                           max_distance_um=MATCH_UM)
        record[marker] = dataclasses.astuple(detection)
        if marker == "dcx":
            dcx_found, dcx_real, dcx_pairs = found, real, pairs
    true_somata = int(len(np.unique(synth.labels["dcx"])) - 1)
    record["true_somata"] = true_somata
    record["split_somata"] = int(round(soma_split_rate(result.labels["dcx"], synth.labels["dcx"]) * true_somata)
                                 if true_somata else 0)
    record["false_on_processes"] = false_somata_on_processes(
        result.labels["dcx"], synth.labels["dcx"], synth.processes, pixel_size_um=px,
        max_distance_um=PROCESS_UM, match_distance_um=MATCH_UM)
    record["sgz_length_um"] = float(synth.info["sgz_length_um"])
    record["dcx_found"], record["dcx_true"] = len(dcx_found), len(dcx_real)
    found_groups = dcx_found["stage"].map(STAGE_GROUPS)
    record["groups_found"] = [int((found_groups == g).sum()) for g in GROUPS]
    record["groups_true"] = [int((dcx_real["stage_group"] == g).sum()) for g in GROUPS]
    matched = dcx_found.iloc[dcx_pairs[:, 0]].reset_index(drop=True)
    expected = dcx_real.iloc[dcx_pairs[:, 1]].reset_index(drop=True)
    whole = ~expected["truncated"].astype(bool).to_numpy()
    record["stages"] = {"truth": expected["stage"][whole].tolist(), "found": matched["stage"][whole].tolist(),
                        "doubtful": matched["stage_doubtful"].astype(bool)[whole].tolist()}
    return record


def trace_true_somata(synth: SynthSection) -> dict:
    """Stages traced from the *true* somata and GCL of a section: the tracing alone, no model.

    Returns the true and found stages of the untruncated true DCX cells.
    """
    frame = frame_from_gcl(synth.gcl_mask, pixel_size_um=synth.pixel_size_um)
    somata = synth.labels["dcx"]
    features = process_features(synth.image[synth.params.markers.index("dcx")], somata, frame)
    found = stage_cells(features, gcl_thickness_um=frame.thickness_um)["stage"]
    real = synth.cells[synth.cells["marker"] == "dcx"].set_index("cell_id")
    real = real[~real["truncated"].astype(bool)]
    found = found.reindex(real.index)
    return {"truth": real["stage"].tolist(), "found": found.tolist()}


# --------------------------------------------------------------------------- pooling


def _stage_accuracies(truth: pd.Series, found: pd.Series) -> tuple[float, float]:
    if not len(truth):
        return float("nan"), float("nan")
    stage = float((truth == found).mean())
    group = float((truth.map(STAGE_GROUPS) == found.map(STAGE_GROUPS)).mean())
    return stage, group


def summarise(records: Sequence[dict], *, sections_per_animal: int) -> dict:
    """The condition's figures from its sections' records (in animal order)."""
    dcx = sum((Detection(*r["dcx"]) for r in records), Detection(0, 0, 0))
    neun = sum((Detection(*r["neun"]) for r in records), Detection(0, 0, 0))
    stages = pd.DataFrame({k: sum((r["stages"][k] for r in records), []) for k in ("truth", "found", "doubtful")})
    clear = stages[~stages["doubtful"].astype(bool)]
    stage, group = _stage_accuracies(stages["truth"], stages["found"])
    stage_clear, group_clear = _stage_accuracies(clear["truth"], clear["found"])
    animals = []
    for first in range(0, len(records), sections_per_animal):
        part = records[first:first + sections_per_animal]
        found, real = sum(r["dcx_found"] for r in part), sum(r["dcx_true"] for r in part)
        groups_found = np.sum([r["groups_found"] for r in part], axis=0)
        groups_true = np.sum([r["groups_true"] for r in part], axis=0)
        share_found = 100 * groups_found / max(groups_found.sum(), 1)
        share_true = 100 * groups_true / max(groups_true.sum(), 1)
        animals.append({"dcx_found": int(found), "dcx_true": int(real),
                        "count_error": abs(found - real) / real if real else float("nan"),
                        "group_share_found_pct": share_found.round(2).tolist(),
                        "group_share_true_pct": share_true.round(2).tolist(),
                        "group_share_worst_pp": float(np.abs(share_found - share_true).max())})
    true_somata = sum(r["true_somata"] for r in records)
    sgz_mm = sum(r["sgz_length_um"] for r in records) / 1000
    return {
        "sections": len(records),
        "dcx_f1": dcx.f1, "dcx_precision": dcx.precision, "dcx_recall": dcx.recall,
        "neun_f1": neun.f1,
        "soma_split_rate": sum(r["split_somata"] for r in records) / true_somata if true_somata else float("nan"),
        "false_somata_on_processes_per_mm": sum(r["false_on_processes"] for r in records) / sgz_mm,
        "count_error_mean": float(np.mean([a["count_error"] for a in animals])),
        "count_error_worst": float(np.max([a["count_error"] for a in animals])),
        "staged_cells": len(stages), "stage_accuracy": stage, "group_accuracy": group,
        "unflagged_cells": len(clear), "stage_accuracy_unflagged": stage_clear,
        "group_accuracy_unflagged": group_clear,
        "group_share_worst_pp": float(np.max([a["group_share_worst_pp"] for a in animals])),
        "stage_confusion": pd.crosstab(pd.Categorical(stages["truth"], STAGES), pd.Categorical(stages["found"], STAGES),
                                       dropna=False).to_numpy().tolist(),
        "seconds_per_section": float(np.mean([r["seconds"] for r in records])),
        **_true_somata_accuracies(records),
        "animals": animals,
    }


def _true_somata_accuracies(records: Sequence[dict]) -> dict:
    if not all("traced_from_truth" in r for r in records):
        return {}
    pooled = pd.DataFrame({k: sum((r["traced_from_truth"][k] for r in records), []) for k in ("truth", "found")})
    stage, group = _stage_accuracies(pooled["truth"], pooled["found"])
    return {"true_somata_cells": len(pooled), "stage_accuracy_true_somata": stage,
            "group_accuracy_true_somata": group}


def trace_study(params: Sequence[SynthParams], *, cache: Path | None = None) -> dict:
    """Stage accuracy of the tracing alone (`trace_true_somata`) pooled over sections."""
    records = [{"traced_from_truth": _cached(cache, "traced " + repr(p),
                                             lambda p=p: trace_true_somata(make_section(p)))} for p in params]
    return _true_somata_accuracies(records)


def evaluate(params: Sequence[SynthParams], models: dict[str, str], *, sections_per_animal: int,
             dapi: bool = False, cache: Path | None = None, sections: dict | None = None,
             trace_truth: bool = True, log=None) -> tuple[dict, list[dict]]:
    """Count and score a per-animal study; returns (figures, per-section records).

    ``params`` are the sections in animal order (``sections_per_animal`` each).
    ``sections`` (a dict) keeps generated sections between calls. ``cache`` keeps
    each section's scores on disk, by its params and the models' file contents
    (delete it when the pipeline changes). With ``trace_truth`` each record also holds the stages traced from the
    true somata and GCL (`trace_true_somata`, the same for every model).
    """
    records = []
    memo = sections if sections is not None else {}
    model_key = ",".join(f"{k}={_model_key(v)}" for k, v in sorted(models.items()))

    def section(p: SynthParams) -> SynthSection:
        if repr(p) not in memo:
            memo[repr(p)] = make_section(p)
        return memo[repr(p)]

    for p in params:
        key = repr(p)
        record = dict(_cached(cache, f"record {key} {model_key} dapi={dapi}",
                              lambda p=p: score_section(section(p), models, dapi=dapi)))
        if trace_truth:
            if ("traced", key) not in memo:
                memo["traced", key] = _cached(cache, "traced " + key, lambda p=p: trace_true_somata(section(p)))
            record["traced_from_truth"] = memo["traced", key]
        records.append(record)
        if log:
            log(f"  seed {p.seed}: DCX {record['dcx_found']}/{record['dcx_true']}, {record['seconds']:.1f} s")
    return summarise(records, sections_per_animal=sections_per_animal), records


# --------------------------------------------------------------------------- models and report


def model_sets(models_dir: Path, plain_dir: Path) -> dict[str, dict[str, str]]:
    """Model name -> {kind: path} for every model the benchmark may use."""
    sets = {"plain": {k: str(plain_dir / f"plain_{k}.safetensors") for k in ("dcx", "nuclear")},
            "all": {"dcx": "specialist", "nuclear": "specialist"},
            "bundled": {"dcx": "specialist", "nuclear": "specialist"},
            "lofo_none": {k: str(models_dir / f"lofo_none_{k}.safetensors") for k in ("dcx", "nuclear")}}
    for family in FAMILIES:
        sets[f"lofo_{family}"] = {k: str(models_dir / (f"lofo_{family}_{k}.safetensors" if family in TOUCHES[k]
                                                        else f"lofo_none_{k}.safetensors"))
                                  for k in ("dcx", "nuclear")}
    return sets


COLUMNS = (("DCX F1", "dcx_f1", "{:.3f}"), ("NeuN F1", "neun_f1", "{:.3f}"),
           ("split %", "soma_split_rate", "{:.1%}"),
           ("false somata on processes / mm", "false_somata_on_processes_per_mm", "{:.2f}"),
           ("count err. mean %", "count_error_mean", "{:.1%}"), ("worst %", "count_error_worst", "{:.1%}"),
           ("staged cells", "staged_cells", "{}"), ("stage", "stage_accuracy", "{:.3f}"),
           ("group", "group_accuracy", "{:.3f}"), ("unflagged cells", "unflagged_cells", "{}"),
           ("stage unfl.", "stage_accuracy_unflagged", "{:.3f}"), ("group unfl.", "group_accuracy_unflagged", "{:.3f}"),
           ("group share worst (pp)", "group_share_worst_pp", "{:.1f}"))


def _cell(value, fmt: str) -> str:
    if isinstance(value, float) and np.isnan(value):
        return "-"
    return fmt.format(value).replace("%", "")


def table(rows: Sequence[tuple[str, str, dict]]) -> str:
    """Markdown table: one row per (model label, density label, figures)."""
    head = "| model | DCX / mm SGZ | " + " | ".join(c[0] for c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for model, density, figures in rows:
        lines.append(f"| {model} | {density} | " + " | ".join(_cell(figures[c[1]], c[2]) for c in COLUMNS) + " |")
    return "\n".join(lines)


DELTA_COLUMNS = (("DCX F1", "dcx_f1", "{:+.3f}", 1), ("NeuN F1", "neun_f1", "{:+.3f}", 1),
                 ("split (pp)", "soma_split_rate", "{:+.1f}", 100),
                 ("false somata / mm", "false_somata_on_processes_per_mm", "{:+.2f}", 1),
                 ("count err. worst (pp)", "count_error_worst", "{:+.1f}", 100),
                 ("stage", "stage_accuracy", "{:+.3f}", 1), ("group", "group_accuracy", "{:+.3f}", 1),
                 ("group share worst (pp)", "group_share_worst_pp", "{:+.1f}", 1))


def delta_table(rows: Sequence[tuple[str, str, dict, dict]]) -> str:
    """Markdown table of differences (figures - reference), one row per (label, density)."""
    lines = ["| left out | DCX / mm SGZ | " + " | ".join(c[0] for c in DELTA_COLUMNS) + " |",
             "|" + "---|" * (len(DELTA_COLUMNS) + 2)]
    for label, density, figures, reference in rows:
        cells = [_cell((figures[key] - reference[key]) * scale, fmt) for _, key, fmt, scale in DELTA_COLUMNS]
        lines.append(f"| {label} | {density} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tracing_table(by_family: dict) -> str:
    """Markdown table: stage / group accuracy traced from the true somata, one row per family drawn."""
    densities = list(next(iter(by_family.values())))
    lines = ["| family drawn | " + " | ".join(f"{d} / mm: cells | stage | group" for d in densities) + " |",
             "|---|" + "---|---|---|" * len(densities)]
    for family, by_density in by_family.items():
        cells = [f"{f['true_somata_cells']} | {f['stage_accuracy_true_somata']:.3f} | "
                 f"{f['group_accuracy_true_somata']:.3f}" for f in (by_density[d]["figures"] for d in densities)]
        lines.append(f"| {family} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


SET_MODELS = {"lofo": ["lofo_none"] + [f"lofo_{f}" for f in FAMILIES], "unseen": ["plain", "all"],
              "default": ["plain", "all"]}
SET_TITLES = {"lofo": "Leave one family out (all families at training ranges)",
              "unseen": "Unseen settings (every family in its held-out band)",
              "default": "Default look (plain)",
              "tracing": "Tracing alone, one family at a time in its held-out band (true somata and GCL, no model)"}


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", choices=list(SEED_BASE), default=list(SEED_BASE))
    parser.add_argument("--densities", type=float, nargs="+", default=[60.0, 150.0], help="DCX cells per mm SGZ")
    parser.add_argument("--animals", type=int, default=3)
    parser.add_argument("--sections-per-animal", type=int, default=2)
    parser.add_argument("--size-px", type=int, default=1024)
    parser.add_argument("--dapi", action="store_true", help="count DAPI too (slower; no figure uses it)")
    parser.add_argument("--models-dir", type=Path, default=REPO / "benchmarks" / "models" / "lofo",
                        help="lofo_none_KIND and lofo_F_KIND models (KIND = dcx, nuclear)")
    parser.add_argument("--plain-dir", type=Path, default=REPO / "benchmarks" / "models",
                        help="plain_dcx/plain_nuclear: the models before the appearance families")
    parser.add_argument("--all-model", action="append", default=[], metavar="KIND=PATH",
                        help="use this file as the all-families model of KIND (dcx, nuclear) instead of "
                             "the bundled one; repeatable")
    parser.add_argument("--models", nargs="+", help="only these models (e.g. plain all lofo_none lofo_soma bundled)")
    parser.add_argument("--cache", type=Path,
                        help="keep per-section scores here (by section params and model file contents); "
                             "delete it when the pipeline changes")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "generalisation.json")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 animals x 1 section of 512^2 px")
    args = parser.parse_args(argv)
    if args.quick:
        args.animals, args.sections_per_animal, args.size_px = 2, 1, 512

    started = time.perf_counter()
    available = model_sets(args.models_dir, args.plain_dir)
    for choice in args.all_model:
        kind, _, path = choice.partition("=")
        if kind not in ("dcx", "nuclear") or not path:
            parser.error(f"--all-model takes dcx=PATH or nuclear=PATH, not {choice!r}")
        available["all"][kind] = path
    n_sections = args.animals * args.sections_per_animal
    plan = {s: {d: study_params(s, density=d, n_sections=n_sections, size_px=args.size_px) for d in args.densities}
            for s in args.sets if s != "tracing"}
    tracing_plan = {family: {d: study_params("tracing", density=d, n_sections=n_sections, size_px=args.size_px,
                                             families=() if family == "none" else (family,))
                             for d in args.densities}
                    for family in (("none",) + FAMILIES if "tracing" in args.sets else ())}
    check_seeds_held_out([p for group in (*plan.values(), *tracing_plan.values())
                          for ps in group.values() for p in ps])
    results: dict = {}
    if tracing_plan:
        results["tracing"] = {}
        for family, by_density in tracing_plan.items():
            for density, params in by_density.items():
                print(f"tracing, {density:g} / mm, {family} drawn", flush=True)
                figures = trace_study(params, cache=args.cache)
                results["tracing"].setdefault(family, {})[f"{density:g}"] = {"figures": figures}
    for set_name in (s for s in args.sets if s != "tracing"):
        wanted = [m for m in SET_MODELS[set_name] if args.models is None or m in args.models]
        wanted += [m for m in (args.models or []) if m not in wanted and m in ("bundled", "all", "plain", "lofo_none")
                   and set_name != "lofo"]
        results[set_name] = {}
        for density in args.densities:
            sections: dict = {}
            for model in wanted:
                paths = available[model]
                missing = [p for p in paths.values() if p != "specialist" and not Path(p).is_file()]
                if missing:
                    print(f"skipping {model}: missing {missing}", flush=True)
                    continue
                print(f"{set_name}, {density:g} / mm, {model}", flush=True)
                figures, records = evaluate(plan[set_name][density], paths,
                                            sections_per_animal=args.sections_per_animal, dapi=args.dapi,
                                            cache=args.cache, sections=sections,
                                            log=lambda line: print(line, flush=True))
                # Per section, the counts; the cell-by-cell stages are in the figures' confusion matrix.
                slim = [{k: v for k, v in r.items() if k not in ("stages", "traced_from_truth")} for r in records]
                results[set_name].setdefault(model, {})[f"{density:g}"] = {
                    "figures": figures, "models": paths, "sections": slim}

    print()
    for set_name in args.sets:
        by_model = results[set_name]
        print(f"### {SET_TITLES[set_name]}\n")
        if set_name == "tracing":
            print(tracing_table(by_model) + "\n")
            continue
        rows = [(model, density, entry["figures"]) for model, by_density in by_model.items()
                for density, entry in by_density.items()]
        rows.sort(key=lambda row: (float(row[1]), list(by_model).index(row[0])))
        print(table(rows) + "\n")
        traced = {density: entry["figures"] for by_density in by_model.values()
                  for density, entry in by_density.items() if "true_somata_cells" in entry["figures"]}
        if traced:
            print("Tracing alone (the true somata and GCL, no model):\n")
            print("| DCX / mm SGZ | cells | stage | group |\n|---|---|---|---|")
            for density, f in sorted(traced.items(), key=lambda item: float(item[0])):
                print(f"| {density} | {f['true_somata_cells']} | {f['stage_accuracy_true_somata']:.3f} "
                      f"| {f['group_accuracy_true_somata']:.3f} |")
            print()
        if set_name == "lofo" and "lofo_none" in by_model:
            control = by_model["lofo_none"]
            deltas = [(model.removeprefix("lofo_"), density, entry["figures"], control[density]["figures"])
                      for model, by_density in by_model.items() if model != "lofo_none"
                      for density, entry in by_density.items() if density in control]
            deltas.sort(key=lambda row: (float(row[1]), FAMILIES.index(row[0])))
            print("Change against the control (lofo_F - lofo_none, same sections):\n")
            print(delta_table(deltas) + "\n")
        if set_name in ("unseen", "default") and {"plain", "all"} <= set(by_model):
            deltas = [("all - plain", density, entry["figures"], by_model["plain"][density]["figures"])
                      for density, entry in by_model["all"].items() if density in by_model["plain"]]
            print("Change from the plain to the all-families models:\n")
            print(delta_table(deltas).replace("| left out |", "| models |") + "\n")
    seconds = time.perf_counter() - started
    print(f"{seconds / 60:.1f} min (scores from --cache are not recounted)")
    payload = {"settings": {"sets": args.sets, "densities": args.densities, "animals": args.animals,
                            "sections_per_animal": args.sections_per_animal, "size_px": args.size_px,
                            "dapi": args.dapi, "seed_base": SEED_BASE, "match_um": MATCH_UM,
                            "process_um": PROCESS_UM, "quick": args.quick},
               "model_files": {path: hashlib.sha256(Path(path).read_bytes()).hexdigest()
                               for by_model in results.values() for by_density in by_model.values()
                               for entry in by_density.values() for path in entry.get("models", {}).values()
                               if Path(path).is_file()},
               "seconds": seconds,
               "count_seconds": sum(r["seconds"] for by_model in results.values() for by_density in by_model.values()
                                    for entry in by_density.values() for r in entry.get("sections", [])),
               "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1, default=_json_default))
    print(f"wrote {args.out}")
    return payload


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(type(value))


if __name__ == "__main__":
    main()
