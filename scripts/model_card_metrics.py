"""Model-card numbers of a model on the hippocampus `test` split: each member alone and the whole model.

    .venv/bin/python scripts/model_card_metrics.py [MODEL ...]     # bundled names or folders; default: every bundled model

Per model (and, for an ensemble, for each member alone): Dice per class (whole volume),
top-label ECE with 20 equal-width bins, NLL and Brier, all pooled over the voxels inside each
case's reference-foreground box dilated by 8 mm in-plane and 2 slices out-of-plane (Mehrtash),
and the median predict time per case on the CPU.
"""

import statistics
import sys
from dataclasses import replace
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "UncertaintySeg"))

from UncertaintySegLib.evaluation.calibration_metrics import CalibrationHistogram  # noqa: E402
from UncertaintySegLib.data.hippocampus import load_split, resolve_data_root  # noqa: E402
from UncertaintySegLib.predict.io import read_volume  # noqa: E402
from UncertaintySegLib.evaluation.metrics import brier_score, dice_per_class, negative_log_likelihood, pooled_mean  # noqa: E402
from UncertaintySegLib.predict.model_loading import bundled_model_names, load_model  # noqa: E402
from UncertaintySegLib.predict.pipeline import predict_volume  # noqa: E402
from UncertaintySegLib.evaluation.roi import roi_mask  # noqa: E402


def evaluate(model, cases) -> dict:
    histogram = CalibrationHistogram(model.spec.num_classes, "top_label", bins=20)
    dice, nll, brier, counts, seconds = [], [], [], [], []
    for image, reference in cases:
        started = time.perf_counter()
        prediction = predict_volume(image, model, device="cpu")
        seconds.append(time.perf_counter() - started)
        region = roi_mask("bbox", reference.array, reference.geometry.spacing)
        histogram.update(prediction.probabilities, reference.array, region)
        dice.append(dice_per_class(prediction.labels, reference.array, model.spec.num_classes))
        case_nll, count = negative_log_likelihood(prediction.probabilities, reference.array, region)
        nll.append(case_nll)
        brier.append(brier_score(prediction.probabilities, reference.array, region)[0])
        counts.append(count)
    per_class = np.mean(dice, axis=0)
    return {"dice": dict(zip(model.spec.class_names[1:], per_class.round(4).tolist())), "mean_dice": round(float(per_class.mean()), 4),
            "ece_percent": round(100 * histogram.compute().ece, 3), "nll": round(pooled_mean(nll, counts), 4),
            "brier": round(pooled_mean(brier, counts), 4), "median_seconds": round(statistics.median(seconds), 3)}


def main(names: list[str]) -> None:
    import torch

    torch.set_num_threads(2)
    cases = [(read_volume(c.image), read_volume(c.label)) for c in load_split(resolve_data_root(), "test")]
    for name in names or bundled_model_names():
        model = load_model(name)
        if len(model.networks) > 1:
            for member in range(len(model.networks)):
                print(f"{name} (member {member}): {evaluate(replace(model, networks=model.networks[member:member + 1]), cases)}")
        print(f"{name} ({len(model.networks)} network(s)): {evaluate(model, cases)}")


if __name__ == "__main__":
    main(sys.argv[1:])
