"""The distribution: its npe2 manifest validates, and a wheel built from it installs and is listed."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parents[1]


def _npe2(*args: str, python: str = sys.executable) -> subprocess.CompletedProcess:
    return subprocess.run([python, "-m", "npe2", *args], capture_output=True, text=True, timeout=300)


def test_npe2_validate():
    """`npe2 validate napari-dcxcount`, importing every python_name of the manifest."""
    done = _npe2("validate", "napari-dcxcount", "--imports")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "valid" in done.stdout


def test_manifest_contributions():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-dcxcount")
    contributions = manifest.contributions
    readers = {r.command: r for r in contributions.readers}
    assert set(readers) == {"napari-dcxcount.get_reader", "napari-dcxcount.get_results_reader"}
    assert readers["napari-dcxcount.get_results_reader"].accepts_directories
    assert not readers["napari-dcxcount.get_reader"].accepts_directories
    assert [s.key for s in contributions.sample_data] == ["sample_section"]
    assert [w.display_name for w in contributions.widgets] == ["Count", "Review", "Fine-tune", "Agreement"]
    assert [m.command for m in contributions.menus["napari/layers/measure"]] == ["napari-dcxcount.count_widget"]
    assert [m.command for m in contributions.menus["napari/layers/annotate"]] == ["napari-dcxcount.review_widget"]
    assert [m.command for m in contributions.menus["napari/layers/segment"]] == ["napari-dcxcount.finetune_widget"]
    assert [m.command for m in contributions.menus["napari/layers/classify"]] == ["napari-dcxcount.agreement_widget"]
    writers = {w.command: (w.layer_types, w.filename_extensions) for w in contributions.writers}
    assert writers["napari-dcxcount.write_labels_tiff"] == (["labels"], [".tif", ".tiff"])
    assert writers["napari-dcxcount.write_points_csv"] == (["points"], [".csv"])
    assert writers["napari-dcxcount.write_shapes_roi"] == (["shapes"], [".roi", ".zip"])


@pytest.mark.slow
def test_a_built_wheel_installs_in_a_fresh_venv_and_npe2_lists_it(tmp_path):
    """`python -m build --wheel`, then the wheel alone in a new virtual environment.

    The new environment gets the wheel without dependencies and sees this environment's
    packages (napari, npe2, ...) through a .pth file, so no 6 GB torch is installed again;
    the plugin itself must come from the wheel.
    """
    dist = tmp_path / "dist"
    built = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(PLUGIN)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = dist.glob("napari_dcxcount-*.whl")
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "napari_dcxcount/napari.yaml" in names and "napari_dcxcount/data/saline-1_s01.ome.tif" in names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    installed = subprocess.run([python, "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # Appended after the new environment's own site-packages, so its plugin wins over this one's.
    Path(site, "_outer_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    where = subprocess.run([python, "-c", "import napari_dcxcount; print(napari_dcxcount.__file__)"],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(Path(site))

    listed = _npe2("list", "--format", "json", python=python)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    plugins = {p["name"]: p for p in json.loads(listed.stdout)}
    assert "napari-dcxcount" in plugins, sorted(plugins)
    assert plugins["napari-dcxcount"]["version"] == "0.1.0"
    validated = _npe2("validate", "napari-dcxcount", python=python)
    assert validated.returncode == 0, validated.stdout + validated.stderr
