"""The figures of docs/validation.md that the bundled models decide, on the frozen test split.

Run once per model or method change that is meant to be final (tests/splits.py says why the
frozen seeds are not for tuning); the tests' bars come from these figures and their spread.

    python benchmarks/frozen_figures.py detection   # DCX and NeuN F1 through `dcxcount count` (conftest's study)
    python benchmarks/frozen_figures.py analogues   # BrdU / EdU read-outs of single sections, four seeds each
    python benchmarks/frozen_figures.py colabel     # tests/test_colabel.py's study: co-label accuracies, read-outs
    python benchmarks/frozen_figures.py finetune    # tests/test_training.py's fine-tuning, training seeds 0-2

Staging is measured by ``python benchmarks/staging.py --first-seed 70201 --sections 8``, the
layer frame by ``python benchmarks/gcl.py``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dcxcount.cli import main as dcxcount_main  # noqa: E402
from dcxcount.metrics import match_centroids  # noqa: E402
from dcxcount.synth import make_study, read_truth  # noqa: E402


def detection(scratch: Path) -> None:
    from tests.conftest import SMALL_SECTION
    from tests.splits import STUDY

    sheet = make_study(scratch / "study", animals_per_group=2, sections_per_animal=2, base=SMALL_SECTION, seed=STUDY)
    out = scratch / "counted"
    assert dcxcount_main(["count", str(sheet), "--out", str(out), "--section-interval", "6", "--hemispheres", "1"]) == 0
    cells, sections = pd.read_csv(out / "cells.csv"), pd.read_csv(out / "sections.csv")
    totals, per_section = {}, {"dcx": [], "neun": []}
    for row in sections.itertuples():
        truth = read_truth(row.path).cells
        found = cells[(cells["animal"] == row.animal) & (cells["section"] == row.section)]
        line = []
        for marker in ("dcx", "neun"):
            d, _ = match_centroids(found.loc[found["marker"] == marker, ["x_um", "y_um"]].to_numpy(),
                                   truth.loc[truth["marker"] == marker, ["x_um", "y_um"]].to_numpy(),
                                   max_distance_um=5.0)
            totals[marker] = totals[marker] + d if marker in totals else d
            per_section[marker].append(d.f1)
            line.append(f"{marker} F1 {d.f1:.3f} (TP {d.true_positives}, FP {d.false_positives}, "
                        f"FN {d.false_negatives})")
        print(f"{row.animal} s{row.section}: " + ", ".join(line), flush=True)
    for marker, d in totals.items():
        f1 = np.array(per_section[marker])
        print(f"pooled {marker}: F1 {d.f1:.4f}, precision {d.precision:.4f}, recall {d.recall:.4f} "
              f"(n true {d.true_positives + d.false_negatives}); per section {f1.min():.3f}-{f1.max():.3f}, "
              f"SD {f1.std(ddof=1):.4f}, SE of the mean {f1.std(ddof=1) / np.sqrt(len(f1)):.4f}")


def analogues(scratch: Path) -> None:
    from tests.splits import BRDU_STUDY, EDU_STUDY
    from tests.test_cli import analogue_read_outs

    for analogue, first in (("brdu", BRDU_STUDY), ("edu", EDU_STUDY)):
        errors = []
        for seed in range(first, first + 4):
            result = analogue_read_outs(scratch / f"{analogue}{seed}", analogue, seed)
            errors.append(result["errors"])
            print(f"{analogue} seed {seed}: {result['n_true']} true, {len(result['counted'])} counted; errors (pp) "
                  + ", ".join(f"{k} {v:+.2f}" for k, v in result["errors"].items()), flush=True)
        table = pd.DataFrame(errors)
        print(f"{analogue}: max |error| {table.abs().max().to_dict()}, SD {table.std().round(2).to_dict()}")


def colabel(scratch: Path) -> None:
    from dcxcount.io import Section
    from dcxcount.pipeline import count_section
    from dcxcount.synth import make_section
    from tests import test_colabel as tc

    study = []
    for animal, params in tc.STUDY:
        truth = make_section(params)
        section = Section(path="synthetic", data=truth.image, channel_names=truth.channel_names,
                          pixel_size_um=params.pixel_size_um, pixel_size_source="synthetic", projection="none")
        study.append((animal, truth, count_section(section)))
        print(f"counted {animal} seed {params.seed}", flush=True)
    for marker, (accuracy, cells) in tc.co_label_accuracies(study).items():
        se = np.sqrt(accuracy * (1 - accuracy) / cells)
        print(f"{marker}: accuracy {accuracy:.4f} on {cells} detected cells (SE {se:.4f})")
    for single in study:
        per = tc.co_label_accuracies([single])
        print(f"  {single[0]} seed {single[1].params.seed}: " + ", ".join(
            f"{m} {a:.3f} ({n})" for m, (a, n) in per.items()))
    for animal in ("m1", "m2"):
        sections = [s for s in study if s[0] == animal]
        found = pd.concat([r.cells[(r.cells["marker"] == "brdu") & r.cells["counted"]] for _, _, r in sections])
        real = pd.concat([tc._true_counted_brdu(t) for _, t, _ in sections])
        calls, matched = zip(*(tc._calls_on_true_counted_brdu(truth, result) for _, truth, result in sections))
        truth_readouts = tc._readouts(real)
        print(f"{animal}: BrdU+ true {len(real)} / counted {len(found)}; true {truth_readouts.round(1).to_dict()}, "
              f"found {tc._readouts(found).round(1).to_dict()}, end to end "
              f"{(tc._readouts(found) - truth_readouts).round(2).to_dict()} pp, calls on the truth's cells "
              f"{(tc._readouts(pd.concat(calls)) - tc._readouts(pd.concat(matched))).round(2).to_dict()} pp")


def finetune(scratch: Path) -> None:
    import json

    from dcxcount.segment import bundled_model_path
    from tests.splits import FINE_TUNE
    from tests.test_training import NEUROPIL_DOMAIN, _write_labelled

    data = scratch / "corrected"
    data.mkdir(parents=True)
    _write_labelled(data, NEUROPIL_DOMAIN, FINE_TUNE)
    for seed in (0, 1, 2):
        out = scratch / f"lab{seed}.safetensors"
        assert dcxcount_main(["train", "--from", str(bundled_model_path("dcx")), "--data", str(data), "--out", str(out),
                              "--val-fraction", "0.25", "--steps", "80", "--batch-size", "4", "--seed", str(seed),
                              "--threads", "1"]) == 0
        card = json.loads(out.with_suffix(".json").read_text())
        before, after = card["validation"]["before"], card["validation"]["after"]
        print(f"seed {seed} (validation {', '.join(card['val_sections'])}): F1 {before['f1']} -> {after['f1']}, "
              f"AP@0.5 {before['ap50']} -> {after['ap50']}; before {before}, after {after}; "
              f"{card['train_seconds']} s", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("detection", "analogues", "colabel", "finetune"), nargs="+")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dcxcount-frozen-") as scratch:
        for what in args.what:
            print(f"== {what}", flush=True)
            globals()[what](Path(scratch) / what)


if __name__ == "__main__":
    main()
