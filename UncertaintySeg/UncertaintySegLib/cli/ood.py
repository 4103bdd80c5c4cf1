"""`uncertaintyseg ood`: how well a scan's mean segment entropy flags out-of-distribution scans.

    uncertaintyseg ood --model hippocampus --out out/ood
    uncertaintyseg ood --model hippocampus-dice --method ensemble --severities 1,3 --max-cases 10 --out out/ood_dice

Runs the model on every case of a split as it is (group "in-distribution"), on corrupted copies
of each (groups "noise-1" ... "contrast-3", see `ood.py`; case n corrupted with seed + n), and on
the data folder's OOD scans where present: `ood/vxm_hippo_{left,right}_image.nii.gz` (group
"vxm_hippo", near-OOD: same anatomy, another scanner) and `ood/spleen_ct_image.nii.gz` (group
"spleen_ct", far-OOD: abdominal CT); a missing one is skipped with a note. One scan in memory at
a time. Writes `ood_scores.csv` (one row per scan), `ood_auroc.csv` and `ood_auroc.json` (per OOD
group and score: AUROC against the in-distribution scans), `ood_histogram.png` and `run.json`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ..data.hippocampus import SPLITS
from ..common.csv_tables import write_csv
from ..common.errors import InputError
from .option_types import at_least, device
from ..analysis.ood import CORRUPTIONS, SEVERITIES
from .predict import add_sampling_arguments, add_trust_bundle_argument, sampling_plan
from ..common.json_output import write_json
from ..common.plots import pyplot

IN_DISTRIBUTION = "in-distribution"
OOD_SCANS = (  # (group, case, kind): files <data root>/ood/<case>_image.nii.gz
    ("vxm_hippo", "vxm_hippo_left", "near-OOD"),
    ("vxm_hippo", "vxm_hippo_right", "near-OOD"),
    ("spleen_ct", "spleen_ct", "far-OOD"),
)
SCORES = ("mean_entropy", "mean_mutual_information")
SCORE_COLUMNS = ("group", "case", "ood", "region", "voxels", *SCORES, "inference_s")
AUROC_COLUMNS = ("group", "kind", "score", "auroc", "n_in_distribution", "n_ood", "mean_in_distribution", "mean_ood")


def add_ood_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("ood", help="score in-distribution, corrupted and out-of-distribution scans by mean "
                                               "segment entropy and measure how well it separates them (AUROC)")
    parser.add_argument("--model", nargs="+", required=True, help="bundled model name, model folder or model.json, MONAI "
                                                                  "bundle folder, or TorchScript file; several: one ensemble")
    add_trust_bundle_argument(parser)
    add_sampling_arguments(parser, seed_help="seed of the first MC dropout pass or draw and of the corruptions (default: 0)")
    parser.add_argument("--data-root", type=Path, help="folder holding Task04_Hippocampus/ and ood/ (default: as `train` finds it)")
    parser.add_argument("--split", choices=SPLITS, default="test", help="in-distribution cases (default: test)")
    parser.add_argument("--max-cases", type=at_least(1), help="use only the split's first N cases")
    parser.add_argument("--severities", default="1,2,3", help="corruption severities among 1 (mild), 2, 3 (strong) (default: 1,2,3)")
    parser.add_argument("--device", type=device, default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1, ...")
    return parser


def parse_severities(text: str) -> tuple[int, ...]:
    """'1,3' -> (1, 3)."""
    try:
        severities = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        severities = ()
    if not severities or not set(severities) <= {1, 2, 3}:
        raise InputError(f"--severities {text!r}: expected comma-separated severities among 1, 2, 3, e.g. 1,2,3.")
    return severities


def run_ood(args, progress) -> None:
    from ..data.hippocampus import load_split, resolve_data_root
    from ..common.output_folders import atomic_output_folder
    from ..predict.models import combine_models
    from ..predict.model_loading import load_model
    from ..predict.outputs import versions

    started = time.perf_counter()
    severities = parse_severities(args.severities)
    if args.max_cases is not None and args.max_cases < 1:
        raise InputError(f"--max-cases {args.max_cases}: expected at least 1.")
    data_root = resolve_data_root(args.data_root)
    cases = load_split(data_root, args.split)[: args.max_cases]
    progress("loading model", 0.0)
    model = combine_models([load_model(path, trust_bundle=args.trust_bundle) for path in args.model])
    plan = sampling_plan(args, len(model.networks))
    scans, notes = ood_scans(data_root)
    rows = score_all(cases, scans, model, plan, severities, args, progress)
    fallback = [f"{row['group']}/{row['case']}" for row in rows if row["region"] != "foreground"]
    if fallback:
        notes.append(f"nothing predicted as foreground in {len(fallback)} scan(s) ({', '.join(fallback)}): "
                     "their scores are means over the whole volume (region column).")
    table = auroc_rows(rows)
    progress("writing outputs", 0.95)
    record = {
        "model": {"name": model.spec.name, "source": str(model.source), "members": len(model.networks)},
        "sampling": plan.to_json(),
        "settings": {"data_root": str(data_root), "split": args.split, "max_cases": args.max_cases, "cases": len(cases),
                     "severities": list(severities), "seed": args.seed, "device": args.device,
                     "corruptions": {kind: {str(s): SEVERITIES[kind][s - 1] for s in severities} for kind in CORRUPTIONS}},
        "notes": notes,
        "timings": {"total_s": round(time.perf_counter() - started, 3), "scans": len(rows),
                    "inference_s": round(sum(row["inference_s"] for row in rows), 3)},
        "outputs": ["ood_scores.csv", "ood_auroc.csv", "ood_auroc.json", "ood_histogram.png"],
        "versions": versions(),
    }
    with atomic_output_folder(args.out, overwrite=args.overwrite) as staging:
        write_csv(staging / "ood_scores.csv", rows, SCORE_COLUMNS, float_format=".6g")
        write_csv(staging / "ood_auroc.csv", table, AUROC_COLUMNS, float_format=".6g")
        write_json(staging / "ood_auroc.json", {"score_region": "predicted foreground (classes > 0)", "rows": table, "notes": notes})
        plot_scores(staging / "ood_histogram.png", rows, table, f"{model.spec.name}, {plan.name}")
        write_json(staging / "run.json", record)
    if args.progress != "json":
        print(format_table(table, notes))


def ood_scans(data_root: Path) -> tuple[list[tuple[str, str, Path]], list[str]]:
    """(group, case, image path) of the OOD scans present under `data_root/ood`, and a note per missing one."""
    scans, notes = [], []
    for group, case, _ in OOD_SCANS:
        path = data_root / "ood" / f"{case}_image.nii.gz"
        if path.is_file():
            scans.append((group, case, path))
        else:
            notes.append(f"skipped {group}/{case}: '{path}' not found.")
    return scans, notes


def score_all(cases, scans, model, plan, severities, args, progress) -> list[dict]:
    """One row per scan: every case as it is and corrupted, then the OOD scans; one volume in memory at a time."""
    from ..predict.io import Volume, read_volume
    from ..analysis.ood import corrupt

    corruptions = [(kind, severity) for kind in CORRUPTIONS for severity in severities]
    total = len(cases) * (1 + len(corruptions)) + len(scans)
    rows = []

    def score(group, case, volume):
        progress(f"{group} {case} ({len(rows) + 1}/{total})", 0.05 + 0.9 * len(rows) / total)
        rows.append(score_scan(group, case, volume, model, plan, args.device))

    for index, case in enumerate(cases):
        volume = read_volume(case.image)
        score(IN_DISTRIBUTION, case.case_id, volume)
        for kind, severity in corruptions:
            score(f"{kind}-{severity}", case.case_id, Volume(corrupt(volume.array, kind, severity, args.seed + index), volume.geometry))
    for group, case, path in scans:
        score(group, case, read_volume(path))
    return rows


def score_scan(group: str, case: str, volume, model, plan, device: str) -> dict:
    from ..analysis.ood import case_score
    from ..predict.pipeline import predict_volume

    prediction = predict_volume(volume, model, device=device, plan=plan)
    result = case_score(prediction.labels, prediction.entropy, prediction.mutual_information)
    return {"group": group, "case": case, "ood": int(group != IN_DISTRIBUTION), "region": result.region,
            "voxels": result.voxels, "mean_entropy": result.mean_entropy,
            "mean_mutual_information": result.mean_mutual_information, "inference_s": prediction.timings["inference_s"]}


def group_kind(group: str) -> str:
    if group == IN_DISTRIBUTION:
        return IN_DISTRIBUTION
    return next((kind for name, _, kind in OOD_SCANS if name == group), "corruption")


def auroc_rows(rows: list[dict]) -> list[dict]:
    """Per OOD group and per score present in `rows`: AUROC against the in-distribution scans, and mean scores."""
    from ..analysis.ood import auroc_by_group

    groups = np.array([row["group"] for row in rows])
    table = []
    for score in SCORES:
        if any(row[score] is None for row in rows):
            continue
        values = np.array([row[score] for row in rows], dtype=np.float64)
        for entry in auroc_by_group(groups, values, IN_DISTRIBUTION):
            table.append({"group": entry["group"], "kind": group_kind(entry["group"]), "score": score, "auroc": entry["auroc"],
                          "n_in_distribution": entry["n_in_distribution"], "n_ood": entry["n_ood"],
                          "mean_in_distribution": float(values[groups == IN_DISTRIBUTION].mean()),
                          "mean_ood": float(values[groups == entry["group"]].mean())})
    return table


def format_table(table: list[dict], notes: list[str]) -> str:
    lines = [f"{'group':<12} {'score':<24} {'AUROC':>6} {'n_ood':>5} {'mean ID':>9} {'mean OOD':>9}"]
    lines += [f"{r['group']:<12} {r['score']:<24} {r['auroc']:6.3f} {r['n_ood']:5d} {r['mean_in_distribution']:9.4f} {r['mean_ood']:9.4f}"
              for r in table]
    return "\n".join(lines + [f"note: {note}" for note in notes])


def plot_scores(path: Path, rows: list[dict], table: list[dict], title: str) -> None:
    """Strip plot of mean entropy per scan, one row per group (in-distribution first), the in-distribution
    range shaded, each OOD group's AUROC on the right (Mehrtash et al., Fig. 1 and 3)."""
    plt = pyplot()

    groups = list(dict.fromkeys(row["group"] for row in rows))
    colours = {IN_DISTRIBUTION: "tab:blue", "corruption": "tab:orange", "near-OOD": "tab:green", "far-OOD": "tab:red"}
    aurocs = {r["group"]: r["auroc"] for r in table if r["score"] == "mean_entropy"}
    inside = [row["mean_entropy"] for row in rows if row["group"] == IN_DISTRIBUTION]
    jitter = np.random.default_rng(0)
    figure, axes = plt.subplots(figsize=(8, 1.6 + 0.38 * len(groups)))
    axes.axvspan(min(inside), max(inside), color="tab:blue", alpha=0.12)
    for position, group in enumerate(groups):
        values = [row["mean_entropy"] for row in rows if row["group"] == group]
        axes.scatter(values, position + jitter.uniform(-0.15, 0.15, len(values)), s=14, alpha=0.8,
                     color=colours[group_kind(group)], edgecolors="none")
        if group in aurocs:
            axes.annotate(f"AUROC {aurocs[group]:.2f}", (1.01, position), xycoords=("axes fraction", "data"), va="center", fontsize=8)
    axes.set_yticks(range(len(groups)), groups)
    axes.set_ylim(len(groups) - 0.5, -0.5)
    axes.set_xlabel("mean entropy over the predicted foreground (nats); shaded: in-distribution range")
    axes.set_title(f"Out-of-distribution scores: {title}", fontsize=10)
    present = dict.fromkeys(group_kind(group) for group in groups)
    figure.legend(handles=[plt.Line2D([], [], marker="o", linestyle="", color=colours[kind], label=kind) for kind in present],
                  loc="lower center", ncol=len(present), fontsize=8, frameon=False)
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout(rect=(0, 0.4 / figure.get_figheight(), 1, 1))
    figure.savefig(path, dpi=120)
    plt.close(figure)
