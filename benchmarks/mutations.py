"""Mutation check: deliberately degraded pipelines must fail the test suite.

Each mutation is a small edit to a copy of the code (the repository is never touched):

- ``dcx_drop_5pct``: every 20th DCX soma the segmentation finds is deleted (5 %);
- ``neun_merged_pairs``: NeuN nuclei are merged in pairs (labels 1+2, 3+4, ...);
- ``gcl_eroded_5um``: every GCL mask, detected or a user's outline, loses a 5 um rim
  before its frame is computed;
- ``stages_shifted``: every stage call moves one stage on (A->B, ..., E->F; F stays F);
- ``colabel_overlap_of_larger``: co-label overlap measured as a fraction of the larger
  object instead of the smaller (docs/biology.md's rule broken);
- ``depth_shifted``: every cell's layer depth read 0.1 GCL thickness deeper.

For each, the tests named beside it (those expected to catch it) are run on the mutated
copy; the unmodified copy must pass the same tests first. ``--suite`` runs the whole
suite per mutation instead (about 6 min each on 2 cores). Results are printed as a
table and, with ``--json``, written out; docs/validation.md ("Mutation check") records
the last run.

    python benchmarks/mutations.py                  # all mutations, their guarding tests
    python benchmarks/mutations.py --only stages_shifted
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SEGMENTED = "        labels[marker] = engine.segment(image, pixel_size_um=px)\n"


@dataclass(frozen=True)
class Mutation:
    file: str
    anchor: str
    replacement: str
    tests: tuple[str, ...]


MUTATIONS = {
    "dcx_drop_5pct": Mutation(
        "dcxcount/pipeline.py", SEGMENTED,
        SEGMENTED + "        if marker == 'dcx':  # MUTATION: drop every 20th soma\n"
                    "            ids = np.unique(labels[marker])[1:]\n"
                    "            labels[marker] = np.where(np.isin(labels[marker], ids[::20]), 0, labels[marker])\n",
        ("tests/test_cli.py::test_detection_f1_against_the_generators_truth",)),
    "neun_merged_pairs": Mutation(
        "dcxcount/pipeline.py", SEGMENTED,
        SEGMENTED + "        if marker == 'neun':  # MUTATION: nuclei merged in pairs\n"
                    "            labels[marker] = (labels[marker] + 1) // 2\n",
        ("tests/test_cli.py::test_detection_f1_against_the_generators_truth",)),
    "gcl_eroded_5um": Mutation(
        "dcxcount/gcl.py", "    gcl = np.asarray(gcl, bool)\n    hilus = _hilus(",
        "    gcl = np.asarray(gcl, bool)\n"
        "    gcl = ndi.distance_transform_edt(gcl) > 5.0 / pixel_size_um  # MUTATION: 5 um eroded\n"
        "    hilus = _hilus(",
        ("tests/test_gcl.py",)),
    "stages_shifted": Mutation(
        "dcxcount/staging.py", '    out = pd.DataFrame({"stage": stage.astype(str)}, index=features.index)\n',
        '    stage = np.array([{"A": "B", "B": "C", "C": "D", "D": "E", "E": "F", "F": "F"}[s] for s in stage],\n'
        '                     dtype=object)  # MUTATION: one stage on\n'
        '    out = pd.DataFrame({"stage": stage.astype(str)}, index=features.index)\n',
        ("tests/test_staging.py", "tests/test_tracing.py")),
    "colabel_overlap_of_larger": Mutation(
        "dcxcount/pipeline.py", "        smaller = np.minimum(np.bincount(first.ravel())",
        "        smaller = np.maximum(np.bincount(first.ravel())",  # MUTATION: fraction of the larger object
        ("tests/test_colabel.py",)),
    "depth_shifted": Mutation(
        "dcxcount/gcl.py", "    def sample(self, x_um",
        "    def sample(self, *args, **kwargs):  # MUTATION: 0.1 GCL thickness deeper\n"
        "        depth, in_gcl = self._sample(*args, **kwargs)\n"
        "        return depth + 0.1, in_gcl\n\n"
        "    def _sample(self, x_um",
        ("tests/test_gcl.py", "tests/test_colabel.py",
         "tests/test_cli.py::test_thymidine_analogue_phenotypes_reach_the_animal_table")),
}


def copy_tree(target: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", ".pytest_cache")
    for name in ("dcxcount", "tests", "sample_images", "benchmarks"):
        shutil.copytree(ROOT / name, target / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, target / name)


def apply(target: Path, mutation: Mutation) -> None:
    path = target / mutation.file
    text = path.read_text()
    if text.count(mutation.anchor) != 1:
        raise SystemExit(f"{mutation.file}: the anchor of a mutation is not there once; update benchmarks/mutations.py")
    path.write_text(text.replace(mutation.anchor, mutation.replacement))


def run_tests(target: Path, tests: list[str]) -> tuple[bool, str, float]:
    env = {**os.environ, "PYTHONPATH": str(target), "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    # The copy's dcxcount must be the one imported (not the editable install of ROOT).
    check = subprocess.run([sys.executable, "-c", "import dcxcount; print(dcxcount.__file__)"], cwd=target, env=env,
                           capture_output=True, text=True)
    if not check.stdout.strip().startswith(str(target)):
        raise SystemExit(f"the copy's dcxcount is not imported: {check.stdout} {check.stderr}")
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-x", *tests],
                          cwd=target, env=env, capture_output=True, text=True)
    tail = [line for line in done.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-300:]
    if done.returncode not in (0, 1):  # 2-5: interrupted, internal or usage error, nothing collected
        raise SystemExit(f"pytest could not run {tests} (exit {done.returncode}): {summary}")
    return done.returncode == 0, "; ".join(tail[:3]) or summary, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=sorted(MUTATIONS))
    parser.add_argument("--suite", action="store_true", help="run the whole suite per mutation")
    parser.add_argument("--no-control", action="store_true", help="skip the run of the unmodified copy")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    chosen = args.only or list(MUTATIONS)
    results = {}
    with tempfile.TemporaryDirectory(prefix="dcxcount-mutations-") as scratch:
        if not args.no_control:
            clean = Path(scratch) / "control"
            copy_tree(clean)
            tests = ["tests"] if args.suite else sorted({t for name in chosen for t in MUTATIONS[name].tests})
            passed, detail, seconds = run_tests(clean, tests)
            results["(unmodified)"] = {"suite_passed": passed, "detail": detail, "seconds": round(seconds)}
            print(f"unmodified copy: {'passes' if passed else 'FAILS'} ({detail}, {seconds:.0f} s)", flush=True)
        for name in chosen:
            target = Path(scratch) / name
            copy_tree(target)
            apply(target, MUTATIONS[name])
            passed, detail, seconds = run_tests(target, ["tests"] if args.suite else list(MUTATIONS[name].tests))
            results[name] = {"caught": not passed, "detail": detail, "seconds": round(seconds)}
            print(f"{name}: {'caught' if not passed else 'NOT CAUGHT'} ({detail}, {seconds:.0f} s)", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    missed = [name for name in chosen if not results[name]["caught"]]
    control_failed = not args.no_control and not results["(unmodified)"]["suite_passed"]
    return 1 if missed or control_failed else 0


if __name__ == "__main__":
    sys.exit(main())
