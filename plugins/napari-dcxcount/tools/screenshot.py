"""Take the user guide's screenshots from a real viewer (run under Xvfb on a machine without a screen).

    xvfb-run -a .venv/bin/python plugins/napari-dcxcount/tools/screenshot.py docs/images

Writes ``plugin_count.jpg`` (the window after counting the sample section: image,
GCL outline, labels, processes, cells coloured by stage, the Count widget with its
table) and ``plugin_open.jpg`` (the sample section as the reader opens it). JPEG,
because a window of dark image pixels is ten times smaller so and reads the same.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

__all__ = ["main"]


def _save(viewer, path: Path) -> None:
    from PIL import Image

    Image.fromarray(viewer.screenshot(canvas_only=False)).convert("RGB").save(path, quality=88)


def main(out: str) -> None:
    """Open the sample, count it with the widget and save the screenshots into `out`."""
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_dcxcount._sample_data import SAMPLE_PATH
    from napari_dcxcount._widget import CountWidget

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    viewer.open(str(SAMPLE_PATH), plugin="napari-dcxcount")
    overlays = getattr(getattr(viewer, "canvas", None), "overlays", None)  # napari >= 0.9
    (overlays.scale_bar if overlays is not None else viewer.scale_bar).visible = True
    viewer.reset_view()
    QApplication.processEvents()
    _save(viewer, folder / "plugin_open.jpg")

    widget = CountWidget(viewer)
    viewer.window.add_dock_widget(widget, name="dcxcount: Count", area="right")
    widget.run()
    deadline = time.monotonic() + 600
    while widget.running and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.05)
    if widget.result is None:
        raise SystemExit(f"counting failed: {widget.error}")
    for name in ("neun labels",):
        viewer.layers[name].visible = False  # the nuclei hide the DCX cells at this zoom
    viewer.layers.selection = {viewer.layers["cells"]}
    QApplication.processEvents()
    _save(viewer, folder / "plugin_count.jpg")
    viewer.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/images")
