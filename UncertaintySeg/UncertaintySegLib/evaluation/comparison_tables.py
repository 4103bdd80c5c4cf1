"""The `compare` table in the form of Rousseau et al.'s Tables 1-2, and its ECE-vs-Dice scatter (their Fig. 1).

Per model and method, over the same cases: mean foreground Dice and top-label ECE (%) per case,
NLL and Brier per case, each as the mean over cases with a 95% bootstrap CI; within a model, the
best method by mean and those not significantly different from it (paired Wilcoxon, p >= 0.05)
are flagged (bold in the Markdown). `results` maps model -> method -> `CaseResult`s, cases in the
same order for every method.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .case_evaluation import CaseResult, merged_histogram
from .comparison import best_or_equivalent, bootstrap_interval
from ..common.csv_tables import write_csv
from ..common.plots import pyplot

SCORES = {  # column -> (per-case value, lower is better)
    "dice": (lambda r, fg: float(np.mean([r.scores[f"dice_{c}"] for c in fg])), False),
    "ece_percent": (lambda r, fg: None if r.scores["ece_top_label"] is None else 100 * r.scores["ece_top_label"], True),
    "nll": (lambda r, fg: r.scores["nll"], True),
    "brier": (lambda r, fg: r.scores["brier"], True),
}


def per_case_values(results: list[CaseResult], score: str, foreground: list[str]) -> list[float | None]:
    value, _ = SCORES[score]
    return [value(r, foreground) for r in results]


def table_rows(results: dict[str, dict[str, list[CaseResult]]], class_names: list[str]) -> list[dict]:
    """One row per model and method: mean, CI and flags per score, plus pooled top-label ECE (%)."""
    foreground = list(class_names[1:])
    rows = []
    for model, methods in results.items():
        flags = {}
        for score, (_, lower) in SCORES.items():
            values = {m: per_case_values(r, score, foreground) for m, r in methods.items()}
            complete = [i for i in range(len(next(iter(values.values())))) if all(v[i] is not None for v in values.values())]
            paired = {m: np.array([v[i] for i in complete], float) for m, v in values.items()}
            flags[score] = best_or_equivalent(paired, lower_is_better=lower) if len(methods) > 1 and complete else {}
        for method, method_results in methods.items():
            row = {"model": model, "method": method, "cases": len(method_results)}
            for score in SCORES:
                values = np.array([v for v in per_case_values(method_results, score, foreground) if v is not None], float)
                low, high = bootstrap_interval(values) if values.size else (None, None)
                flag = flags[score].get(method, {})
                row.update({score: float(values.mean()) if values.size else None, f"{score}_ci_low": low,
                            f"{score}_ci_high": high, f"{score}_best": bool(flag.get("best_or_equivalent", True)),
                            f"{score}_p_vs_best": flag.get("p_value_vs_best")})
            pooled = merged_histogram(method_results, "top_label").compute().ece
            row["ece_pooled_percent"] = None if pooled is None or not np.isfinite(pooled) else 100 * float(pooled)
            rows.append(row)
    return rows


def write_table_csv(path: Path, rows: list[dict]) -> None:
    write_csv(path, rows, rows[0])


def _cell(row: dict, score: str, digits: int, interval: bool = False) -> str:
    value = row[score]
    if value is None:
        return "–"
    text = f"{value:.{digits}f}"
    if interval and row[f"{score}_ci_low"] is not None:
        text += f" [{row[f'{score}_ci_low']:.{digits}f}, {row[f'{score}_ci_high']:.{digits}f}]"
    return f"**{text}**" if row[f"{score}_best"] else text


def markdown_tables(rows: list[dict]) -> str:
    """Table 1: Dice and ECE % per method (columns per model); table 2: NLL and Brier with 95% CIs."""
    models = list(dict.fromkeys(row["model"] for row in rows))
    methods = list(dict.fromkeys(row["method"] for row in rows))
    by_key = {(row["model"], row["method"]): row for row in rows}
    cases = max(row["cases"] for row in rows)

    def table(columns: list[tuple[str, str, int, bool]]) -> list[str]:
        header = ["method"] + [f"{model}: {title}" for model in models for title, *_ in columns]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for method in methods:
            cells = [method]
            for model in models:
                row = by_key.get((model, method))
                cells += ["n/a" if row is None else _cell(row, score, digits, interval) for _, score, digits, interval in columns]
            lines.append("| " + " | ".join(cells) + " |")
        return lines

    note = (f"Mean over {cases} cases; bold: the best method of that model, or not significantly different from it "
            "(paired Wilcoxon signed-rank, p >= 0.05). ECE: top-label, 20 equal-width bins, per case in the ROI.")
    return "\n".join(["Segmentation and calibration (Rousseau et al., Tables 1-2):", "",
                      *table([("Dice", "dice", 3, False), ("ECE %", "ece_percent", 2, False)]), "",
                      "NLL (nats) and Brier score with 95% bootstrap confidence intervals:", "",
                      *table([("NLL", "nll", 4, True), ("Brier", "brier", 4, True)]), "", note, ""])


def save_ece_vs_dice(path: Path, results: dict[str, dict[str, list[CaseResult]]], class_names: list[str]) -> None:
    """Per case and method, ECE (%) against Dice, one panel per model; method means as large markers."""
    plt = pyplot()

    foreground = list(class_names[1:])
    figure, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4), squeeze=False)
    for axis, (model, methods) in zip(axes[0], results.items()):
        for index, (method, method_results) in enumerate(methods.items()):
            dice = per_case_values(method_results, "dice", foreground)
            ece = per_case_values(method_results, "ece_percent", foreground)
            points = np.array([(d, e) for d, e in zip(dice, ece) if e is not None])
            colour = plt.cm.tab10(index % 10)
            axis.scatter(points[:, 0], points[:, 1], s=12, alpha=0.5, color=colour)
            axis.scatter(points[:, 0].mean(), points[:, 1].mean(), s=90, marker="D", edgecolor="black", color=colour,
                         label=method)
        axis.set_title(model, fontsize=10)
        axis.set_xlabel("Dice (mean over foreground classes)")
        axis.set_ylabel("top-label ECE (%)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
