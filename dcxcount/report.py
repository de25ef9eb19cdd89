"""What a PI reads and a reviewer audits: ``groups.csv``, ``results.xlsx`` and ``report.html``.

All three are built from the study tables (``animals.csv``, ``sections.csv``)
and the section folders, after every ``dcxcount count`` and ``dcxcount
summarize``, so that they always show the corrected numbers.

``report.html`` is one self-contained file: inline CSS and SVG, no script and
nothing fetched from the network, so it opens offline in any browser and can
be mailed or archived with the paper. Every plotted animal is an SVG element
with ``class="animal-point"`` and ``data-animal``/``data-group``/``data-metric``
attributes, so the figure can be checked (and scraped) from the DOM.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from . import __version__
from .groups import groups_table, stage_shares
from .vocabulary import ANALOGUES, STAGES

__all__ = ["REPORT_FILE", "WORKBOOK_FILE", "GROUPS_FILE", "DOUBTFUL_SHARE_FLAG", "MAIN_METRICS", "section_flags",
           "write_workbook", "settings_rows", "build_report", "write_study_files"]

REPORT_FILE = "report.html"
WORKBOOK_FILE = "results.xlsx"
GROUPS_FILE = "groups.csv"

DOUBTFUL_SHARE_FLAG = 0.5
"""A section is flagged when more than this share of its DCX+ cells' stages is doubtful (docs/output.md)."""

MAIN_METRICS = (
    ("estimated_total_dcx", "DCX+ cells, estimated total"),
    ("dcx_per_mm2_gcl", "DCX+ cells per mm² GCL"),
    ("maturation_index", "Maturation index (E + F) / DCX+"),
    ("pct_dcx_neun", "% of DCX+ cells that are NeuN+"),
    ("pct_stage_doubtful", "% of DCX+ stage calls doubtful"),
    ("estimated_total_neun", "NeuN+ cells, estimated total"),
)
"""Per-animal metrics plotted per group, with their titles (those the table has)."""

_STAGE_COLOURS = dict(zip(STAGES, ("#3b0f70", "#5a51a3", "#2c7fb8", "#1a9e77", "#8cc63f", "#f0c419")))
_GROUP_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
_THUMB_PX = 220
# Images larger than this get no background in their thumbnail: reading them would make the
# report take seconds per section (a 2048^2 5-channel 16-bit section is 40 MB).
_BACKGROUND_MAX_BYTES = 64 * 2**20
_NAMES = {"brdu": "BrdU", "edu": "EdU"}
# Characters openpyxl refuses in a cell (XML 1.0 forbids them).
_ILLEGAL_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def write_study_files(out_dir: str | os.PathLike, *, sections: pd.DataFrame, animals: pd.DataFrame,
                      settings_record: Mapping, keys: Sequence[str]) -> pd.DataFrame:
    """Write ``groups.csv``, ``results.xlsx`` and ``report.html`` into a results folder.

    Parameters
    ----------
    out_dir : path
        The results folder; section folders are read from ``out_dir/sections/<key>``.
    sections, animals : DataFrame
        The study tables as written to sections.csv and animals.csv.
    settings_record : mapping
        settings.json's content (``settings`` holds every setting).
    keys : sequence of str
        Each ``sections`` row's folder name under ``out_dir/sections``.

    Returns
    -------
    DataFrame
        The groups table.
    """
    out_dir = Path(out_dir)
    groups = groups_table(animals)
    groups.to_csv(out_dir / GROUPS_FILE, index=False)
    write_workbook(out_dir / WORKBOOK_FILE, animals=animals, groups=groups, sections=sections,
                   settings=settings_record.get("settings", {}))
    page = build_report(out_dir, sections=sections, animals=animals, groups=groups,
                        settings=settings_record.get("settings", {}), keys=keys)
    tmp = out_dir / (REPORT_FILE + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out_dir / REPORT_FILE)
    return groups


# --- workbook ---------------------------------------------------------------------------------------------------

