"""`Calibrator`: a post-hoc map from a network's logits to calibrated logits, scikit-learn style.

    calibrator = TemperatureScaling().fit(logits, labels, mask)      # one case, or sequences of cases
    calibrated = calibrator.transform(logits)                        # (C, I, J, K) or (N, C, I, J, K)
    calibrator.save("cal/"); load_calibrator("cal/").transform(logits)

Settings are the constructor's arguments (`get_params()`); what fitting learns ends in `_`.
Cases are streamed one at a time (`cases.iter_cases`): a calibrator keeps only what it needs
from each (a bounded sample of ROI voxels, or an ROI crop), so memory does not grow with the
size of the volumes. `transform` is what `sampling.sample_probabilities(logits_transform=...)`
applies to every forward pass; so an ensemble's calibrator is fitted on the pooled logits of all
its members' passes.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..common.errors import InputError
from ..common.json_output import write_json
from .cases import Case, as_tensor, check_case, iter_cases, lift_binary, lower_binary
from .fingerprint import check_same_model

FORMAT = "uncertaintyseg-calibrator"
FORMAT_VERSION = 1
JSON_FILE = "calibrator.json"
TENSOR_FILE = "calibrator.pt"
DEFAULT_MAX_VOXELS_PER_CASE = 200_000
CALIBRATORS: dict[str, type] = {}  # method name -> class, filled as the families are imported


class Calibrator:
    """Base of the logit calibrators. Subclasses set `method`, `title`, `order` (and `panel_label`) and implement `_begin`,
    `_add_case`, `_fit`, `_apply`, `_tensors`, `_load_tensors` and `_parameters_text`."""

    method: ClassVar[str] = ""  # its `--method` name
    title: ClassVar[str] = ""  # its name in descriptions ("Temperature scaling")
    order: ClassVar[int] = 100  # where it stands in lists of methods (CLI help, the panel's menu)
    panel_label: ClassVar[str] = ""  # its text in the panel's menu; "" = not offered there

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.method:
            CALIBRATORS[cls.method] = cls

    def __init__(self, max_voxels_per_case: int | None = DEFAULT_MAX_VOXELS_PER_CASE, seed: int = 0):
        self.max_voxels_per_case = max_voxels_per_case
        self.seed = seed

    def get_params(self) -> dict:
        """The constructor's arguments, as given (JSON-ready)."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

    # ---- fitting -------------------------------------------------------------------------------

    def fit(self, logits, labels, mask=None, *, model: dict | None = None) -> Calibrator:
        """Fit on one case (`logits (C, I, J, K)`, `labels (I, J, K)` ints, `mask (I, J, K)` bool or None)
        or on sequences / iterables of them, consumed one case at a time.

        `model`: the `fingerprint.model_fingerprint` of the model the logits came from; recorded, and
        checked by `check_model` before the calibrator is applied to another model's logits.
        """
        return self.fit_cases(iter_cases(logits, labels, mask), model=model)

    def fit_cases(self, cases, *, model: dict | None = None) -> Calibrator:
        """Fit on an iterable of `(logits, labels, mask)` cases (mask may be None), consumed one at a time."""
        if self.max_voxels_per_case is not None and self.max_voxels_per_case < 1:
            raise InputError(f"max_voxels_per_case {self.max_voxels_per_case}: expected at least 1 (or None for every ROI voxel).")
        rng = np.random.default_rng(self.seed)
        self._begin()
        classes, count = None, 0
        for index, (case_logits, case_labels, case_mask) in enumerate(cases):
            case = check_case(case_logits, case_labels, case_mask, index, classes)
            classes = case.logits.shape[0]
            self._add_case(case, rng)
            count += 1
        if count == 0:
            raise InputError("no cases to fit on: give at least one (logits, labels) case.")
        if model is not None and len(model.get("class_names", ())) not in (0, classes):
            raise InputError(f"model '{model.get('name')}' lists {len(model['class_names'])} classes, the logits have {classes}.")
        self.n_classes_ = classes
        self.cases_used_ = count
        self.model_ = model
        self._fit()
        return self

    def _begin(self) -> None:
        raise NotImplementedError

    def _add_case(self, case: Case, rng: np.random.Generator) -> None:
        raise NotImplementedError

    def _fit(self) -> None:
        """Learn the parameters from what `_add_case` kept; set `voxels_used_`, `nll_before_`, `nll_after_`."""
        raise NotImplementedError

    # ---- applying ------------------------------------------------------------------------------

    def transform(self, logits):
        """Calibrated logits, same shape: `(C, I, J, K)`, batched `(N, C, I, J, K)` or voxels `(N, C)`.

        A torch tensor in, a float32 tensor out on the same device. `C == 1` (a sigmoid model's
        foreground logit) is calibrated as the two softmax logits `(0, z)` and returned as one channel.
        """
        self._check_fitted()
        import torch

        tensor = as_tensor(logits)
        if tensor.ndim not in (2, 4, 5):
            raise InputError(f"logits of shape {tuple(tensor.shape)}: expected (C, I, J, K), (N, C, I, J, K) or (N, C).")
        channel_dim = 0 if tensor.ndim == 4 else 1
        binary = tensor.shape[channel_dim] == 1
        lifted = lift_binary(tensor.float(), channel_dim)
        if lifted.shape[channel_dim] != self.n_classes_:
            raise InputError(f"logits have {tensor.shape[channel_dim]} channel(s), the calibrator was fitted on {self.n_classes_} "
                             "classes: apply it to the model it was fitted for.")
        with torch.no_grad():
            calibrated = self._apply(lifted, channel_dim)
        return lower_binary(calibrated, channel_dim) if binary else calibrated

    def __call__(self, logits):
        return self.transform(logits)

    def _apply(self, logits, channel_dim: int):
        """Calibrate softmax logits with classes along `channel_dim`."""
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_classes_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(logits, labels) or load_calibrator(path) first.")

    def check_model(self, fingerprint: dict) -> None:
        """Refuse (InputError) a model other than the one this calibrator was fitted for, by class names and weights."""
        self._check_fitted()
        if self.model_ is None:  # fitted without `model=`, or its record removed: nothing to check against, so refuse
            raise InputError(f"calibrator '{self.method}' has no record of the model it was fitted for, so it cannot be checked "
                             f"against model '{fingerprint.get('name')}': fit it again for this model with `uncertaintyseg "
                             f"calibrate --model MODEL --method {self.method} --out FOLDER` (Python: fit(..., model=model_fingerprint(model))).")
        check_same_model(self.model_, fingerprint, f"calibrator '{self.method}'")

    # ---- describing and saving -----------------------------------------------------------------

    def _parameters_text(self) -> str:
        raise NotImplementedError

    def _summary(self) -> dict:
        """Fitted scalars for people (JSON), besides the tensors."""
        return {}

    def describe(self) -> str:
        """One line for the GUI, e.g. 'Temperature scaling (T = 1.42), 23 cases, 1.2M voxels, NLL 0.081 -> 0.062, for hippocampus'."""
        if not hasattr(self, "n_classes_"):
            return f"{self.title} (not fitted)"
        model = f", for {self.model_['name']}" if self.model_ else ""
        members = self.model_.get("members", 1) if self.model_ else 1
        cases = (f"{self.cases_used_ // members} cases x {members} members" if members > 1 and self.cases_used_ % members == 0
                 else f"{self.cases_used_} cases")
        return (f"{self.title} ({self._parameters_text()}), {cases}, {format_count(self.voxels_used_)} voxels, "
                f"NLL {self.nll_before_:.4f} -> {self.nll_after_:.4f}{model}")

    def _tensors(self) -> dict:
        raise NotImplementedError

    def _load_tensors(self, tensors: dict) -> None:
        raise NotImplementedError

    def _tensor_shapes(self) -> dict:
        """name -> (shape, what it is) of the tensors `_load_tensors` reads; None in a shape: any length."""
        return {}

    def _check_values(self, source: str) -> None:
        """Raise InputError for fitted values this family cannot use (e.g. a scale <= 0); `source` starts the message."""

    def to_json(self) -> dict:
        self._check_fitted()
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION, "method": self.method, "class": type(self).__name__,
            "description": self.describe(),
            "class_names": list(self.model_["class_names"]) if self.model_ else None,
            "model": self.model_, "settings": self.get_params(),
            "fit": {"n_classes": self.n_classes_, "cases": self.cases_used_, "voxels": self.voxels_used_,
                    "nll_before": self.nll_before_, "nll_after": self.nll_after_, **self._summary()},
            "tensors": TENSOR_FILE,
        }

    def save(self, path: str | Path) -> Path:
        """Write `calibrator.json` and `calibrator.pt` (a dict of tensors) into folder `path` (created if needed)."""
        import torch

        folder = Path(path)
        record = self.to_json()
        folder.mkdir(parents=True, exist_ok=True)
        torch.save({name: tensor.detach().cpu().contiguous() for name, tensor in self._tensors().items()}, folder / TENSOR_FILE)
        write_json(folder / JSON_FILE, record)
        return folder

    @classmethod
    def from_json(cls, record: dict, tensors: dict, source: str | Path = JSON_FILE, tensor_source: str | Path = TENSOR_FILE) -> Calibrator:
        """The calibrator of a `calibrator.json` record (checked by `schemas.CalibratorRecordSchema`) and its tensors;
        InputError naming the file and field for settings this class does not take or tensors of the wrong shape or value."""
        calibrator = cls(**check_settings(cls, record["settings"], source))
        fit = record["fit"]
        calibrator.n_classes_, calibrator.cases_used_, calibrator.voxels_used_ = fit["n_classes"], fit["cases"], fit["voxels"]
        calibrator.nll_before_, calibrator.nll_after_ = fit["nll_before"], fit["nll_after"]
        calibrator.model_ = record.get("model")
        check_tensors(tensors, calibrator._tensor_shapes(), tensor_source)
        calibrator._load_tensors(tensors)
        calibrator._check_values(f"{tensor_source}: ")
        for name, tensor in tensors.items():
            if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
                raise InputError(f"{tensor_source}: {name}: expected finite values, found {int((~tensor.isfinite()).sum())} "
                                 "NaN or infinite; fit the calibrator again.")
        return calibrator


