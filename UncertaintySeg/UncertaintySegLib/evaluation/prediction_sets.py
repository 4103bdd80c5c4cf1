"""`uncertaintyseg evaluate`: calibration and segmentation scores of prediction sets against references.

    uncertaintyseg evaluate --pred out/case1 --ref labels/case1.nii.gz --out eval
    uncertaintyseg evaluate --pred base=preds/base --pred ts=preds/ts --ref labelsTr --roi bbox --out eval

A prediction folder is what `uncertaintyseg predict` writes (probabilities.nrrd, labels.nrrd,
run.json); `--pred` takes such folders, or folders of them, one sub-folder per case. A case's
id is its folder's name (or, failing a match, the stem of run.json's input image); references
(`--ref`: a label volume, or a folder of them) are matched by file name without extension.
Besides the calibration report it writes segment_quality.csv/.json/.png (Dice vs mean segment
entropy, their correlation) and thresholds.json (a fitted mean-entropy flag for `predict`).
`--ref` repeated (one file or folder per annotator) adds annotator agreement and D²_GED
(multi_reference.py); every other metric uses the first `--ref`.
Cases are read one at a time, so memory is that of one case; across cases only small records
are kept (histograms, and the TP/FP/FN confidence rows of `error_confidence`: one per slice and
component). The metric modules (and Numba) are imported when evaluating, not when the CLI's
parser is built.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..common.errors import InputError
from ..cli.option_types import at_least
from ..predict.io import READABLE, Volume, read_volume
from ..common.output_folders import atomic_output_folder
from ..predict.outputs import OUTPUT_FILES, SAMPLE_MAP_FILES
from .roi import ROI_KINDS, roi_mask
from ..common.json_output import json_text

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
GEOMETRY_TOLERANCE_MM = 1e-3


@dataclass
class PredictionSet:
    """One method: case id -> prediction folder, and its class names."""

    name: str
    folders: dict[str, Path]
    class_names: list[str]


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


def case_id_of(path: Path) -> str:
    """File name without a volume extension (`hippocampus_001.nii.gz` -> `hippocampus_001`)."""
    name = path.name
    return next((name[: -len(s)] for s in VOLUME_SUFFIXES if name.endswith(s)), name)


def find_volumes(path: Path, what: str) -> dict[str, Path]:
    """Case id -> volume file for a file or a folder of files."""
    if path.is_file():
        return {case_id_of(path): path}
    if not path.is_dir():
        raise InputError(f"{what} '{path}' not found: expected {READABLE}, or a folder of them named by case id.")
    found = {case_id_of(p): p for p in sorted(path.iterdir())
             if p.is_file() and not p.name.startswith(".") and p.name.endswith(VOLUME_SUFFIXES)}
    if not found:
        raise InputError(f"no volumes in {what} folder '{path}': expected files ending in {', '.join(VOLUME_SUFFIXES)}.")
    return found


def _is_prediction_folder(path: Path) -> bool:
    return (path / OUTPUT_FILES["probabilities"]).is_file()


def _prediction_folders(paths: list[Path]) -> list[Path]:
    folders = []
    for path in paths:
        if _is_prediction_folder(path):
            folders.append(path)
        elif path.is_dir() and any(_is_prediction_folder(p) for p in path.iterdir()):
            folders += sorted(p for p in path.iterdir() if _is_prediction_folder(p))
        else:
            raise InputError(f"'{path}' is not a prediction folder: expected a folder holding "
                             f"{OUTPUT_FILES['probabilities']} and run.json (as `uncertaintyseg predict` writes), "
                             "or a folder of such folders.")
    return folders


def _run_record(folder: Path) -> dict:
    path = folder / "run.json"
    if not path.is_file():
        raise InputError(f"'{folder}' has no run.json: expected the folder `uncertaintyseg predict` wrote.")
    return json.loads(path.read_text())


def _match_case(folder: Path, record: dict, references: dict[str, Path]) -> str:
    """The reference case id of a prediction folder: the only reference, the folder's name, or its input's stem."""
    if len(references) == 1:
        return next(iter(references))
    candidates = [folder.name] + ([case_id_of(Path(record["input"]))] if record.get("input") else [])
    match = next((c for c in candidates if c in references), None)
    if match is None:
        raise InputError(f"no reference for prediction '{folder}' (case id '{folder.name}'): expected a reference file "
                         f"named {folder.name} with a volume extension in --ref; found {len(references)} references.")
    return match


def parse_prediction_sets(values: list[list[str]], references: dict[str, Path]) -> list[PredictionSet]:
    """Turn the `--pred` groups into named prediction sets matched to reference case ids."""
    sets = []
    for index, group in enumerate(values):
        first = group[0]
        name, first_path = first.split("=", 1) if "=" in first and not Path(first).exists() else (None, first)
        paths = [Path(first_path)] + [Path(p) for p in group[1:]]
        name = name or ("prediction" if len(values) == 1 else paths[0].name or f"set{index + 1}")
        folders = _prediction_folders(paths)
        if len(references) == 1 and len(folders) > 1:
            raise InputError(f"--pred '{name}' holds {len(folders)} cases but --ref is one volume: pass a folder of "
                             "references named by case id.")
        records = {folder: _run_record(folder) for folder in folders}
        cases = {}
        for folder, record in records.items():
            case = _match_case(folder, record, references)
            if case in cases:
                raise InputError(f"prediction set '{name}' has two predictions for case '{case}': '{cases[case]}' "
                                 f"and '{folder}'; keep one.")
            cases[case] = folder
        class_names = {tuple(record.get("class_names", [])) for record in records.values()}
        if len(class_names) != 1 or not next(iter(class_names)):
            raise InputError(f"prediction set '{name}' has run.json files with differing or missing class_names "
                             f"({sorted(class_names)}): expected one model's classes for a set.")
        sets.append(PredictionSet(name, cases, list(next(iter(class_names)))))
    _check_sets_agree(sets)
    return sets


def _check_sets_agree(sets: list[PredictionSet]) -> None:
    names = [s.name for s in sets]
    if len(set(names)) != len(names):
        raise InputError(f"prediction sets need distinct names, found {names}: use --pred NAME=DIR.")
    for other in sets[1:]:
        if set(other.folders) != set(sets[0].folders):
            missing = sorted(set(sets[0].folders) ^ set(other.folders))
            raise InputError(f"sets '{sets[0].name}' and '{other.name}' cover different cases (differing: "
                             f"{', '.join(missing[:5])}): expected the same cases, so that methods compare pairwise.")
        if len(other.class_names) != len(sets[0].class_names):
            raise InputError(f"sets '{sets[0].name}' and '{other.name}' have {len(sets[0].class_names)} and "
                             f"{len(other.class_names)} classes: expected the same classes.")


def read_reference(path: Path, num_classes: int) -> Volume:
    """A reference label map `(I, J, K)` as integers in 0..C-1 (any stored dtype holding whole numbers)."""
    volume = read_volume(path)
    labels = volume.array
    if labels.ndim != 3:
        raise InputError(f"reference '{path}' has shape {labels.shape}: expected a 3-D label map (I, J, K).")
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise InputError(f"reference '{path}' holds non-integer values: expected class indices 0..{num_classes - 1}.")
    low, high = labels.min(), labels.max()
    if low < 0 or high >= num_classes:
        raise InputError(f"reference '{path}' holds labels {low:g}..{high:g}: expected 0..{num_classes - 1} for the "
                         f"{num_classes} predicted classes; check the reference belongs to this model.")
    return Volume(labels.astype(np.uint8 if num_classes <= 256 else np.int32), volume.geometry)


def read_prediction(folder: Path, reference: Volume, reference_path: Path, num_classes: int) -> tuple[Volume, np.ndarray]:
    """Probabilities `(C, I, J, K)` and predicted labels `(I, J, K)`, checked to lie on the reference's grid."""
    probabilities = read_volume(folder / OUTPUT_FILES["probabilities"])
    if probabilities.array.ndim != 4 or probabilities.num_channels != num_classes:
        raise InputError(f"'{folder / OUTPUT_FILES['probabilities']}' has shape {probabilities.array.shape}: expected "
                         f"({num_classes}, I, J, K), one component per class in run.json.")
    if probabilities.spatial_shape != reference.spatial_shape or not probabilities.geometry.matches(
            reference.geometry, GEOMETRY_TOLERANCE_MM):
        raise InputError(
            f"prediction '{folder}' and reference '{reference_path}' lie on different grids: prediction "
            f"{probabilities.spatial_shape} voxels, spacing {probabilities.geometry.spacing}, origin "
            f"{probabilities.geometry.origin}; reference {reference.spatial_shape}, spacing {reference.geometry.spacing}, "
            f"origin {reference.geometry.origin}. Expected the same grid: predict on the reference's image, or "
            "resample the reference onto the prediction.")
    labels_path = folder / OUTPUT_FILES["labels"]
    predicted = read_volume(labels_path).array if labels_path.is_file() else probabilities.array.argmax(axis=0)
    return probabilities, predicted


