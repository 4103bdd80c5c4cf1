"""Write an evaluation: metrics.json, per_case.csv, reliability.csv, reliability PNGs, error_confidence.csv/.png, report.html.

`methods` maps a method name to its list of `CaseResult` (same cases, same order, for every
method). Empty values (a score undefined for a case, e.g. an empty ROI) are written as empty
CSV cells and JSON nulls, with the reason in a `note`; never as NaN.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from ..binning import VARIANTS
from ..case_evaluation import (CaseResult, lower_is_better, marginal_curve, merged_histogram, pooled_scores, score_names,
                              subject_spread)
from ..comparison import best_or_equivalent, bootstrap_interval
from ..error_confidence import (OUTCOMES, UNITS, ErrorConfidenceRow, save_error_confidence_plot,
                               summarize_error_confidence, write_error_confidence_csv)
from .reliability_plots import save_reliability_diagram
from ...common.csv_tables import write_csv
from ...common.json_output import write_json

VARIANT_TITLES = {"top_label": "top-label", "class_wise": "class-wise (classes pooled)", "foreground": "binary foreground"}


def _plain(value):
    """JSON/CSV-safe number: None for NaN or infinity."""
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def summarize_methods(methods: dict[str, list[CaseResult]], class_names: list[str]) -> dict:
    """Pooled scores, mean over cases with bootstrap 95% CI, per-case scores and (2+ methods) the comparison table."""
    names = score_names(class_names)
    summary = {"methods": {}, "comparison": {}}
    for method, results in methods.items():
        means = {}
        for score in names:
            values = np.array([r.scores[score] for r in results if r.scores[score] is not None], float)
            means[score] = None if values.size == 0 else {
                "mean": float(values.mean()), "ci95": list(bootstrap_interval(values)), "cases": int(values.size)}
        summary["methods"][method] = {
            "pooled": {k: _plain(v) if k != "voxels" else v for k, v in pooled_scores(results, class_names).items()},
            "mean_over_cases": means,
            "per_case": {r.case: {"voxels": r.voxels, "note": r.note, **{k: _plain(r.scores[k]) for k in names}}
                         for r in results},
        }
    if len(methods) > 1:
        for score in names:
            complete = [i for i in range(len(next(iter(methods.values()))))
                        if all(results[i].scores[score] is not None for results in methods.values())]
            if complete:
                values = {m: np.array([results[i].scores[score] for i in complete], float) for m, results in methods.items()}
                summary["comparison"][score] = {"cases": len(complete),
                                                "lower_is_better": lower_is_better(score),
                                                "methods": best_or_equivalent(values, lower_is_better(score))}
    return summary


def write_per_case_csv(path: Path, methods: dict[str, list[CaseResult]], class_names: list[str]) -> None:
    names = score_names(class_names)
    write_csv(path, ([method, r.case, r.voxels,
                      *("" if _plain(r.scores[n]) is None else repr(_plain(r.scores[n])) for n in names), r.note]
                     for method, results in methods.items() for r in results), ["method", "case", "voxels", *names, "note"])


def pooled_curves(methods: dict[str, list[CaseResult]]) -> dict[tuple[str, str], tuple]:
    """(method, variant) -> (pooled equal-width marginal curve `(1, B)`, per-subject spread)."""
    return {(method, variant): (marginal_curve(merged_histogram(results, variant)), subject_spread(results, variant))
            for method, results in methods.items() for variant in VARIANTS}


def reliability_rows(curves: dict[tuple[str, str], tuple]) -> list[dict]:
    """One row per method, variant and bin: pooled count, confidence, accuracy and the per-subject spread."""
    rows = []
    for (method, variant), (curve, spread) in curves.items():
        for b in range(curve.count.shape[1]):
            rows.append({"method": method, "variant": variant, "bin": b, "lower": float(curve.lower[0, b]),
                         "upper": float(curve.upper[0, b]), "count": int(curve.count[0, b]),
                         "confidence": _plain(curve.confidence[0, b]), "accuracy": _plain(curve.accuracy[0, b]),
                         "subject_mean_accuracy": _plain(spread["mean"][b]),
                         "subject_sd_accuracy": _plain(spread["std"][b]), "subjects": int(spread["subjects"][b])})
    return rows


def write_reliability(folder: Path, methods: dict[str, list[CaseResult]], summary: dict) -> list[Path]:
    """reliability.csv and one PNG per method and variant; returns the PNG paths."""
    curves = pooled_curves(methods)
    rows = reliability_rows(curves)
    write_csv(folder / "reliability.csv", rows, rows[0])
    images = []
    for (method, variant), (curve, spread) in curves.items():
        path = folder / f"reliability_{_file_safe(method)}_{variant}.png"
        title = f"{method}: {VARIANT_TITLES[variant]}, {len(methods[method])} case(s)"
        save_reliability_diagram(path, curve, title, summary["methods"][method]["pooled"][f"ece_{variant}"], spread)
        images.append(path)
    return images


def error_confidence_summary(error_rows: dict[str, list[ErrorConfidenceRow]]) -> dict:
    """method -> class -> `summarize_error_confidence` of that class's rows (all cases)."""
    return {method: {name: summarize_error_confidence([r for r in rows if r.class_name == name])
                     for name in dict.fromkeys(r.class_name for r in rows)}
            for method, rows in error_rows.items()}