def check_settings(cls, settings: dict, source) -> dict:
    """`settings` if `cls(**settings)` takes them: known names, values of the type of each default (int for float
    allowed, None where the annotation allows it); else InputError naming the setting."""
    parameters = {name: p for name, p in inspect.signature(cls.__init__).parameters.items() if name != "self"}
    for name, value in settings.items():
        if name not in parameters:
            raise InputError(f"{source}: settings.{name}: not a setting of {cls.__name__} (expected only {sorted(parameters)}); "
                             "fit the calibrator again.")
        default, annotation = parameters[name].default, str(parameters[name].annotation)
        if value is None and ("None" in annotation or default is None):
            continue
        kinds = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}.get(type(default))
        if kinds and (not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)):
            raise InputError(f"{source}: settings.{name}: expected {type(default).__name__} like the default {default!r}, "
                             f"found {value!r}; fit the calibrator again.")
    return settings


def check_tensors(tensors: dict, shapes: dict, source) -> None:
    """InputError unless every tensor of `shapes` (name -> (shape, what it is)) is there with that shape."""
    for name, (shape, meaning) in shapes.items():
        if name not in tensors:
            raise InputError(f"{source}: missing tensor '{name}' (expected {sorted(shapes)}); fit the calibrator again.")
        found = tuple(tensors[name].shape)
        if len(found) != len(shape) or any(want is not None and want != have for want, have in zip(shape, found)):
            wanted = "(" + ", ".join("N" if want is None else str(want) for want in shape) + ("," if len(shape) == 1 else "") + ")"
            raise InputError(f"{source}: {name}: expected shape {wanted} ({meaning}), found {found}; fit the calibrator again.")


