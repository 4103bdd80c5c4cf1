"""Write one run's outputs into a folder, whole or not at all.

Files: `probabilities.nrrd` (multi-component, one component per class), `entropy.nrrd`
(nats), `labels.nrrd` (uint8 class index) and `run.json` (model, settings, timings,
versions, class names).
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

from .io import atomic_output_folder, write_volume
from .pipeline import Prediction

OUTPUT_FILES = {"probabilities": "probabilities.nrrd", "entropy": "entropy.nrrd", "labels": "labels.nrrd"}


def versions() -> dict:
    import monai
    import numpy
    import SimpleITK
    import torch

    from . import __version__

    return {"uncertaintyseg": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "monai": monai.__version__, "numpy": numpy.__version__, "SimpleITK": SimpleITK.Version_VersionString()}


def run_record(prediction: Prediction, model: dict, settings: dict, input_path: str | None = None) -> dict:
    """What `run.json` holds: enough to reproduce and to read the outputs back."""
    return {
        "input": input_path, "model": model, "settings": settings,
        "class_names": list(prediction.class_names), "shape": list(prediction.labels.shape),
        "spacing": list(prediction.geometry.spacing), "timings": prediction.timings,
        "outputs": dict(OUTPUT_FILES), "entropy_units": "nats", "versions": versions(),
    }


def write_prediction_files(folder: Path, prediction: Prediction, record: dict) -> None:
    """Write the three volumes and `run.json` into an existing (staging) folder."""
    write_volume(folder / OUTPUT_FILES["probabilities"], prediction.probability_volume)
    write_volume(folder / OUTPUT_FILES["entropy"], prediction.entropy_volume)
    write_volume(folder / OUTPUT_FILES["labels"], prediction.label_volume)
    (folder / "run.json").write_text(json.dumps(record, indent=2) + "\n")


def write_prediction(out: str | Path, prediction: Prediction, record: dict, overwrite: bool = False) -> Path:
    with atomic_output_folder(out, overwrite=overwrite) as staging:
        write_prediction_files(staging, prediction, record)
    return Path(out)
