"""One run, as a straight line of pure steps: volume -> logits -> probabilities -> maps.

Only arrays and plain settings go in and out; files are `outputs.py`'s business and MRML
nodes the Slicer layer's. Peak memory is a few `(C, I, J, K)` float32 arrays, so it grows
linearly with the voxel count.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..common.errors import InputError
from .inference import check_image
from .io import Geometry, Volume
from .models import LoadedModel
from ..common.progress import Progress
from .sampling import SamplingPlan, default_plan, sample_probabilities, tta_warning
from .uncertainty import StreamingMoments, label_map, normalize_entropy, predictive_entropy


@dataclass
class Prediction:
    """Per-class probabilities `(C, I, J, K)`, entropy `(I, J, K)` in nats, labels `(I, J, K)` uint8.

    With two or more samples also expected entropy and mutual information `(I, J, K)` (nats) and
    per-class variance `(C, I, J, K)`; `None` for a single pass.
    """

    probabilities: np.ndarray
    entropy: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    geometry: Geometry
    timings: dict = field(default_factory=dict)
    expected_entropy: np.ndarray | None = None
    mutual_information: np.ndarray | None = None
    variance: np.ndarray | None = None
    sampling: dict = field(default_factory=dict)
    entropy_units: str = "nats"  # or "fraction of log C" once normalised

    @property
    def probability_volume(self) -> Volume:
        return Volume(self.probabilities, self.geometry)

    @property
    def entropy_volume(self) -> Volume:
        return Volume(self.entropy, self.geometry)

    @property
    def label_volume(self) -> Volume:
        return Volume(self.labels, self.geometry)

    def sample_maps(self) -> dict[str, np.ndarray]:
        """The maps that need several samples, by output name; empty for a single pass."""
        maps = {"expected_entropy": self.expected_entropy, "mutual_information": self.mutual_information, "variance": self.variance}
        return {name: array for name, array in maps.items() if array is not None}

    def normalize_uncertainty(self) -> None:
        """Entropy, expected entropy and MI divided by log C, in place (range [0, 1]); `entropy_units` says so."""
        for name in ("entropy", "expected_entropy", "mutual_information"):
            array = getattr(self, name)
            if array is not None:
                normalize_entropy(array, len(self.class_names))
        self.entropy_units = "fraction of log C"


def predict_volume(volume: Volume, model: LoadedModel, device: str = "auto", progress: Progress | None = None,
                   plan: SamplingPlan | None = None, logits_transform=None, on_sample=None) -> Prediction:
    """Run `model` on `volume` as `plan` says (default: one pass, or the mean of an ensemble's members)
    and derive probabilities, uncertainty maps and labels on the input's grid.

    Samples are aggregated as they come (see `sampling.py`): memory does not grow with their number.
    """
    progress = progress or Progress("none")
    image = check_image(volume, model.spec)
    plan = plan or default_plan(len(model.networks))
    started = time.perf_counter()
    moments, sampling_timings = sample_probabilities(model.networks, model.spec, image, plan, device=device,
                                                     logits_transform=logits_transform, on_sample=on_sample, progress=progress)
    inference_seconds = time.perf_counter() - started
    prediction = summarize(moments.mean, model.spec.class_names, volume.geometry, progress, moments=moments)
    prediction.sampling = {**plan.to_json(), "samples_drawn": moments.count}
    warning = tta_warning(plan, model.spec)
    if warning:
        prediction.sampling["warning"] = warning
    prediction.timings.update(inference_s=round(inference_seconds, 4), **sampling_timings)
    return prediction


def volume_logits(volume: Volume, model: LoadedModel, member: int = 0, device: str = "auto"):
    """Logits `(C, I, J, K)` float32 tensor of one deterministic pass of network `member` over `volume`, checked
    for the model as `predict_volume` checks it: what a logit calibrator is fitted on (one case per network)."""
    from .inference import predict_logits

    return predict_logits(model.networks[member], model.spec, check_image(volume, model.spec), device=device)


def summarize(probabilities, class_names, geometry: Geometry, progress: Progress | None = None,
              moments: StreamingMoments | None = None) -> Prediction:
    """Probabilities `(C, I, J, K)` tensor -> `Prediction` with entropy and label maps; given the `moments` of two
    or more samples whose mean they are, also expected entropy, MI and variance (from `StreamingMoments.maps`)."""
    progress = progress or Progress("none")
    progress("uncertainty maps", 0.8)
    started = time.perf_counter()
    several = moments is not None and moments.count > 1
    maps = moments.maps() if several else {"entropy": predictive_entropy(probabilities)}
    prediction = Prediction(
        probabilities=probabilities.numpy(), entropy=maps["entropy"].numpy(), labels=label_map(probabilities).numpy(),
        class_names=tuple(class_names), geometry=geometry,
    )
    if several:
        prediction.expected_entropy = maps["expected_entropy"].numpy()
        prediction.mutual_information = maps["mutual_information"].numpy()
        prediction.variance = maps["variance"].numpy()
    prediction.timings["maps_s"] = round(time.perf_counter() - started, 4)
    return prediction


def check_probabilities(probabilities: np.ndarray, source: str, tolerance: float = 1e-2) -> None:
    """Probabilities `(C, I, J, K)` must be finite, in [0, 1] and sum to 1 over classes."""
    if probabilities.ndim != 4 or probabilities.shape[0] < 2:
        raise InputError(f"'{source}' has shape {probabilities.shape}: expected per-class probabilities (C >= 2, I, J, K).")
    if not np.all(np.isfinite(probabilities)):
        raise InputError(f"'{source}' holds NaN or infinite probabilities: expected values in [0, 1].")
    low, high = float(probabilities.min()), float(probabilities.max())
    if low < -tolerance or high > 1 + tolerance:
        raise InputError(f"'{source}' holds values in [{low:.3g}, {high:.3g}]: expected probabilities in [0, 1] (logits need a softmax first).")
    sums = probabilities.sum(axis=0, dtype=np.float64)
    worst = float(np.abs(sums - 1).max())
    if worst > tolerance:
        raise InputError(f"'{source}': class probabilities sum to between {sums.min():.3g} and {sums.max():.3g} at some voxels: expected 1 (within {tolerance}).")