class VoxelCalibrator(Calibrator):
    """A calibrator fitted on voxels alone (no spatial context): it keeps, per case, at most
    `max_voxels_per_case` ROI voxels drawn at random (seeded), and fits on their `(N, C)` logits."""

    def _begin(self) -> None:
        self._voxel_logits, self._voxel_labels = [], []

    def _add_case(self, case: Case, rng: np.random.Generator) -> None:
        from .cases import sample_voxels

        logits, labels = sample_voxels(case, self.max_voxels_per_case, rng)
        self._voxel_logits.append(logits)
        self._voxel_labels.append(labels)

    def _fit(self) -> None:
        import torch

        from .cases import mean_nll

        logits, labels = torch.cat(self._voxel_logits), torch.cat(self._voxel_labels)
        del self._voxel_logits, self._voxel_labels
        self._fit_voxels(logits, labels)
        self.voxels_used_ = int(labels.numel())
        self.nll_before_ = mean_nll(logits, labels)
        self.nll_after_ = mean_nll(self._apply(logits, 1), labels)

    def _fit_voxels(self, logits, labels) -> None:
        """Learn from `logits (N, C)` and `labels (N,)`."""
        raise NotImplementedError


def format_count(count: int) -> str:
    """1234567 -> '1.2M', 45000 -> '45k'."""
    if count >= 1_000_000:
        return f"{count / 1e6:.1f}M"
    if count >= 10_000:
        return f"{count / 1e3:.0f}k"
    return str(count)
