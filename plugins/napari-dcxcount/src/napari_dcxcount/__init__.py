"""napari-dcxcount: count and stage new neurons in dentate gyrus sections, in napari.

The plugin is a thin client of the ``dcxcount`` core: it reads sections with
:func:`dcxcount.io.read_section`, counts them with
:func:`dcxcount.pipeline.count_section` and shows what the core returns. Its
contributions are declared in ``napari.yaml``:

- readers for TIFF, OME-TIFF and ImageJ sections and for dcxcount results
  folders (:mod:`._reader`, the latter through :mod:`._results`);
- the sample section (:mod:`._sample_data`);
- the Count widget (:mod:`._widget`, on the Qt-free :mod:`._model`);
- the Review widget (:mod:`._review`, on the Qt-free :mod:`._results`):
  review, correct and save a counted study, blinded or not;
- the Fine-tune and Agreement widgets (:mod:`._study_widgets`, on :mod:`._study`);
- writers for labels, cells, and the GCL outline (:mod:`._writer`).

Nothing is imported here, so that napari can list the plugin without loading
napari, Qt or torch.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