def settings_rows(settings: Mapping, prefix: str = "") -> list[tuple[str, object]]:
    """Every setting as (dotted name, value) rows: nested settings flattened, lists as JSON text."""
    rows: list[tuple[str, object]] = []
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            rows.extend(settings_rows(value, prefix=f"{name}."))
        elif isinstance(value, (Mapping, list, tuple)):
            rows.append((name, json.dumps(value)))
        else:
            rows.append((name, value))
    return rows


def write_workbook(path: str | os.PathLike, *, animals: pd.DataFrame, groups: pd.DataFrame, sections: pd.DataFrame,
                   settings: Mapping) -> Path:
    """``results.xlsx``: sheets ``animals``, ``groups``, ``sections`` and ``settings`` (pandas + openpyxl).

    The table sheets hold exactly what the CSVs hold (an infinity is already an
    empty cell there), so the workbook reads back equal to them. cells.csv is
    left out: a study's cells can outgrow a sheet's 1,048,576 rows.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    settings_table = pd.DataFrame(settings_rows(settings), columns=["setting", "value"])
    settings_table["value"] = settings_table["value"].map(lambda v: v if v is None or isinstance(v, (int, float))
                                                          else str(v))
    with pd.ExcelWriter(tmp, engine="openpyxl") as writer:
        for name, table in (("animals", animals), ("groups", groups), ("sections", sections),
                            ("settings", settings_table)):
            _excel_safe(table).to_excel(writer, sheet_name=name, index=False)
            writer.sheets[name].freeze_panes = "B2"
    tmp.replace(path)
    return path


def _excel_safe(table: pd.DataFrame) -> pd.DataFrame:
    """Text without the control characters XML forbids (a file name could hold one); numbers untouched."""
    text = table.select_dtypes(include=["object", "string"]).columns
    if not len(text):
        return table
    return table.assign(**{c: table[c].map(lambda v: _ILLEGAL_XML.sub("?", v) if isinstance(v, str) else v)
                           for c in text})


# --- flags ------------------------------------------------------------------------------------------------------

def section_flags(row: Mapping) -> tuple[str, list[str]]:
    """A section's QC state: ``("failed" | "flagged" | "ok", reasons)``.

    Failed: its status is not ``ok`` (the reason is the status). Flagged: it was
    counted but needs a look: NaN or infinite pixels, no DCX+ cell counted, or
    more than :data:`DOUBTFUL_SHARE_FLAG` of its DCX+ stage calls doubtful.
    """
    status = str(row.get("status", ""))
    if status != "ok":
        return "failed", [status or "no status"]
    reasons = []
    nonfinite = _number(row.get("nonfinite_px"))
    if nonfinite and nonfinite > 0:
        reasons.append(f"{int(nonfinite)} NaN/infinite pixel positions (set to the channel median)")
    dcx = _number(row.get("dcx_count"))
    doubtful = _number(row.get("stage_doubtful"))
    if dcx == 0:
        reasons.append("no DCX+ cell counted")
    elif dcx and doubtful is not None and doubtful / dcx > DOUBTFUL_SHARE_FLAG:
        reasons.append(f"{100 * doubtful / dcx:.0f} % of DCX+ stage calls doubtful "
                       f"(> {100 * DOUBTFUL_SHARE_FLAG:.0f} %)")
    return ("flagged" if reasons else "ok"), reasons


def _number(value: object) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# --- the page ---------------------------------------------------------------------------------------------------

def build_report(out_dir: str | os.PathLike, *, sections: pd.DataFrame, animals: pd.DataFrame,
                 groups: pd.DataFrame | None = None, settings: Mapping, keys: Sequence[str]) -> str:
    """The report as one HTML string (see the module's docstring).

    A section whose folder is missing or unreadable is listed with its reason
    and drawn without a thumbnail: the report never fails on one section.
    """
    out_dir = Path(out_dir)
    groups = groups_table(animals) if groups is None else groups
    animals = animals.join(stage_shares(animals)) if "dcx_count" in animals else animals
    group_names = list(dict.fromkeys(animals["group"].fillna("").astype(str)))
    colours = {g: _GROUP_COLOURS[i % len(_GROUP_COLOURS)] for i, g in enumerate(group_names)}
    n_failed = int((sections["status"] != "ok").sum())
    parts = [_HEAD, "<h1>dcxcount study report</h1>",
             f"<p class='meta'>{len(animals)} animals in {len(group_names)} groups, {len(sections)} sections "
             f"({len(sections) - n_failed} counted, <b>{n_failed} failed</b>). dcxcount "
             f"{_e(__version__)}. The animal is the unit: every point below is one animal.</p>",
             _sampling_block(settings, animals)]
    if n_failed:
        # Said at the top too: a PI reading the plots must know they lack these sections.
        failed = sections[sections["status"] != "ok"]
        parts.append("<p class='alert'><b>Failed sections, not in the numbers below</b> (details under Quality "
                     "control): " + "; ".join(f"{_e(r.animal)} s{_e(r.section)}: {_e(str(r.status)[:120])}"
                                              for r in failed.itertuples()) + "</p>")

    metrics = [(m, t) for m, t in MAIN_METRICS if m in animals]
    readouts = [(f"pct_{a}_{kind}", f"% of {_NAMES[a]}+ cells that are {label}") for a in ANALOGUES
                if f"pct_{a}_dcx" in animals for kind, label in (("dcx", "DCX+"), ("neun_dcxneg", "NeuN+DCX-"))]
    if readouts:
        parts.append("<h2>Birth-dating read-outs</h2><p>Of the cells labelled at the pulse, the share still "
                     "immature (DCX+) and the share that became mature neurons (NeuN+DCX-), per animal.</p>")
        parts.append("<div class='plots'>" + "".join(_strip_plot(animals, m, t, colours) for m, t in readouts)
                     + "</div>")
    parts.append("<h2>Per group</h2><p>One point per animal; the bar is the group mean, the whiskers ± SEM.</p>")
    parts.append("<div class='plots'>" + "".join(_strip_plot(animals, m, t, colours) for m, t in metrics) + "</div>")
    parts.append(_groups_summary(groups, [m for m, _ in readouts + metrics], group_names))
    if all(f"stage_{s}" in animals for s in STAGES):
        parts.append("<h2>Stage composition per animal</h2>" + _stage_bars(animals))
    parts.append(_qc_block(out_dir, sections, keys))
    parts.append("</body></html>\n")
    return "\n".join(parts)


_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>dcxcount study report</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:26px 0 6px;border-bottom:1px solid #ddd}
.meta{color:#555}.sampling{background:#f4f7fb;border:1px solid #c9d6e8;padding:8px 12px;border-radius:4px}
.plots{display:flex;flex-wrap:wrap;gap:10px}.plot{border:1px solid #eee}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 7px;text-align:right}
th{background:#f6f6f6}td.l,th.l{text-align:left}
.sections{display:flex;flex-wrap:wrap;gap:10px}.section{border:1px solid #ccc;padding:6px;width:236px;font-size:12px}
.section.failed{border:2px solid #c62828;background:#fff4f4}.section.flagged{border:2px solid #ef8f00;background:#fffaf0}
.reason{color:#8a1c1c}.alert{background:#fff4f4;border:1px solid #c62828;padding:6px 10px;border-radius:4px}.legend span{display:inline-block;margin-right:10px;font-size:12px}
.swatch{display:inline-block;width:10px;height:10px;margin-right:3px;vertical-align:middle}
</style></head><body>"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: float) -> str:
    if value is None or not math.isfinite(value):
        return ""
    magnitude = abs(value)
    return f"{value:,.0f}" if magnitude >= 100 else f"{value:.3g}" if magnitude < 1 else f"{value:.1f}"


def _plain(value: float) -> str:
    """A setting as it was given: 6, not 6.0."""
    return str(int(value)) if math.isfinite(value) and value.is_integer() else f"{value:g}"


def _sampling_block(settings: Mapping, animals: pd.DataFrame) -> str:
    """The settings that change the estimated totals, first thing on the page (and where animals differ)."""
    lines = []
    for column, label, unit in (("section_interval", "section interval: every", "th section counted"),
                                ("hemispheres", "hemispheres counted per section:", ""),
                                ("thickness_um", "section thickness:", " µm")):
        values = animals[column].dropna().unique() if column in animals else []
        if len(values) == 0:
            text = "not given (no GCL volume)" if column == "thickness_um" else _e(settings.get(column))
        elif len(values) == 1:
            text = f"{_e(_plain(float(values[0])))}{unit}"
        else:
            per = ", ".join(f"{_e(a)}: {_plain(float(v))}" for a, v in zip(animals["animal"], animals[column]))
            text = f"differs between animals ({per})"
        lines.append(f"<li>{label} <b>{text}</b></li>")
    count = settings.get("count", {}) if isinstance(settings, Mapping) else {}
    models = ", ".join(f"{_e(k)}={_e(v)}" for k, v in (count.get("marker_models") or {}).items())
    lines.append(f"<li>model: <b>{_e(count.get('model', ''))}</b>{' (' + models + ')' if models else ''}; "
                 f"co-label overlap ≥ {_e(count.get('min_overlap_fraction', ''))}</li>")
    return ("<div class='sampling'><b>Settings that change the totals</b><ul>" + "".join(lines) +
            "</ul>Estimated totals = profile count × section interval (× 2 when one hemisphere was counted); "
            "uncorrected profile counts (docs/output.md).</div>")


def _nice_ticks(high: float, low: float = 0.0, n: int = 5) -> list[float]:
    span = high - low
    if not math.isfinite(span) or span <= 0:
        return [low, low + 1]
    raw = span / n
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if m * step >= raw)
    ticks = [math.floor(low / step) * step]
    while ticks[-1] < high - 1e-12:
        ticks.append(ticks[-1] + step)
    return ticks


def _strip_plot(animals: pd.DataFrame, metric: str, title: str, colours: Mapping[str, str]) -> str:
    """One SVG: a column per group, a point per animal, the group mean and ± SEM."""
    width, height, left, top, bottom = 330, 250, 52, 30, 42
    values = pd.to_numeric(animals[metric], errors="coerce").astype("float64")
    finite = values[np.isfinite(values)]
    groups = list(colours)
    high = max(float(finite.max()) if len(finite) else 1.0, 0.0)
    low = min(float(finite.min()) if len(finite) else 0.0, 0.0)
    ticks = _nice_ticks(high if high > low else low + 1, low)
    y0, y1 = ticks[0], ticks[-1]
    plot_h = height - top - bottom
    band = (width - left - 10) / max(len(groups), 1)

    def y(v: float) -> float:
        return top + plot_h * (1 - (v - y0) / (y1 - y0))

    out = [f"<svg class='plot' data-metric='{_e(metric)}' width='{width}' height='{height}' "
           f"viewBox='0 0 {width} {height}' xmlns='http://www.w3.org/2000/svg' font-size='11'>",
           f"<text x='{width / 2}' y='16' text-anchor='middle' font-weight='bold'>{_e(title)}</text>"]
    for t in ticks:
        out.append(f"<line x1='{left}' x2='{width - 8}' y1='{y(t):.1f}' y2='{y(t):.1f}' stroke='#eee'/>"
                   f"<text x='{left - 4}' y='{y(t) + 4:.1f}' text-anchor='end'>{_e(_fmt(t))}</text>")
    out.append(f"<line x1='{left}' x2='{left}' y1='{top}' y2='{top + plot_h}' stroke='#888'/>")
    missing = []
    for i, group in enumerate(groups):
        centre = left + band * (i + 0.5)
        members = animals["group"].fillna("").astype(str) == group
        rows = [(a, v) for a, v in zip(animals.loc[members, "animal"], values[members])]
        present = [(a, v) for a, v in rows if math.isfinite(v)]
        missing += [str(a) for a, v in rows if not math.isfinite(v)]
        label = group if len(group) <= 16 else group[:15] + "…"
        out.append(f"<text x='{centre:.1f}' y='{height - bottom + 16}' text-anchor='middle'>{_e(label)}</text>"
                   f"<text x='{centre:.1f}' y='{height - bottom + 29}' text-anchor='middle' fill='#666'>"
                   f"n = {len(present)}</text>")
        spread = min(band * 0.3, 40)
        for j, (animal, v) in enumerate(present):
            # Spread evenly, not at random: the same study always draws the same figure.
            dx = 0 if len(present) == 1 else spread * (j / (len(present) - 1) - 0.5)
            out.append(f"<circle class='animal-point' data-animal='{_e(animal)}' data-group='{_e(group)}' "
                       f"data-metric='{_e(metric)}' data-value='{v!r}' cx='{centre + dx:.1f}' cy='{y(v):.1f}' r='4' "
                       f"fill='{colours[group]}' fill-opacity='0.75' stroke='#222' stroke-width='0.6'>"
                       f"<title>{_e(animal)}: {_e(_fmt(v))}</title></circle>")
        if present:
            vals = np.array([v for _, v in present])
            mean = float(vals.mean())
            out.append(f"<line class='group-mean' data-group='{_e(group)}' x1='{centre - spread * 0.8:.1f}' "
                       f"x2='{centre + spread * 0.8:.1f}' y1='{y(mean):.1f}' y2='{y(mean):.1f}' stroke='#111' "
                       f"stroke-width='2'><title>mean {_e(_fmt(mean))}</title></line>")
            if len(vals) >= 2:
                sem = float(vals.std(ddof=1) / math.sqrt(len(vals)))
                a, b = y(mean - sem), y(mean + sem)
                out.append(f"<path class='group-sem' d='M{centre:.1f},{a:.1f}V{b:.1f}M{centre - 6:.1f},{a:.1f}"
                           f"h12M{centre - 6:.1f},{b:.1f}h12' stroke='#111' fill='none'>"
                           f"<title>SEM {_e(_fmt(sem))}</title></path>")
    out.append("</svg>")
    if missing:
        out.insert(-1, f"<text x='{left}' y='{height - 2}' fill='#a00'>no value: {_e(', '.join(missing)[:60])}</text>")
    return "".join(out)


def _groups_summary(groups: pd.DataFrame, metrics: list[str], group_names: list[str]) -> str:
    if not len(groups) or not metrics:
        return ""
    table = groups.set_index(["metric", "group"])
    head = "".join(f"<th>{_e(g)}</th>" for g in group_names)
    rows = []
    for metric in metrics:
        cells = []
        for group in group_names:
            try:
                r = table.loc[(metric, group)]
            except KeyError:
                cells.append("<td></td>")
                continue
            sem = f" ± {_fmt(r['sem'])}" if math.isfinite(r["sem"]) else ""
            cells.append(f"<td>{_fmt(r['mean'])}{sem} (n = {int(r['n_animals'])})</td>")
        rows.append(f"<tr><td class='l'>{_e(metric)}</td>{''.join(cells)}</tr>")
    return ("<p>Mean ± SEM (n animals); every metric is in groups.csv and results.xlsx.</p>"
            f"<table><tr><th class='l'>metric</th>{head}</tr>{''.join(rows)}</table>")


def _stage_bars(animals: pd.DataFrame) -> str:
    width, bar_h, left = 760, 16, 170
    rows = animals.reset_index(drop=True)
    height = 30 + bar_h * len(rows) + 6 * len(rows)
    out = [f"<svg class='stages' width='{width}' height='{height}' viewBox='0 0 {width} {height}' "
           "xmlns='http://www.w3.org/2000/svg' font-size='11'>"]
    for i, stage in enumerate(STAGES):
        out.append(f"<rect x='{left + i * 60}' y='4' width='10' height='10' fill='{_STAGE_COLOURS[stage]}'/>"
                   f"<text x='{left + i * 60 + 14}' y='13'>{stage}</text>")
    scale = (width - left - 60) / 100
    for i, row in rows.iterrows():
        top = 24 + i * (bar_h + 6)
        out.append(f"<text x='{left - 6}' y='{top + 12}' text-anchor='end'>{_e(row['animal'])} "
                   f"({_e(row['group'])})</text>")
        x = float(left)
        total = _number(row.get("dcx_count"))
        for stage in STAGES:
            pct = _number(row.get(f"pct_stage_{stage}"))
            if pct is None:
                continue
            w = pct * scale
            out.append(f"<rect class='stage-bar' data-animal='{_e(row['animal'])}' data-stage='{stage}' "
                       f"data-pct='{pct:.3f}' x='{x:.1f}' y='{top}' width='{w:.1f}' height='{bar_h}' "
                       f"fill='{_STAGE_COLOURS[stage]}'><title>{_e(row['animal'])} stage {stage}: {pct:.1f} %"
                       f"</title></rect>")
            x += w
        note = f"n = {int(total)}" if total is not None else "no DCX+ cells"
        out.append(f"<text x='{x + 5:.1f}' y='{top + 12}' fill='#555'>{note}</text>")
    out.append("</svg>")
    return "".join(out)


def _qc_block(out_dir: Path, sections: pd.DataFrame, keys: Sequence[str]) -> str:
    order = {"failed": 0, "flagged": 1, "ok": 2}
    entries = []
    for position, (row, key) in enumerate(zip(sections.to_dict("records"), keys)):
        state, reasons = section_flags(row)
        entries.append((order[state], position, state, reasons, row, key))
    entries.sort(key=lambda e: e[:2])
    n_failed = sum(e[2] == "failed" for e in entries)
    n_flagged = sum(e[2] == "flagged" for e in entries)
    legend = "".join(f"<span><i class='swatch' style='background:{c}'></i>{s}</span>"
                     for s, c in _STAGE_COLOURS.items())
    parts = [f"<h2>Sections: quality control</h2><p><b>{n_failed} failed</b>, <b>{n_flagged} flagged</b>, listed "
             "first with their reasons. Each thumbnail shows the DCX channel (dark: DCX), the GCL used (blue, "
             "outlined) and the DCX+ cells coloured by stage (hollow grey: outside the counted region).</p>",
             f"<div class='legend'>{legend}</div>"]
    if n_failed:
        parts.append("<ul class='failed-list'>" + "".join(
            f"<li class='failed-section' data-key='{_e(key)}'><b>{_e(row['animal'])} s{_e(row['section'])}</b>: "
            f"<span class='reason'>{_e(reasons[0])}</span></li>"
            for _, _, state, reasons, row, key in entries if state == "failed") + "</ul>")
    parts.append("<div class='sections'>")
    for _, _, state, reasons, row, key in entries:
        try:
            thumb = _thumbnail(out_dir / "sections" / str(key), row) if state != "failed" else ""
        except Exception as error:  # a damaged folder must not cost the report: say so in its place
            thumb = f"<p class='reason'>no thumbnail: {_e(type(error).__name__)}: {_e(error)}</p>"
        counts = "" if state == "failed" else (
            f"DCX+ {_e(_plain(_number(row.get('dcx_count')) or 0))}, GCL {_e(_fmt(_number(row.get('gcl_area_mm2'))))}"
            f" mm², GCL from {_e(row.get('gcl_source', ''))}")
        why = "".join(f"<div class='reason'>{_e(r)}</div>" for r in reasons)
        parts.append(f"<div class='section {state}' data-key='{_e(key)}' data-state='{state}'>"
                     f"<b>{_e(row['animal'])} s{_e(row['section'])}</b> ({_e(row.get('group', ''))}) "
                     f"<i>{state}</i>{why}<div>{counts}</div>{thumb}</div>")
    parts.append("</div>")
    return "".join(parts)


def _thumbnail(folder: Path, row: Mapping) -> str:
    """The section's GCL outline and DCX+ cells, as a small SVG (vector, so no image library is needed)."""
    import tifffile
    from skimage.measure import find_contours

    gcl = tifffile.imread(folder / "gcl.tif") > 0
    step = max(1, math.ceil(max(gcl.shape) / _THUMB_PX))
    # Block maximum, so that a thin GCL stays connected when shrunk.
    h, w = (gcl.shape[0] + step - 1) // step, (gcl.shape[1] + step - 1) // step
    padded = np.zeros((h * step, w * step), bool)
    padded[:gcl.shape[0], :gcl.shape[1]] = gcl
    small = padded.reshape(h, step, w, step).any(axis=(1, 3))
    paths = []
    for contour in find_contours(np.pad(small, 1).astype(np.float32), 0.5):
        points = contour[::2] - 1
        paths.append("M" + "L".join(f"{c:.1f},{r:.1f}" for r, c in points) + "Z")
    pixel = _number(row.get("pixel_size_um"))
    background = _dcx_background(row, pixel_size_um=pixel, step=step, shape=(h, w))
    out = [f"<svg class='thumb' width='{w}' height='{h}' viewBox='0 0 {w} {h}' xmlns='http://www.w3.org/2000/svg'>",
           f"<rect width='{w}' height='{h}' fill='#fafafa'/>",
           f"<image class='dcx-image' width='{w}' height='{h}' href='{background}'/>" if background else "",
           f"<path d='{' '.join(paths)}' fill='#c9d6e8' fill-opacity='{0.35 if background else 1}' stroke='#234' "
           "stroke-width='1' fill-rule='evenodd'/>"]
    cells_path = folder / "cells.csv"
    if pixel and cells_path.exists():
        wanted = {"marker", "x_um", "y_um", "stage", "counted"}
        cells = pd.read_csv(cells_path, usecols=lambda c: c in wanted)
        dcx = cells[cells["marker"] == "dcx"] if "marker" in cells else cells.iloc[:0]
        for cell in dcx.itertuples():
            cx, cy = cell.x_um / pixel / step, cell.y_um / pixel / step
            counted = bool(getattr(cell, "counted", True))
            stage = getattr(cell, "stage", None)
            colour = _STAGE_COLOURS.get(stage, "#999") if counted else "none"
            out.append(f"<circle class='qc-cell' cx='{cx:.1f}' cy='{cy:.1f}' r='2.6' fill='{colour}' "
                       f"stroke='{'#222' if counted else '#999'}' stroke-width='0.5'/>")
    out.append("</svg>")
    return "".join(out)


def _dcx_background(row: Mapping, *, pixel_size_um: float | None, step: int, shape: tuple[int, int]) -> str | None:
    """The section's DCX channel, shrunk and inverted (dark cells on white), as a PNG data URL; None if unavailable.

    Optional: a missing, moved or large image only leaves the thumbnail without it.
    """
    import base64
    import io

    from PIL import Image

    from .io import read_section

    path = row.get("path")
    spec = dict(part.split("=", 1) for part in str(row.get("channels") or "").split(";") if "=" in part).get("dcx")
    try:
        if not isinstance(path, str) or spec is None or os.path.getsize(path) > _BACKGROUND_MAX_BYTES:
            return None
        section = read_section(path, pixel_size_um=pixel_size_um)
        names = list(section.channel_names)
        index = names.index(spec) if spec in names else int(spec)
        plane = section.data[index][::step, ::step][:shape[0], :shape[1]].astype(np.float32)
    except (OSError, ValueError, IndexError):
        return None
    low, high = np.nanpercentile(plane, (1, 99.5))
    scaled = np.clip((plane - low) / max(float(high - low), 1e-6), 0, 1)
    buffer = io.BytesIO()
    Image.fromarray((255 - 190 * scaled).astype(np.uint8)).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
