"""Prediction sets against references: find the cases, read them back, evaluate them one at a time.

A prediction folder is what `uncertaintyseg predict` writes (probabilities.nrrd, labels.nrrd,
run.json); a set is such folders, or folders of them, one sub-folder per case. A case's id is its
folder's name (or, failing a match, the stem of run.json's input image); references (a label
volume, or a folder of them) are matched by file name without extension. Cases are read one at
a time, so memory is that of one case; across cases only small records are kept (histograms,
and the TP/FP/FN confidence rows of `error_confidence`: one per slice and component). The metric
modules (and Numba) are imported when evaluating, not when this module is imported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..common.errors import InputError
from ..predict.io import READABLE, Volume, read_volume
from ..predict.outputs import OUTPUT_FILES, SAMPLE_MAP_FILES
from .roi import roi_mask

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
GEOMETRY_TOLERANCE_MM = 1e-3


@dataclass
class PredictionSet:
    """One method: case id -> prediction folder, and its class names."""

    name: str
    folders: dict[str, Path]
    class_names: list[str]


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
