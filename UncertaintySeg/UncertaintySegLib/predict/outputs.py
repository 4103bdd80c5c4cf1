"""Write one run's outputs into a (staging) folder; the caller makes the folder appear whole or not at all
(`common.output_folders.atomic_output_folder`, as `cli/predict.py` does).

Files: `probabilities.nrrd` (multi-component, one component per class), `entropy.nrrd`
(predictive entropy, nats), `labels.nrrd` (uint8 class index) and `run.json` (model, settings,
sampling, timings, versions, class names). With two or more samples also
`expected_entropy.nrrd`, `mutual_information.nrrd` (nats) and `variance.nrrd` (one component
per class). With `predict --feature-maps`: `feature_maps/<layer>_<reduction>.nrrd`, one component
per kept channel.
"""

from __future__ import annotations

import platform
from pathlib import Path

from .io import Volume, write_volume
from .pipeline import Prediction
from ..common.json_output import write_json

OUTPUT_FILES = {"probabilities": "probabilities.nrrd", "entropy": "entropy.nrrd", "labels": "labels.nrrd"}
FEATURE_MAPS_FOLDER = "feature_maps"
SAMPLE_MAP_FILES = {"expected_entropy": "expected_entropy.nrrd", "mutual_information": "mutual_information.nrrd",
                    "variance": "variance.nrrd"}


def versions() -> dict:
    import monai
    import numpy
    import SimpleITK
    import torch

    from .. import __version__

    return {"uncertaintyseg": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "monai": monai.__version__, "numpy": numpy.__version__, "SimpleITK": SimpleITK.Version_VersionString()}


def run_record(prediction: Prediction, model: dict, settings: dict, input_path: str | None = None) -> dict:
    """What `run.json` holds: enough to reproduce and to read the outputs back."""
    return {
        "input": input_path, "model": model, "settings": settings,
        "class_names": list(prediction.class_names), "shape": list(prediction.labels.shape),
        "spacing": list(prediction.geometry.spacing), "timings": prediction.timings,
        "sampling": prediction.sampling,
        "outputs": {**OUTPUT_FILES, **{name: SAMPLE_MAP_FILES[name] for name in prediction.sample_maps()}},
        "entropy_units": prediction.entropy_units, "versions": versions(),
    }


def write_prediction_files(folder: Path, prediction: Prediction, record: dict) -> None:
    """Write the volumes (three, plus the sample maps when there are several samples) and `run.json` into an existing (staging) folder."""
    write_volume(folder / OUTPUT_FILES["probabilities"], prediction.probability_volume)
    write_volume(folder / OUTPUT_FILES["entropy"], prediction.entropy_volume)
    write_volume(folder / OUTPUT_FILES["labels"], prediction.label_volume)
    for name, array in prediction.sample_maps().items():
        write_volume(folder / SAMPLE_MAP_FILES[name], Volume(array, prediction.geometry))
    write_json(folder / "run.json", record)


def write_feature_map_files(folder: Path, maps: dict, geometry) -> dict:
    """Write `{key: (k, I, J, K)}` maps as `feature_maps/<key>.nrrd` (scalar where k = 1); returns {key: relative path}."""
    (folder / FEATURE_MAPS_FOLDER).mkdir()
    files = {}
    for key, array in maps.items():
        files[key] = f"{FEATURE_MAPS_FOLDER}/{key}.nrrd"
        write_volume(folder / files[key], Volume(array[0] if array.shape[0] == 1 else array, geometry))
    return files

