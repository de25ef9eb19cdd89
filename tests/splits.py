"""Which synthetic sections are for development and which are the frozen test split.

The **frozen test split** is the seeds below, 70 001-70 999. They were fixed on
2026-11-30 for issue 16, after the methods and the bundled models of that day, and
are used only to measure the final figures of docs/validation.md and the bars of
the tests that guard them. They are never to be printed while a method or model is
tuned: tune on the dev seeds, then re-measure here once. A change made because a
frozen figure moved makes the figure a dev figure; draw a new frozen range then
(e.g. 71 001 on) and say so in docs/validation.md.

**Dev seeds** are every other seed the tests and benchmarks use: 0-99 (the hand-made
scenes and the layer, tracing and co-label checks used while those methods were
built), 101-108 (the former "held-out" staging seeds, printed beside the dev seeds
while the tracing was tuned), 201-213 (staging and co-label dev seeds), 401-413,
20 000-21 500 (segmentation robustness), and the generalisation benchmark's
780 000+ / 820 000+ (benchmarks/generalisation.py).

Training never draws any of these on purpose: it draws its section seeds as
``default_rng(seed).integers(2**31) + index`` (dcxcount.segment.training), which
falls in the ranges above with a chance of about 1 in 10^6 per section.
"""

from __future__ import annotations

# conftest's small study: make_study(seed=STUDY), 2 groups x 2 animals x 2 sections.
STUDY = 70_001
# tests/test_gcl.py: the frame from the true labels, 512^2 px at 1 um. The tests run
# the first three; all six measured the documented figures and their spread.
LAYERS = (70_101, 70_102, 70_103, 70_104, 70_105, 70_106)
# tests/test_gcl.py, 768^2 px at 0.65 um.
LAYERS_20X = (70_111, 70_112)
# Issue 4's staging measure (count_section, 768^2 px at 0.65 um, DCX + NeuN), all eight at each
# density in the test as in `benchmarks/staging.py --first-seed 70201 --sections 8`.
STAGING = (70_201, 70_202, 70_203, 70_204, 70_205, 70_206, 70_207, 70_208)
# tests/test_staging.py: tracing and staging on the true somata, 512^2 px at 0.65 um, 150
# DCX cells per mm SGZ.
STAGING_TRUE_SOMATA = (70_211, 70_212, 70_213, 70_214, 70_215, 70_216)
# tests/test_colabel.py's study: two animals x three sections.
COLABEL = {"m1": (70_301, 70_302, 70_303), "m2": (70_311, 70_312, 70_313)}
# tests/test_training.py's fine-tuning data: sections with heavy DCX neuropil.
FINE_TUNE = tuple(range(70_501, 70_509))
# tests/test_cli.py's BrdU and EdU studies (benchmarks/frozen_figures.py measures these and the three
# seeds after each).
BRDU_STUDY = 70_401
EDU_STUDY = 70_411
