"""`uncertaintyseg calibrate`: fit a post-hoc calibrator on labelled cases and save it for `predict --calibrator`.

    uncertaintyseg calibrate --model hippocampus --method temperature --out hippocampus-ts
    uncertaintyseg calibrate --model hippocampus-dice --method auxconv --roi bbox --max-voxels-per-case 50000 --out dice-aux
    uncertaintyseg calibrate --model hippocampus --method finetune --out hippocampus-ft    # a new model folder

Methods: temperature, vector and Platt scaling, auxiliary convolution (auxconv), last-layer
fine-tuning (finetune), and, for comparison, histogram binning and isotonic regression of the
top-label confidence (see `calibration/`).

A seeded `--holdout-fraction` of the split's cases is set aside and never fitted on: the report
gives the NLL before and after calibration on the fitting voxels and on these held-out voxels
(per forward pass, nats, at most `--max-voxels-per-case` ROI voxels per case and network).
Logit calibrators see one deterministic forward pass per network and case; an ensemble's
members' passes are pooled. `finetune` trains on whole cases as `train.py` does (the ROI applies
to its report only). Cases are read and run one at a time. Writes, whole or not at all:
`calibrator.json` (+ `calibrator.pt`, the tensors), or for `finetune` a model folder
(`model.json`, weights, `fine_tuning.json`) with a `calibrator.json` that says so; and
`fit_report.json`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..calibration.methods import calibration_methods
from ..data.hippocampus import SPLITS
from ..evaluation.roi import roi_kinds
from ..common.errors import InputError
from .option_types import at_least, device, seed
from .predict import add_trust_bundle_argument

ROI_CHOICES = tuple("none" if kind == "whole" else kind for kind in roi_kinds())  # "none": calibrate's name for whole


def add_calibrate_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("calibrate", help="fit a post-hoc calibrator (temperature, vector or Platt scaling, "
                                                     "auxiliary convolution, last-layer fine-tuning) on labelled cases")
    parser.add_argument("--model", nargs="+", required=True, help="bundled model name, model folder or model.json, MONAI "
                                                                  "bundle folder, or TorchScript file; several: one ensemble")
    add_trust_bundle_argument(parser)
    parser.add_argument("--method", required=True, help=f"one of {', '.join(calibration_methods())}")
    parser.add_argument("--data-root", type=Path, help="folder holding Task04_Hippocampus/ (default: as `train` finds it)")
    parser.add_argument("--download", action="store_true", help="download MSD Task04 into the user cache if it is not found")
    parser.add_argument("--split", choices=SPLITS, default="calibration", help="labelled cases to fit on (default: calibration)")
    parser.add_argument("--max-cases", type=at_least(1), help="use only the split's first N cases (quick experiments)")
    parser.add_argument("--roi", choices=ROI_CHOICES, default="bbox",
                        help="voxels fitted on: bbox (reference foreground box dilated 8 mm in-plane, 2 slices "
                             "out-of-plane, as `evaluate --roi bbox`), mask (--mask), none (whole volume) (default: bbox)")
    parser.add_argument("--mask", type=Path, help="ROI mask volume, or a folder of masks named by case id (--roi mask)")
    parser.add_argument("--max-voxels-per-case", type=int, default=200_000,
                        help="fit on at most N ROI voxels per case and network, drawn at random (seeded); 0: all (default: 200000)")
    parser.add_argument("--holdout-fraction", type=float, default=0.2,
                        help="fraction of the cases set aside for the report, never fitted on; 0: fit on all (default: 0.2)")
    parser.add_argument("--seed", type=seed, default=0, help="seed of the case split and the voxel sampling (default: 0)")
    parser.add_argument("--kernel-size", type=int, default=5, help="auxconv: convolution kernel size (default: 5)")
    parser.add_argument("--bins", type=at_least(1), default=15, help="histogram: equal-width confidence bins (default: 15)")
    parser.add_argument("--epochs", type=at_least(1), default=50, help="auxconv, finetune: at most this many epochs (default: 50)")
    parser.add_argument("--learning-rate", type=float,
                        help="auxconv, finetune: Adam learning rate (default: 5e-3 for auxconv; for finetune 1e-3 if the "
                             "model was trained with a Dice loss, 1e-4 with cross-entropy)")
    parser.add_argument("--loss", choices=("ce", "dice", "dice_ce"),
                        help="finetune: the loss the model was trained with (default: from its training_summary.json)")
    parser.add_argument("--device", type=device, default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1, ...")
    return parser


def check_arguments(args) -> None:
    if args.method not in calibration_methods():
        raise InputError(f"unknown calibration method {args.method!r}: expected one of {', '.join(calibration_methods())}.")
    if args.max_voxels_per_case < 0:
        raise InputError(f"--max-voxels-per-case {args.max_voxels_per_case}: expected 0 (all) or more.")
    if not 0 <= args.holdout_fraction < 1:
        raise InputError(f"--holdout-fraction {args.holdout_fraction}: expected a number in [0, 1).")
    if args.max_cases is not None and args.max_cases < 1:
        raise InputError(f"--max-cases {args.max_cases}: expected at least 1.")
    if args.epochs < 1:
        raise InputError(f"--epochs {args.epochs}: expected at least 1.")
    if args.roi == "mask" and args.mask is None:
        raise InputError("--roi mask needs --mask FILE_OR_FOLDER.")


def calibrator_settings(args) -> dict:
    """The command's options under the estimators' constructor names; each method takes those it has."""
    settings = {"max_voxels_per_case": args.max_voxels_per_case or None, "seed": args.seed, "kernel_size": args.kernel_size,
                "max_epochs": args.epochs, "n_bins": args.bins}
    given = {"learning_rate": args.learning_rate, "loss": args.loss}  # None: the method's own default
    return {**settings, **{name: value for name, value in given.items() if value is not None}}


def run_calibrate(args, progress) -> None:
    from ..calibration import fit_calibration, model_fingerprint, save_fitted
    from ..calibration.case_source import CaseSource
    from ..data.hippocampus import load_split, resolve_data_root
    from ..evaluation.prediction_sets import find_volumes
    from ..training.layer_retraining import split_holdout
    from ..training.train import load_cases
    from ..common.output_folders import atomic_output_folder
    from ..predict.models import combine_models
    from ..predict.model_loading import load_model
    from ..predict.outputs import versions

    started = time.perf_counter()
    check_arguments(args)
    data_root = resolve_data_root(args.data_root, args.download)
    cases = load_split(data_root, args.split)[: args.max_cases]
    masks = find_volumes(args.mask, "mask") if args.roi == "mask" else None
    progress("loading model", 0.0)
    model = combine_models([load_model(path, trust_bundle=args.trust_bundle) for path in args.model])
    fingerprint = model_fingerprint(model)
    fit_cases, held_out = split_holdout(cases, args.holdout_fraction, args.seed) if args.holdout_fraction and len(cases) > 1 else (cases, [])
    source = CaseSource(model, args.roi, masks, args.device, args.max_voxels_per_case or None, args.seed)
    fit_started = time.perf_counter()
    if args.method == "finetune":
        progress("fine-tuning", 0.05)
    calibrator = fit_calibration(
        args.method, model, calibrator_settings(args), ignore_other_settings=True,
        logit_cases=lambda: source.logit_cases(fit_cases, progress, "fitting"),
        training_cases=lambda: load_cases(fit_cases, model.spec.normalization),
        progress=lambda stage, fraction, **details: progress(stage, 0.05 + 0.65 * fraction, **details))
    fit_seconds = time.perf_counter() - fit_started
    if args.method == "finetune":
        tuned = calibrator.networks_
        report = {"fit": source.nll_report(fit_cases, progress, "fit cases", (0.7, 0.85), networks_after=tuned),
                  "held_out": source.nll_report(held_out, progress, "held-out cases", (0.85, 0.95), networks_after=tuned)}
    else:
        report = {"fit": {"cases": len(fit_cases), "passes": calibrator.cases_used_, "voxels": calibrator.voxels_used_,
                          "nll_before": calibrator.nll_before_, "nll_after": calibrator.nll_after_},
                  "held_out": source.nll_report(held_out, progress, "held-out cases", (0.7, 0.95), transform=calibrator.transform)}
    record = {
        "method": args.method, "description": calibrator.describe(), "model": fingerprint,
        "data": {"data_root": str(data_root), "split": args.split, "max_cases": args.max_cases,
                 "fit_cases": [case.case_id for case in fit_cases], "held_out_cases": [case.case_id for case in held_out]},
        "settings": {"roi": args.roi, "mask": None if args.mask is None else str(args.mask), "holdout_fraction": args.holdout_fraction,
                     "max_voxels_per_case": args.max_voxels_per_case, "seed": args.seed, "device": args.device,
                     "calibrator": calibrator.get_params()},
        "nll_per_forward_pass": report,
        "timings": {"fit_s": round(fit_seconds, 3), "total_s": round(time.perf_counter() - started, 3)},
        "versions": versions(),
    }
    progress("writing calibrator", 0.97)
    with atomic_output_folder(args.out, overwrite=args.overwrite) as staging:
        save_fitted(calibrator, staging, record)
    if args.progress != "json":
        print(format_report(record))


def format_report(record: dict) -> str:
    lines = [record["description"], f"{'part':<10} {'cases':>5} {'voxels':>9} {'NLL before':>11} {'NLL after':>10}"]
    for name, row in record["nll_per_forward_pass"].items():
        if row["voxels"]:
            lines.append(f"{name:<10} {row['cases']:>5} {row['voxels']:>9} {row['nll_before']:>11.5f} {row['nll_after']:>10.5f}")
        else:
            lines.append(f"{name:<10} {'no cases (--holdout-fraction 0)':>37}")
    lines.append(f"fitted in {record['timings']['fit_s']:.1f} s")
    return "\n".join(lines)
