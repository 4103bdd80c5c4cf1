"""Post-hoc calibration of a segmentation network's logits, fitted on labelled cases, saved and reused.

    from UncertaintySegLib.calibration import TemperatureScaling, load_calibrator
    calibrator = TemperatureScaling().fit(logits_per_case, labels_per_case, masks_per_case, model=model_fingerprint(model))
    calibrator.save("hippocampus-ts")
    predict_volume(volume, model, logits_transform=load_calibrator("hippocampus-ts").transform)

Files: `base.py` (the `Calibrator` estimator, saving), `cases.py` (checking, streaming and sampling
cases), `scaling.py` (vector, temperature and Platt scaling: one code, three constraints),
`auxconv.py` (auxiliary convolution), `finetune.py` (last-layer fine-tuning: a new model folder),
`top_label.py` (histogram binning and isotonic regression of the top-label confidence, for
comparison), `fingerprint.py` (which model a calibrator belongs to), `storage.py` (`load_calibrator`),
`methods.py` (the registry of every method: `calibration_methods`, `make_calibrator`) and `fitting.py`
(`fit_calibration`, the one fitting routine of `calibrate`, `compare` and the panel; `save_fitted`).
"""

from .auxconv import AuxiliaryConvCalibrator
from .base import CALIBRATORS, Calibrator
from .finetune import LastLayerFineTuning
from .fingerprint import model_fingerprint, network_checksum
from .fitting import FIT_REPORT_FILE, fit_calibration, save_fitted
from .methods import calibration_methods, logit_calibrators, make_calibrator
from .scaling import PlattScaling, ScalingConstraint, TemperatureScaling, VectorScaling
from .storage import load_calibrator, load_calibrator_for
from .top_label import HistogramBinning, IsotonicRegression

__all__ = ["calibration_methods", "logit_calibrators", "make_calibrator", "fit_calibration", "save_fitted", "FIT_REPORT_FILE",
           "CALIBRATORS", "Calibrator", "TemperatureScaling", "VectorScaling", "PlattScaling", "ScalingConstraint",
           "AuxiliaryConvCalibrator", "LastLayerFineTuning", "HistogramBinning", "IsotonicRegression", "load_calibrator", "load_calibrator_for", "model_fingerprint", "network_checksum"]
