"""report.html, results.xlsx, groups.csv and run.json of a counted study.

One tiny study (2 groups x 2 animals, DCX, NeuN and BrdU, plus a row whose image is
damaged) is counted once through the command line, from its own folder with
relative paths as a user would type them. The report is opened in headless
Chromium (Debian's ``chromium``, installed by .ci/run) with the network cut off.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time

import pandas as pd
import pytest

from dcxcount.cli import EXIT_SECTIONS_FAILED, main
from dcxcount.provenance import command_to_rerun
from dcxcount.report import MAIN_METRICS
from dcxcount.synth import SynthParams, make_study

TIMING = ["seconds"]  # the only columns that differ between two counts of the same study


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """(study folder, results folder): counted with ``dcxcount count samplesheet.csv --out out ...`` from there."""
    root = tmp_path_factory.mktemp("report_study")
    sheet = make_study(root, groups=("saline", "runner"), animals_per_group=2, sections_per_animal=1,
                       base=SynthParams(shape_px=(320, 320), pixel_size_um=1.0, markers=("dcx", "neun", "brdu")),
                       seed=14_001, truth=False)
    (root / "damaged.ome.tif").write_bytes(b"II*\x00 this is not a TIFF")
    with open(sheet, "a", encoding="utf-8") as handle:
        handle.write("damaged.ome.tif,saline-1,saline,2\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        code = main(["count", sheet.name, "--out", "out", "--section-interval", "6", "--hemispheres", "1",
                     "--thickness-um", "40"])
    assert code == EXIT_SECTIONS_FAILED  # the damaged image fails on its own
    return root, root / "out"


def _without_timing(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns=[c for c in TIMING if c in table.columns])


def test_the_study_files_are_written(study):
    _, out = study
    for name in ("groups.csv", "results.xlsx", "report.html", "run.json", "settings.json"):
        assert (out / name).stat().st_size > 0, name
    groups = pd.read_csv(out / "groups.csv")
    assert set(groups["group"]) == {"saline", "runner"}
    # Two animals per group, each with a value.
    total = groups[groups["metric"] == "estimated_total_dcx"].set_index("group")
    assert total["n_animals"].tolist() == [2, 2]
    animals = pd.read_csv(out / "animals.csv")
    saline = animals[animals["group"] == "saline"]["estimated_total_dcx"]
    assert total.loc["saline", "mean"] == pytest.approx(saline.mean())
    assert total.loc["saline", "sem"] == pytest.approx(saline.std(ddof=1) / 2 ** 0.5)


def test_the_workbook_reads_back_equal_to_the_csvs(study):
    _, out = study
    sheets = pd.read_excel(out / "results.xlsx", sheet_name=None)
    assert list(sheets) == ["animals", "groups", "sections", "settings"]
    for name in ("animals", "groups", "sections"):
        pd.testing.assert_frame_equal(sheets[name], pd.read_csv(out / f"{name}.csv"), check_dtype=False,
                                      obj=name)
    settings = dict(zip(sheets["settings"]["setting"], sheets["settings"]["value"]))
    assert settings["section_interval"] == 6 and settings["hemispheres"] == 1
    assert settings["count.staging.stub_um"] > 0


def test_run_json_records_versions_digests_settings_and_the_command(study):
    root, out = study
    run = json.loads((out / "run.json").read_text())
    assert run["command"][:2] == ["dcxcount", "count"] and run["cwd"] == str(root)
    assert run["command_line"].startswith("dcxcount count samplesheet.csv --out out")
    for name in ("dcxcount", "python", "cellpose", "torch", "numpy"):
        assert run["versions"][name], name
    assert re.fullmatch(r"[0-9a-f]{64}", run["models"]["dcx"]["sha256"])
    assert run["host"]["cpu_count"] >= 1
    assert run["started"] < run["finished"]
    assert run["settings"]["section_interval"] == 6 and run["settings"]["thickness_um"] == 40
    images = {entry["image"]["path"]: entry["image"] for entry in run["inputs"]}
    damaged = images[str(root / "damaged.ome.tif")]
    assert damaged["size_bytes"] == len(b"II*\x00 this is not a TIFF")
    assert all(re.fullmatch(r"[0-9a-f]{64}", image["sha256"]) for image in images.values())
    assert re.fullmatch(r"[0-9a-f]{64}", run["samplesheet"]["sha256"])


@pytest.mark.slow
def test_the_command_in_run_json_recounts_the_study_identically(study, monkeypatch):
    root, out = study
    run = json.loads((out / "run.json").read_text())
    command = command_to_rerun(run, out_dir="again")
    monkeypatch.chdir(run["cwd"])
    assert main(command[1:]) == EXIT_SECTIONS_FAILED
    for name in ("cells.csv", "sections.csv", "animals.csv", "groups.csv"):
        pd.testing.assert_frame_equal(_without_timing(pd.read_csv(root / "again" / name)),
                                      _without_timing(pd.read_csv(out / name)), obj=name)


def test_summarize_rebuilds_the_report_and_records_itself(study, tmp_path):
    _, out = study
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    (copy / "report.html").unlink()
    (copy / "results.xlsx").unlink()
    assert main(["summarize", str(copy)]) == EXIT_SECTIONS_FAILED
    assert (copy / "report.html").exists() and (copy / "results.xlsx").exists()
    run = json.loads((copy / "run.json").read_text())
    assert run["command"][:2] == ["dcxcount", "count"]  # the count's record is kept
    assert [s["command"] for s in run["summaries"]] == [["dcxcount", "summarize", str(copy)]]


def test_the_report_is_self_contained(study):
    _, out = study
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    # Every image is inline (a data: URL, whose base64 may hold "//"); beyond them the only URL is the SVG
    # namespace, which is a name, never fetched.
    links = re.findall(r"(?:href|src)=['\"]([^'\"]*)", page)
    assert links and all(link.startswith("data:image/png;base64,") for link in links)
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]*", "", page)
    assert set(re.findall(r"(?:https?:)?//[\w.-]+[^\s'\"]*", text)) <= {"http://www.w3.org/2000/svg"}
    assert "Content-Security-Policy" in page


def test_the_report_is_fast(study, tmp_path):
    from dcxcount.report import build_report

    _, out = study
    sections = pd.read_csv(out / "sections.csv")
    keys = [row["_key"] for row in json.loads((out / "settings.json").read_text())["samplesheet"]]
    started = time.perf_counter()
    build_report(out, sections=sections, animals=pd.read_csv(out / "animals.csv"), settings={}, keys=keys)
    # Generous (a loaded CI machine); it takes ~0.1 s for the 12-section sample study.
    assert time.perf_counter() - started < 10


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _browse(page, *args, tmp_path):
    """Headless Chromium on ``page`` with the network cut off; returns its stdout."""
    command = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-extensions", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
               # No network: every host resolves to nothing and every proxy request goes nowhere.
               "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
               *args, page.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (.ci/run installs Debian's chromium; "
                                                 "here: apt-get install chromium)")
def test_the_report_renders_in_headless_chromium(study, tmp_path):
    _, out = study
    dom = _browse(out / "report.html", "--dump-dom", "--virtual-time-budget=2000", tmp_path=tmp_path)
    animals = pd.read_csv(out / "animals.csv")
    # One point per animal in every per-group plot (each animal here has a value for each).
    plotted = [m for m, _ in MAIN_METRICS if m in animals] + ["pct_brdu_dcx", "pct_brdu_neun_dcxneg"]
    for metric in plotted:
        points = re.findall(rf"<circle class=\"animal-point\" data-animal=\"([^\"]+)\" data-group=\"[^\"]*\" "
                            rf"data-metric=\"{re.escape(metric)}\"", dom)
        expected = animals.loc[animals[metric].notna(), "animal"].tolist()
        assert sorted(points) == sorted(expected), metric
    # The damaged section is listed as failed, with its reason, before any other section.
    failed = re.findall(r"<li class=\"failed-section\" data-key=\"([^\"]+)\"><b>([^<]+)</b>: "
                        r"<span class=\"reason\">([^<]+)</span>", dom)
    assert [(key, name) for key, name, _ in failed] == [("saline-1_s2", "saline-1 s2")]
    assert "damaged.ome.tif" in failed[0][2]
    states = re.findall(r"<div class=\"section (\w+)\" data-key", dom)
    assert states[0] == "failed" and states.count("failed") == 1 and len(states) == 5
    # Every counted section has its thumbnail with the GCL outline, over its DCX channel.
    assert dom.count("<svg class=\"thumb\"") == 4 and dom.count("class=\"dcx-image\"") == 4

    png = tmp_path / "report.png"
    _browse(out / "report.html", f"--screenshot={png}", "--window-size=1200,1600", "--hide-scrollbars",
            tmp_path=tmp_path)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_a_section_folder_that_cannot_be_read_costs_only_its_thumbnail(study, tmp_path):
    from dcxcount.report import build_report

    _, out = study
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    keys = [row["_key"] for row in json.loads((copy / "settings.json").read_text())["samplesheet"]]
    (copy / "sections" / keys[0] / "gcl.tif").write_bytes(b"broken")
    page = build_report(copy, sections=pd.read_csv(copy / "sections.csv"),
                        animals=pd.read_csv(copy / "animals.csv"), settings={}, keys=keys)
    assert "no thumbnail" in page and page.count("class='thumb'") == 3
    assert os.path.getsize(copy / "report.html") > 0
