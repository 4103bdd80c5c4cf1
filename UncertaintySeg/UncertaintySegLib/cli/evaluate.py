"""`uncertaintyseg evaluate`: calibration and segmentation scores of prediction sets against references.

    uncertaintyseg evaluate --pred out/case1 --ref labels/case1.nii.gz --out eval
    uncertaintyseg evaluate --pred base=preds/base --pred ts=preds/ts --ref labelsTr --roi bbox --out eval

`--pred` takes prediction folders, or folders of them, one sub-folder per case; `--ref` a label
volume, or a folder of them, matched by case id (`evaluation/prediction_sets.py`).
Besides the calibration report it writes segment_quality.csv/.json/.png (Dice vs mean segment
entropy, their correlation) and thresholds.json (a fitted mean-entropy flag for `predict`).
`--ref` repeated (one file or folder per annotator) adds annotator agreement and D²_GED
(multi_reference.py); every other metric uses the first `--ref`.
Cases are read one at a time: memory is that of one case.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..common.errors import InputError
from ..common.json_output import json_text
from ..common.output_folders import atomic_output_folder
from ..evaluation.roi import ROI_KINDS
from .option_types import at_least


def add_evaluate_parser(subparsers) -> argparse.ArgumentParser:
    """Register `evaluate` (with its own --out, --overwrite and --progress) on an argparse subparsers object."""
    parser = subparsers.add_parser("evaluate", help="calibration (ECE/MCE/ACE, reliability diagrams), NLL, Brier, "
                                                    "Dice, HD95 and TP/FP/FN confidence of predictions against reference labels")
    parser.add_argument("--pred", action="append", nargs="+", required=True, metavar="[NAME=]DIR",
                        help="prediction folder(s) written by `predict`, or a folder of them (one per case); repeat "
                             "--pred NAME=DIR to compare methods side by side")
    parser.add_argument("--ref", required=True, type=Path, action="append",
                        help="reference label volume, or a folder of them named by case id (e.g. labelsTr); repeat "
                             "--ref, one per annotator, for annotator agreement and D²_GED (annotator_agreement.csv, "
                             "ged.csv); calibration and Dice use the first --ref")
    parser.add_argument("--roi", choices=ROI_KINDS, default="whole",
                        help="where calibration, NLL and Brier are measured: whole volume, --mask, or bbox (reference "
                             "foreground box dilated 8 mm in-plane, 2 slices out-of-plane)")
    parser.add_argument("--mask", type=Path, help="ROI mask volume, or a folder of masks named by case id (--roi mask)")
    parser.add_argument("--bins", type=at_least(1), default=20, help="number of calibration bins (default: 20)")
    parser.add_argument("--error-confidence-axis", type=int, choices=(0, 1, 2), default=2,
                        help="axis of the (I, J, K) volume whose slices are scored TP/FP/FN/TN in "
                             "error_confidence.csv (default: 2)")
    parser.add_argument("--dice-floor", type=float, default=0.8,
                        help="segments below this Dice count as poor when fitting thresholds.json's mean-entropy flag (default: 0.8)")
    parser.add_argument("--out", required=True, type=Path, help="output folder (written whole or not at all)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--progress", choices=("json", "text", "none"), default="text",
                        help="progress format (json: one object per line)")
    return parser


def run_evaluate(args, progress) -> dict:
    """The `evaluate` command: read, evaluate, write the output folder whole; returns metrics.json's content."""
    from ..evaluation.calibration_metrics import CalibrationHistogram
    from ..evaluation.prediction_sets import evaluate_sets, find_volumes, parse_prediction_sets
    from ..evaluation.reports.evaluation_report import write_evaluation
    from ..evaluation.segment_quality import write_segment_quality

    if args.bins < 1 or args.bins > CalibrationHistogram(2).grid:
        raise InputError(f"--bins {args.bins}: expected a number of bins between 1 and {CalibrationHistogram(2).grid}.")
    if args.roi == "mask" and args.mask is None:
        raise InputError("--roi mask needs --mask FILE_OR_FOLDER.")
    progress("finding cases", 0.0)
    annotators = [find_volumes(path, "reference") for path in args.ref]
    references = annotators[0]
    sets = parse_prediction_sets(args.pred, references)
    masks = find_volumes(args.mask, "mask") if args.roi == "mask" else None
    if not 0.0 < args.dice_floor < 1.0:
        raise InputError(f"--dice-floor {args.dice_floor}: expected a Dice between 0 and 1 (e.g. 0.8).")
    results, error_rows, quality_rows, units, agreement, ged = evaluate_sets(
        sets, references, args.roi, masks, args.bins, progress, args.error_confidence_axis, annotators, args.ref)
    if len(units) > 1:
        raise InputError(f"predictions mix entropy units {sorted(units)}: run predict with or without --normalize-uncertainty for all.")
    settings = {"roi": args.roi, "bins": args.bins, "error_confidence_axis": args.error_confidence_axis,
                "cases": len(sets[0].folders), "references": str(args.ref[0]),
                "predictions": {s.name: sorted(str(f) for f in s.folders.values()) for s in sets},
                "mask": None if args.mask is None else str(args.mask)}
    progress("writing report", 0.9)
    with atomic_output_folder(args.out, args.overwrite) as staging:
        extra = {}
        if len(args.ref) > 1:
            from ..evaluation.multi_reference import write_multi_reference

            settings["annotator_references"] = [str(path) for path in args.ref]
            extra["annotators"] = write_multi_reference(staging, agreement, ged, sets[0].class_names, len(args.ref))
        document = write_evaluation(staging, results, error_rows, sets[0].class_names, settings, extra)
        write_segment_quality(staging, quality_rows, sets[0].class_names, args.dice_floor, units.pop())
    if args.progress != "json":
        print(json_text({name: method["pooled"] for name, method in document["methods"].items()}), end="")
    return document
