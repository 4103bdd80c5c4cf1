"""UncertaintySeg's Python API: how far to trust a segmentation network, voxel by voxel.

Load a model and predict a volume with a sampling plan (20 MC dropout passes here):

    from UncertaintySegLib import SamplingPlan, load_model, parse_method, predict_volume, read_volume
    model = load_model("hippocampus")                 # a bundled name, a model folder, model.json or a MONAI bundle
    volume = read_volume("case.nii.gz")               # NIfTI, NRRD, MetaImage or a DICOM series folder
    plan = SamplingPlan(methods=parse_method("mc_dropout"), samples=20, seed=0)
    prediction = predict_volume(volume, model, plan=plan)
    prediction.probabilities, prediction.entropy, prediction.mutual_information, prediction.labels

Fit, save, load and apply a calibrator (logits `(C, I, J, K)`, labels `(I, J, K)`):

    calibrator = TemperatureScaling().fit(logits, labels, model=model_fingerprint(model))
    calibrator.save("calibrator")
    calibrator = load_calibrator_for("calibrator", model)   # refused unless fitted for this model
    prediction = predict_volume(volume, model, logits_transform=calibrator.transform)

Evaluate a case against its reference, and read back a folder that `uncertaintyseg predict` wrote:

    result = evaluate_case("case", prediction.probabilities, reference, prediction.labels,
                           model.spec.class_names, volume.geometry.spacing)
    result.scores["ece_top_label"], result.scores["dice_anterior"]
    saved = read_prediction_folder("out/case")

Names are imported on first use (PEP 562), so `import UncertaintySegLib` stays cheap: torch,
MONAI and SimpleITK load only when a name that needs them is used.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SOURCES = {
    "InputError": "common.errors", "ModelError": "common.errors", "NonFiniteOutputError": "common.errors",
    "Volume": "predict.io", "Geometry": "predict.io", "read_volume": "predict.io", "write_volume": "predict.io",
    "load_model": "predict.model_loading", "bundled_model_names": "predict.model_loading",
    "LoadedModel": "predict.models", "ModelSpec": "predict.models",
    "SamplingPlan": "predict.sampling", "parse_method": "predict.sampling",
    "Prediction": "predict.pipeline", "predict_volume": "predict.pipeline", "volume_logits": "predict.pipeline",
    "segment_scores": "predict.segment_scores",
    "SavedPrediction": "predict.prediction_folder", "read_prediction_folder": "predict.prediction_folder",
    "CALIBRATORS": "calibration", "Calibrator": "calibration", "TemperatureScaling": "calibration",
    "VectorScaling": "calibration", "PlattScaling": "calibration", "load_calibrator": "calibration",
    "load_calibrator_for": "calibration", "model_fingerprint": "calibration", "calibration_methods": "calibration",
    "fit_calibration": "calibration", "save_fitted": "calibration",
    "CaseResult": "evaluation.case_evaluation", "evaluate_case": "evaluation.case_evaluation",
    "CalibrationHistogram": "evaluation.calibration_metrics",
}

__all__ = ["__version__", *_SOURCES]


def __getattr__(name: str):
    if name not in _SOURCES:
        raise AttributeError(f"module 'UncertaintySegLib' has no attribute '{name}'")
    value = getattr(importlib.import_module(f".{_SOURCES[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
