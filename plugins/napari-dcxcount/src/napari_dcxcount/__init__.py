"""napari-dcxcount: count and stage new neurons in dentate gyrus sections, in napari.

The plugin is a thin client of the ``dcxcount`` core: it reads sections with
:func:`dcxcount.io.read_section`, counts them with
:func:`dcxcount.pipeline.count_section` and shows what the core returns. Its
contributions are declared in ``napari.yaml``:

- a reader for TIFF, OME-TIFF and ImageJ sections (:mod:`._reader`);
- the sample section (:mod:`._sample_data`);
- the Count widget (:mod:`._widget`, on the Qt-free :mod:`._model`);
- writers for labels, cells, and the GCL outline (:mod:`._writer`).

Nothing is imported here, so that napari can list the plugin without loading
napari, Qt or torch.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
