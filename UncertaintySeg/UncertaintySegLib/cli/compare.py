"""`uncertaintyseg compare`: calibration methods side by side on labelled cases, as the seed papers compare them.

    uncertaintyseg compare --model hippocampus-dice --model hippocampus-ce --out comparison
    uncertaintyseg compare --model hippocampus-dice --methods base,temperature,ensemble --max-cases 5 --out quick

For each model, the post-hoc methods are fitted on `--fit-split` (default `calibration`) for the
model's first network and every method is evaluated on `--split` (default `test`); see
`comparison_methods.py` for what each method is. Writes, whole or not at all:
- `comparison.md` / `.csv` / `.json`: Rousseau et al.'s Tables 1-2 (Dice and ECE % per method and
  model, best and not-significantly-worse marked by paired Wilcoxon) plus NLL and Brier with 95%
  bootstrap CIs; fitting times; the run's settings and timings.
- `ece_vs_dice.png` (Rousseau Fig. 1); `ensemble_size.csv/.png` (NLL and Dice vs M = 1..K
  members averaged over member subsets, Mehrtash Fig. 2) for models with several members.
- one folder per model: what `evaluate` writes for its methods (metrics.json, per_case.csv,
  reliability diagrams with the per-subject spread (Rousseau Fig. 2), TP/FP/FN confidence,
  report.html) and `calibrators/<method>/`, the fitted calibrators (`predict --calibrator`).
Cases are read and run one at a time; memory is that of one case and its methods' probabilities.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..data.hippocampus import SPLITS
from ..evaluation.roi import roi_kinds
from ..common.errors import InputError
from .option_types import at_least, device, seed
from .predict import add_trust_bundle_argument
from ..common.json_output import write_json

ROI_CHOICES = roi_kinds(with_mask=False)  # compare reads no mask volumes


def add_compare_parser(subparsers) -> argparse.ArgumentParser:
    from ..analysis.comparison_methods import DEFAULT_METHODS, METHODS

    parser = subparsers.add_parser("compare", help="fit and compare calibration methods (post-hoc, MC dropout, ensembles) "
                                                   "on labelled cases: tables, reliability diagrams, ensemble-size curve")
    parser.add_argument("--model", action="append", required=True,
                        help="bundled model name or model folder; repeat for several (e.g. a Dice- and a CE-trained model)")
    add_trust_bundle_argument(parser)
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                        help=f"comma-separated, from {', '.join(METHODS)} (default: {','.join(DEFAULT_METHODS)})")
    parser.add_argument("--data-root", type=Path, help="folder holding Task04_Hippocampus/")
    parser.add_argument("--download", action="store_true", help="download MSD Task04 into the user cache if it is not found")
    parser.add_argument("--split", choices=SPLITS, default="test", help="cases to evaluate on (default: test)")
    parser.add_argument("--fit-split", choices=SPLITS, default="calibration", help="cases to fit on (default: calibration)")
    parser.add_argument("--max-cases", type=at_least(1), help="evaluate on the split's first N cases only (quick runs)")
    parser.add_argument("--max-fit-cases", type=int, help="fit on the fit split's first N cases only (quick runs)")
    parser.add_argument("--roi", choices=ROI_CHOICES, default="bbox",
                        help="where calibrators are fitted and calibration is measured (default: bbox, the reference "
                             "foreground box dilated 8 mm in-plane, 2 slices out-of-plane)")
    parser.add_argument("--bins", type=at_least(1), default=20, help="equal-width bins for ECE (default: 20)")
    parser.add_argument("--samples", type=at_least(1), default=20, help="MC dropout passes (default: 20)")
    parser.add_argument("--seed", type=seed, default=0, help="seed of MC dropout, voxel sampling and hold-out splits")
    parser.add_argument("--max-voxels-per-case", type=int, default=200_000,
                        help="fit logit calibrators on at most N ROI voxels per case (0: all; default: 200000)")
    parser.add_argument("--kernel-size", type=int, default=5, help="auxconv kernel size (default: 5)")
    parser.add_argument("--epochs", type=at_least(1), default=50, help="auxconv and finetune: at most this many epochs (default: 50)")
    parser.add_argument("--histogram-bins", type=int, default=15, help="histogram binning's bins (default: 15)")
    parser.add_argument("--device", type=device, default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1, ...")
    return parser


def check_arguments(args, methods: list[str]) -> None:
    from ..analysis.comparison_methods import LOGIT_CALIBRATORS

    post_hoc = [m for m in methods if m in LOGIT_CALIBRATORS or m == "finetune"]
    if post_hoc and args.fit_split == args.split:
        raise InputError(f"--fit-split and --split are both '{args.split}': {', '.join(post_hoc)} would be evaluated on the "
                         "cases they were fitted on. Fit on another split (default: calibration).")
    for name in ("max_cases", "max_fit_cases"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise InputError(f"--{name.replace('_', '-')} {value}: expected at least 1.")
    if args.samples < 1 or args.epochs < 1 or args.bins < 1:
        raise InputError("--samples, --epochs and --bins must each be at least 1.")
    if len(set(args.model)) != len(args.model):
        raise InputError(f"--model {' '.join(args.model)}: a model is given twice.")


def within(progress, start: float, width: float):
    """A progress reporter whose 0..1 maps onto `start .. start + width` of the whole run."""
    return lambda stage, fraction, **details: progress(stage, start + width * fraction, **details)


def evaluate_model(fitted, cases: list, args, progress):
    """Per method: `CaseResult`s and TP/FP/FN confidence rows of every case; per case: the ensemble-size scores."""
    from ..evaluation.case_evaluation import evaluate_case
    from ..analysis.comparison_methods import case_probabilities
    from ..evaluation.ensemble_size import case_subset_scores
    from ..evaluation.error_confidence import case_error_confidence
    from ..evaluation.prediction_sets import read_reference
    from ..predict.inference import check_image
    from ..predict.io import read_volume
    from ..evaluation.roi import roi_mask

    spec = fitted.model.spec
    class_names = list(spec.class_names)
    results = {m: [] for m in fitted.methods}
    error_rows = {m: [] for m in fitted.methods}
    subset_scores = []
    for index, case in enumerate(cases):
        progress(f"{spec.name}: evaluating {case.case_id} ({index + 1}/{len(cases)})", index / len(cases))
        image = check_image(read_volume(case.image), spec)
        reference = read_reference(case.label, spec.num_classes)
        if reference.array.shape != image.shape[1:]:
            raise InputError(f"case '{case.case_id}': label map has shape {reference.array.shape}, the image "
                             f"{image.shape[1:]}: expected the same grid.")
        region = roi_mask(args.roi, reference.array, reference.geometry.spacing)
        probabilities, members = case_probabilities(fitted, image, args.samples, args.seed, args.device,
                                                    keep_members=len(fitted.model.networks) > 1)
        for method, values in probabilities.items():
            results[method].append(evaluate_case(case.case_id, values, reference.array, values.argmax(0), class_names,
                                                 reference.geometry.spacing, region, args.bins))
            error_rows[method] += case_error_confidence(case.case_id, values, reference.array, class_names)
        if members:
            subset_scores.append(case_subset_scores(members, reference.array, region))
    return results, error_rows, subset_scores


def run_compare(args, progress) -> dict:
    from ..analysis.comparison_methods import fit_methods, parse_methods
    from ..evaluation.comparison_tables import markdown_tables, save_ece_vs_dice, table_rows, write_table_csv
    from ..data.hippocampus import load_split, resolve_data_root
    from ..evaluation.ensemble_size import pool_cases, write_ensemble_size
    from ..evaluation.reports.evaluation_report import write_evaluation
    from ..common.output_folders import atomic_output_folder
    from ..predict.model_loading import load_model
    from ..predict.outputs import versions

    started = time.perf_counter()
    methods = parse_methods(args.methods)
    check_arguments(args, methods)
    data_root = resolve_data_root(args.data_root, args.download)
    cases = load_split(data_root, args.split)[: args.max_cases]
    fit_cases = load_split(data_root, args.fit_split)[: args.max_fit_cases]
    models = [load_model(name, trust_bundle=args.trust_bundle) for name in args.model]
    classes = {tuple(model.spec.class_names) for model in models}
    if len(classes) > 1:
        raise InputError(f"the models segment different classes ({'; '.join(', '.join(c) for c in classes)}): "
                         "compare models of one task.")
    class_names = list(models[0].spec.class_names)
    settings = {"roi": args.roi, "bins": args.bins, "cases": len(cases), "error_confidence_axis": 2}
    everything, curves, fit_seconds, model_seconds = {}, {}, {}, {}
    with atomic_output_folder(args.out, overwrite=args.overwrite) as staging:
        for number, model in enumerate(models):
            model_started = time.perf_counter()
            start, width = number / len(models), 1 / len(models)
            fitted = fit_methods(model, methods, fit_cases, args, within(progress, start, 0.4 * width))
            results, error_rows, subset_scores = evaluate_model(fitted, cases, args, within(progress, start + 0.4 * width, 0.6 * width))
            folder = staging / folder_name(model.spec.name, everything)
            folder.mkdir()
            write_evaluation(folder, results, error_rows, class_names, settings)
            for method, calibrator in fitted.calibrators.items():
                calibrator.save(folder / "calibrators" / method)
            if fitted.fine_tuning is not None:
                fitted.fine_tuning.save(folder / "calibrators" / "finetune")
            everything[folder.name] = results
            if subset_scores:
                curves[folder.name] = pool_cases(subset_scores)
            fit_seconds[folder.name] = fitted.fit_seconds
            model_seconds[folder.name] = round(time.perf_counter() - model_started, 1)
        progress("writing the comparison", 0.98)
        rows = table_rows(everything, class_names)
        write_table_csv(staging / "comparison.csv", rows)
        markdown = markdown_tables(rows)
        (staging / "comparison.md").write_text(markdown)
        save_ece_vs_dice(staging / "ece_vs_dice.png", everything, class_names)
        if curves:
            write_ensemble_size(staging, curves)
        document = {"methods": methods, "models": list(everything), "split": args.split, "fit_split": args.fit_split,
                    "cases": [c.case_id for c in cases], "fit_cases": [c.case_id for c in fit_cases],
                    "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"},
                    "table": rows, "ensemble_size": curves, "fit_seconds": fit_seconds,
                    "timings": {"per_model_s": model_seconds, "total_s": round(time.perf_counter() - started, 1)},
                    "versions": versions()}
        write_json(staging / "comparison.json", document)
    if args.progress != "json":
        print(markdown)
        print(f"written to {args.out} in {document['timings']['total_s']:.0f} s")
    return document


def folder_name(model_name: str, taken: dict) -> str:
    """A file-safe folder name for a model, unique among those already written."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in model_name) or "model"
    name, number = safe, 2
    while name in taken:
        name, number = f"{safe}_{number}", number + 1
    return name
