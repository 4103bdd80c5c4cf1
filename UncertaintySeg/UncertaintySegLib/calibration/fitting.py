"""The one fitting routine of every calibration method, used by `calibrate`, `compare` and the Slicer panel.

    calibrator = fit_calibration("temperature", model, {"seed": 0}, logit_cases=lambda: cases_of_logits)
    save_fitted(calibrator, "hippocampus-ts", report)

A logit calibrator is fitted on `logit_cases()`: (logits `(C, I, J, K)`, labels `(I, J, K)`, ROI `(I, J, K)` bool or
None), one per case and network, consumed one at a time. Fine-tuning trains on `training_cases()`: [(image `(I, J, K)`
float32 normalised as the model expects, labels `(I, J, K)` int64)], as `training.train.load_cases` gives. Only the
one the method needs is called.
"""

from __future__ import annotations

from pathlib import Path

from ..common.json_output import write_json
from .base import FORMAT, FORMAT_VERSION, JSON_FILE, Calibrator
from .fingerprint import model_fingerprint
from .methods import make_calibrator

FIT_REPORT_FILE = "fit_report.json"  # what was fitted, on what, with which settings: beside every saved fit


def fit_calibration(method: str, model, settings: dict | None = None, logit_cases=None, training_cases=None,
                    progress=None, ignore_other_settings: bool = False):
    """Fit `method` (a `calibration_methods()` name) for `model` (a `LoadedModel`); the fitted estimator.
    `progress(stage, fraction, **details)` follows fine-tuning's epochs."""
    calibrator = make_calibrator(method, settings, ignore_others=ignore_other_settings)
    if isinstance(calibrator, Calibrator):
        return calibrator.fit_cases(logit_cases(), model=model_fingerprint(model))
    return calibrator.fit(model, training_cases(), progress)


def save_fitted(calibrator, folder: str | Path, report: dict) -> None:
    """Write a fitted calibrator (or fine-tuned model folder, with a calibrator.json saying so) and `fit_report.json`
    into `folder`, a staging folder the caller makes appear whole (`atomic_output_folder`)."""
    folder = Path(folder)
    calibrator.save(folder)
    if not isinstance(calibrator, Calibrator):
        write_json(folder / JSON_FILE, {  # `predict --calibrator` on a fine-tuned folder points to --model
            "format": FORMAT, "format_version": FORMAT_VERSION, "method": calibrator.method, "description": calibrator.describe(),
            "class_names": calibrator.model_["class_names"], "model": calibrator.model_, "settings": calibrator.get_params(),
            "model_folder": ".", "fine_tuning": "fine_tuning.json"})
    write_json(folder / FIT_REPORT_FILE, report)
