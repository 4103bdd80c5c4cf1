"""The methods `compare` sets side by side, each turning an image into probabilities `(C, I, J, K)`.

- `base`: the model's first network, one softmax pass (Rousseau et al.'s single network; for an
  ensemble, member 0).
- `temperature`, `vector`, `platt`, `auxconv`, `histogram`, `isotonic`: `base` with a calibrator
  fitted on the fitting cases (see `calibration/`), applied to its logits.
- `finetune`: `base` with its last learnable layer fine-tuned on the fitting cases.
- `mc_dropout`: `base` with its dropout layers active, `samples` passes averaged.
- `sample`: `base` drawn `samples` times from a stochastic model (a Probabilistic U-Net's prior), averaged.
- `ensemble`: every member's softmax, averaged (the model must have several members).

Every post-hoc method calibrates the same `base` network, so differences between methods are the
methods' own, not the networks'. The base pass is shared by all the logit calibrators of a case.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from ..calibration.methods import logit_calibrators
from ..common.errors import InputError
from ..predict.sampling_axes import AXES, NETWORKS

# The sampling axes `compare` runs alone on the base network (NETWORKS: every member): mc_dropout, sample, ensemble
SAMPLING_METHODS = tuple(name for name, axis in AXES.items() if axis.compare)

LOGIT_CALIBRATORS = tuple(logit_calibrators())  # temperature, vector, platt, auxconv, histogram, isotonic
METHODS = ("base", *LOGIT_CALIBRATORS, "finetune", *SAMPLING_METHODS)
DEFAULT_METHODS = ("base", "temperature", "vector", "auxconv", "finetune", "mc_dropout", "ensemble")


def parse_methods(text: str) -> list[str]:
    """'base,temperature,ensemble' -> ['base', 'temperature', 'ensemble'] (order kept, each once)."""
    methods = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in methods if name not in METHODS]
    if unknown or not methods:
        raise InputError(f"--methods {text!r}: unknown {', '.join(map(repr, unknown)) or 'empty list'}; "
                         f"expected a comma-separated list of {', '.join(METHODS)}.")
    return list(dict.fromkeys(methods))


@dataclass
class FittedMethods:
    """One model's methods, ready to run: the base model, fitted calibrators and fine-tuned networks."""

    model: object  # models.LoadedModel, every member
    methods: list[str]
    calibrators: dict = field(default_factory=dict)  # method -> fitted Calibrator
    fine_tuning: object | None = None  # fitted LastLayerFineTuning
    fit_seconds: dict = field(default_factory=dict)

    @property
    def base(self):
        return replace(self.model, networks=self.model.networks[:1])


def check_methods_fit_model(methods: list[str], model) -> None:
    """Refuse, before any work, a method the model cannot run (the sampling layer's own checks, and fine-tuning's)."""
    from ..predict.sampling import SamplingPlan, networks_to_sample

    sampled = frozenset(m for m in methods if m in SAMPLING_METHODS)
    networks_to_sample(model.networks, SamplingPlan(sampled), model.spec.name, model.spec.stochastic)
    if "finetune" in methods and model.spec.format != "monai_network":
        raise InputError(f"method 'finetune' needs a MONAI network given as model.json + weights; '{model.spec.name}' is "
                         f"{model.spec.format}. Leave 'finetune' out of --methods for it.")


def fit_methods(model, methods: list[str], fit_cases: list, settings, progress) -> FittedMethods:
    """Fit every post-hoc method in `methods` on `fit_cases` (`data.Case`s) for the model's base network.

    `settings` carries the calibration options `compare` takes (roi, max_voxels_per_case, seed, kernel_size,
    epochs, histogram_bins, device). The base network's logits of the fitting cases are computed once and
    shared by the logit calibrators (a few MB per case of this size).
    """
    from ..calibration import fit_calibration
    from ..calibration.case_source import CaseSource
    from ..training.train import load_cases

    check_methods_fit_model(methods, model)
    fitted = FittedMethods(model, methods)
    base = fitted.base
    options = {"max_voxels_per_case": settings.max_voxels_per_case or None, "seed": settings.seed,
               "kernel_size": settings.kernel_size, "max_epochs": settings.epochs, "n_bins": settings.histogram_bins}
    fitting = []
    if any(m in LOGIT_CALIBRATORS for m in methods):
        source = CaseSource(base, settings.roi if settings.roi != "whole" else "none", None, settings.device,
                            settings.max_voxels_per_case or None, settings.seed)
        fitting = list(source.logit_cases(fit_cases, progress, f"{model.spec.name}: base logits of fitting cases"))
    post_hoc = [m for m in methods if m in LOGIT_CALIBRATORS] + [m for m in methods if m == "finetune"]  # fine-tuning last
    for method in post_hoc:
        progress(f"{model.spec.name}: " + ("fine-tuning the last layer" if method == "finetune" else f"fitting {method}"),
                 0.8 if method == "finetune" else 0.7)
        started = time.perf_counter()
        estimator = fit_calibration(method, base, options, ignore_other_settings=True, logit_cases=lambda: fitting,
                                    training_cases=lambda: load_cases(fit_cases, base.spec.normalization))
        if method == "finetune":
            fitted.fine_tuning = estimator
        else:
            fitted.calibrators[method] = estimator
        fitted.fit_seconds[method] = round(time.perf_counter() - started, 2)
    return fitted


def case_probabilities(fitted: FittedMethods, image: np.ndarray, samples: int, seed: int, device: str,
                       keep_members: bool) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """(method -> probabilities `(C, I, J, K)` float32, each member's probabilities if `keep_members`)
    for one `(C_in, I, J, K)` image."""
    from ..predict.inference import predict_logits, probabilities_from_logits
    from ..predict.sampling import SamplingPlan, sample_probabilities

    spec = fitted.model.spec

    def softmax(logits) -> np.ndarray:
        return probabilities_from_logits(logits, spec.activation).numpy().astype(np.float32)

    base_logits = predict_logits(fitted.model.networks[0], spec, image, device=device)
    out = {}
    for method in fitted.methods:
        if method == "base":
            out[method] = softmax(base_logits)
        elif method in fitted.calibrators:
            out[method] = softmax(fitted.calibrators[method].transform(base_logits))
        elif method == "finetune":
            out[method] = softmax(predict_logits(fitted.fine_tuning.networks_[0], spec, image, device=device))
        elif method in SAMPLING_METHODS and AXES[method].level != NETWORKS:  # an ensemble: from the members, below
            plan = SamplingPlan(frozenset({method}), samples=samples, seed=seed)
            moments, _ = sample_probabilities(fitted.model.networks[:1], spec, image, plan, device=device)
            out[method] = moments.mean.numpy().astype(np.float32)
    members = []
    if "ensemble" in fitted.methods or keep_members:
        members = [softmax(base_logits)] + [softmax(predict_logits(network, spec, image, device=device))
                                            for network in fitted.model.networks[1:]]
    if "ensemble" in fitted.methods:
        out["ensemble"] = np.mean(members, axis=0, dtype=np.float32)
    return out, members if keep_members else []