def _error_confidence_html(summary: dict, axis: int) -> list[str]:
    lines = ["<h2>TP/FP/FN confidence</h2>",
             (f"<p>Mean confidence of the predicted label on true positives, false positives and false negatives, per "
              f"slice (axis {axis}) and per 3-D component; a trustworthy model is sure on TP and unsure on FP/FN. "
              "Each cell: count, mean [median] confidence. Every row: error_confidence.csv.</p>"),
             "<table><tr><th>method</th><th>class</th><th>unit</th>"
             + "".join(f"<th>{o}</th>" for o in OUTCOMES["slice"]) + "</tr>"]
    for method, classes in summary.items():
        for name, units in classes.items():
            for unit in UNITS:
                cells = []
                for outcome in OUTCOMES["slice"]:
                    entry = units[unit].get(outcome)
                    cells.append("<td>&ndash;</td>" if entry is None else
                                 f"<td>{entry['count']}: {_cell(entry['mean_confidence'])} "
                                 f"[{_cell(entry['median_confidence'])}]</td>")
                lines.append(f"<tr><th>{html.escape(method)}</th><th>{html.escape(name)}</th><th>{unit}</th>"
                             f"{''.join(cells)}</tr>")
    lines += ["</table>", "<img src='error_confidence.png' alt='TP/FP/FN confidence'>"]
    return lines


def _file_safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def _cell(value) -> str:
    return "&ndash;" if value is None else f"{value:.4g}"


def write_html(path: Path, summary: dict, images: list[Path], settings: dict, error_summary: dict,
               annotators: dict | None = None) -> None:
    """A self-contained page: the method table (bold = best or not significantly different), the diagrams, TP/FP/FN confidence."""
    methods = list(summary["methods"])
    scores = list(next(iter(summary["methods"].values()))["mean_over_cases"])
    lines = ["<!doctype html><html><head><meta charset='utf-8'><title>UncertaintySeg evaluation</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}img{width:420px;margin:6px}</style></head><body>",
             "<h1>UncertaintySeg evaluation</h1>",
             f"<p>ROI: {html.escape(str(settings['roi']))}; {settings['bins']} bins; {settings['cases']} case(s). "
             "Values: mean over cases [bootstrap 95% CI]; pooled = all voxels of all cases together. "
             "Bold: best, or not significantly different from the best (paired Wilcoxon, p &ge; 0.05).</p>",
             "<table><tr><th>score</th>" + "".join(f"<th>{html.escape(m)}</th>" for m in methods) + "</tr>"]
    for score in scores:
        cells = []
        for method in methods:
            entry = summary["methods"][method]["mean_over_cases"][score]
            pooled = summary["methods"][method]["pooled"].get(score)
            text = "&ndash;" if entry is None else (f"{entry['mean']:.4g} [{entry['ci95'][0]:.4g}, {entry['ci95'][1]:.4g}]"
                                                    f"<br><small>pooled {_cell(pooled)}</small>")
            flags = summary["comparison"].get(score, {}).get("methods", {}).get(method, {})
            cells.append(f"<td>{'<b>' + text + '</b>' if flags.get('best_or_equivalent') else text}</td>")
        lines.append(f"<tr><th>{html.escape(score)}</th>{''.join(cells)}</tr>")
    lines.append("</table><h2>Reliability diagrams</h2>")
    lines += [f"<img src='{html.escape(p.name)}' alt='{html.escape(p.stem)}'>" for p in images]
    lines += _error_confidence_html(error_summary, settings["error_confidence_axis"])
    if annotators:
        from ..multi_reference import annotator_html

        lines += annotator_html(annotators)
    lines.append("<p>Per case: per_case.csv; per bin: reliability.csv; per slice and component: error_confidence.csv; "
                 "everything: metrics.json.</p></body></html>")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")  # as its <meta charset> says, whatever the locale


def write_evaluation(folder: Path, methods: dict[str, list[CaseResult]], error_rows: dict[str, list[ErrorConfidenceRow]],
                     class_names: list[str], settings: dict, extra: dict | None = None) -> dict:
    """Write every file of an evaluation into an existing (staging) folder; returns metrics.json's content.

    `error_rows`: method -> `ErrorConfidenceRow`s of all its cases; `settings` holds `error_confidence_axis`;
    `extra`: further top-level entries of metrics.json (e.g. the annotator summary).
    """
    summary = summarize_methods(methods, class_names)
    error_summary = error_confidence_summary(error_rows)
    document = {"settings": settings, "class_names": class_names, **summary, "error_confidence": error_summary, **(extra or {})}
    write_json(folder / "metrics.json", document)
    write_per_case_csv(folder / "per_case.csv", methods, class_names)
    images = write_reliability(folder, methods, summary)
    write_error_confidence_csv(folder / "error_confidence.csv", error_rows)
    save_error_confidence_plot(folder / "error_confidence.png", error_rows)
    write_html(folder / "report.html", summary, images, settings, error_summary, (extra or {}).get("annotators"))
    return document
