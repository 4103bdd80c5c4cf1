"""Read back the folder `uncertaintyseg predict` wrote: a `Prediction`, its run record and segment rows.

The Slicer panel runs `predict` out of process and shows its folder through the same code that
shows an in-process `Prediction`; this is the reading half of `outputs.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..common.errors import InputError
from .io import read_volume
from .outputs import OUTPUT_FILES, SAMPLE_MAP_FILES
from .pipeline import Prediction
from .segment_scores import SEGMENTS_FILE, SegmentScore, read_segment_csv


@dataclass
class SavedPrediction:
    """A prediction folder's content: the maps, `run.json`, and `segments.csv`'s rows (None when absent)."""

    prediction: Prediction
    record: dict
    segments: list[SegmentScore] | None

    @property
    def model_name(self) -> str:
        return str((self.record.get("model") or {}).get("name") or "prediction")


def read_prediction_folder(folder: str | Path) -> SavedPrediction:
    """Probabilities `(C, I, J, K)`, entropy, labels and (with several samples) the sample maps of a `predict` folder."""
    folder = Path(folder)
    record_path = folder / "run.json"
    if not record_path.is_file():
        raise InputError(f"'{folder}' has no run.json: expected a folder written by `uncertaintyseg predict`.")
    try:
        record = json.loads(record_path.read_text())
        class_names = tuple(record["class_names"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"cannot read '{record_path}' ({type(error).__name__}: {error}): expected run.json with class_names.") from None
    maps = {}
    for name, file_name in OUTPUT_FILES.items():
        if not (folder / file_name).is_file():
            raise InputError(f"'{folder}' has no {file_name}: the predict run did not finish, or the folder is not a prediction folder.")
        maps[name] = read_volume(folder / file_name)
    for name, file_name in SAMPLE_MAP_FILES.items():
        if (folder / file_name).is_file():
            maps[name] = read_volume(folder / file_name)
    probabilities = maps["probabilities"]
    if probabilities.array.ndim != 4 or probabilities.num_channels != len(class_names):
        raise InputError(f"'{folder / OUTPUT_FILES['probabilities']}' has shape {probabilities.array.shape}: expected "
                         f"({len(class_names)}, I, J, K), one component per class of run.json.")
    for name, volume in maps.items():
        if volume.spatial_shape != probabilities.spatial_shape or not volume.geometry.matches(probabilities.geometry, 1e-3):
            raise InputError(f"'{folder}': {name} lies on another grid than the probabilities: expected one grid for every map.")
    optional = {name: maps[name].array if name in maps else None for name in SAMPLE_MAP_FILES}
    prediction = Prediction(
        probabilities=probabilities.array, entropy=maps["entropy"].array, labels=maps["labels"].array.astype(np.uint8),
        class_names=class_names, geometry=probabilities.geometry, timings=dict(record.get("timings") or {}),
        sampling=dict(record.get("sampling") or {}), entropy_units=record.get("entropy_units", "nats"), **optional)
    segments_path = folder / SEGMENTS_FILE
    return SavedPrediction(prediction, record, read_segment_csv(segments_path) if segments_path.is_file() else None)