def read_uncertainty(folder: Path, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Entropy `(I, J, K)` (entropy.nrrd, else from the probabilities), MI (or None) and the entropy units of a prediction folder."""
    record = _run_record(folder)
    entropy_path = folder / OUTPUT_FILES["entropy"]
    if entropy_path.is_file():
        entropy, units = read_volume(entropy_path).array, record.get("entropy_units", "nats")
    else:
        from scipy.special import entr

        entropy, units = entr(probabilities).sum(axis=0), "nats"
    mi_path = folder / SAMPLE_MAP_FILES["mutual_information"]
    return entropy, (read_volume(mi_path).array if mi_path.is_file() else None), units


def evaluate_sets(sets: list[PredictionSet], references: dict[str, Path], roi: str, masks: dict[str, Path] | None,
                  bins: int, progress, axis: int, annotators: list[dict[str, Path]] | None = None,
                  annotator_args: list[Path] | None = None) -> tuple[dict, dict, dict, set[str], dict, dict]:
    """Every case of every set, one case read at a time.

    Returns, per set: its `CaseResult`s (same case order for every set), its `ErrorConfidenceRow`s
    (every foreground class, slices along `axis`, and components), its `SegmentQualityRow`s; the
    entropy units met; and, with `annotators` (every --ref's cases, the first being `references`),
    per set its (case, AgreementRow) and (case, EnergyDistance) records.
    """
    from .case_evaluation import evaluate_case
    from .error_confidence import case_error_confidence
    from .multi_reference import annotator_paths, case_multi_reference, check_same_grid
    from .segment_quality import case_segment_quality

    cases = sorted(sets[0].folders)
    results = {s.name: [] for s in sets}
    error_rows = {s.name: [] for s in sets}
    quality_rows = {s.name: [] for s in sets}
    units = set()
    agreement = {s.name: [] for s in sets}
    ged = {s.name: [] for s in sets}
    num_classes = len(sets[0].class_names)
    for index, case in enumerate(cases):
        progress("evaluating", 0.05 + 0.8 * index / len(cases), case=case)
        reference = read_reference(references[case], num_classes)
        mask = None
        if masks is not None:
            mask_path = masks.get(case) or (next(iter(masks.values())) if len(masks) == 1 else None)
            if mask_path is None:
                raise InputError(f"no ROI mask for case '{case}' in --mask: expected a file named {case} with a volume extension.")
            mask = read_volume(mask_path).array
        region = roi_mask(roi, reference.array, reference.geometry.spacing, mask)
        raters = None
        if annotators and len(annotators) > 1:
            raters = [reference.array]
            for path in annotator_paths(case, annotators, annotator_args)[1:]:
                other = read_reference(path, num_classes)
                check_same_grid(reference, references[case], other, path)
                raters.append(other.array)
        for prediction_set in sets:
            folder = prediction_set.folders[case]
            probabilities, predicted = read_prediction(folder, reference, references[case], num_classes)
            try:
                result = evaluate_case(case, probabilities.array, reference.array, predicted, prediction_set.class_names,
                                       reference.geometry.spacing, region, bins)
                rows = case_error_confidence(case, probabilities.array, reference.array, prediction_set.class_names, axis)
            except InputError as error:
                raise InputError(f"case '{case}' of '{prediction_set.name}' ({folder}): {error}") from None
            entropy, mutual_information, entropy_units = read_uncertainty(folder, probabilities.array)
            units.add(entropy_units)
            results[prediction_set.name].append(result)
            error_rows[prediction_set.name] += rows
            quality_rows[prediction_set.name] += case_segment_quality(
                prediction_set.name, case, predicted, reference.array, entropy, prediction_set.class_names, mutual_information)
            if raters is not None:
                case_agreement, case_ged = case_multi_reference(case, raters, probabilities.array, folder,
                                                                prediction_set.class_names, region)
                agreement[prediction_set.name] += case_agreement
                ged[prediction_set.name] += case_ged
    return results, error_rows, quality_rows, units, agreement, ged


def run_evaluate(args, progress) -> dict:
    """The `evaluate` command: read, evaluate, write the output folder whole; returns metrics.json's content."""
    from .calibration_metrics import CalibrationHistogram
    from .reports.evaluation_report import write_evaluation
    from .segment_quality import write_segment_quality

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
            from .multi_reference import write_multi_reference

            settings["annotator_references"] = [str(path) for path in args.ref]
            extra["annotators"] = write_multi_reference(staging, agreement, ged, sets[0].class_names, len(args.ref))
        document = write_evaluation(staging, results, error_rows, sets[0].class_names, settings, extra)
        write_segment_quality(staging, quality_rows, sets[0].class_names, args.dice_floor, units.pop())
    if args.progress != "json":
        print(json_text({name: method["pooled"] for name, method in document["methods"].items()}), end="")
    return document
