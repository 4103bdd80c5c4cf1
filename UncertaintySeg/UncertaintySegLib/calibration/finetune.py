"""Last-layer fine-tuning (Rousseau et al.): resume training of a network's last learnable layer with cross-entropy.

Unlike the logit calibrators it changes the network, so its result is a NEW model folder
(`model.json` + weights + `fine_tuning.json`), used with `predict --model FOLDER`; the original
model's files are never written. Every member of an ensemble is fine-tuned on its own.

Recipe: everything frozen but the last module that owns parameters (for MONAI's UNet the output
convolution), cross-entropy, Adam with learning rate 1e-3 for a Dice-trained model (`dice`,
`dice_ce`) or 1e-4 for a cross-entropy-trained one (`ce`), the training loss read from the model
folder's `training_summary.json` (or the description `train` writes into model.json) unless given;
the learning rate times 0.1 when the held-out NLL stalls, at most 50 epochs, early stopping (patience
10, as the auxiliary convolution, so the plateau schedule acts first) on a seeded held-out part of
the cases, the best epoch kept (the unchanged network competes too).
The loop is `fine_tuning.fine_tune` (training crops, augmentation and held-out NLL of `train.py`).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

from ..common.errors import InputError
from ..training.layer_retraining import FineTuneSettings, fine_tune, split_holdout
from ..common.progress import Progress
from .fingerprint import model_fingerprint
from ..common.json_output import write_json

LEARNING_RATE_BY_TRAINING_LOSS = {"dice": 1e-3, "dice_ce": 1e-3, "ce": 1e-4}
RECORD_FILE = "fine_tuning.json"


def last_learnable_layer(network) -> tuple[str, object]:
    """(name, module) of the last module, in registration order, that owns parameters itself."""
    found = None
    for name, module in network.named_modules():
        if next(module.parameters(recurse=False), None) is not None:
            found = (name, module)
    if found is None:
        raise InputError(f"network {type(network).__name__} has no learnable parameters to fine-tune.")
    return found


def training_loss(model, override: str | None = None) -> str:
    """The loss `model` was trained with: `override`, else `training_summary.json` beside it, else the
    'loss <name>' that `train` writes into the model's description."""
    from ..training.dropout_retraining import training_loss_of

    loss = override or training_loss_of(model)
    if loss is None:
        match = re.search(r"\bloss (dice_ce|dice|ce)\b", model.spec.description or "")
        loss = match.group(1) if match else None
    if loss is None:
        raise InputError(f"the loss model '{model.spec.name}' was trained with is unknown (no training_summary.json, "
                         "none in its description): give it with --loss ce|dice|dice_ce, or the --learning-rate.")
    if loss not in LEARNING_RATE_BY_TRAINING_LOSS:
        raise InputError(f"training loss '{loss}': expected one of {', '.join(LEARNING_RATE_BY_TRAINING_LOSS)}.")
    return loss


class LastLayerFineTuning:
    """Fine-tune the last learnable layer of every network of a model (see the module).

    `loss`: the loss the model was TRAINED with (chooses the learning rate; fine-tuning itself uses
    cross-entropy), None to read it from the model folder. `learning_rate` overrides the choice.
    `patch_size`: training crop, default the model's ROI size. Cases are `(image (I, J, K) float32
    normalised as the model expects, labels (I, J, K) int64)`, as `train.load_cases` gives them.

    Fitted attributes: `networks_` (fine-tuned copies), `layer_`, `trained_loss_`, `learning_rate_`,
    `logs_` (per member, one row per epoch), `holdout_nll_before_` / `holdout_nll_after_` (per member),
    `cases_used_`, `holdout_cases_`, `model_` (fingerprint of the original model).
    """

    method = "finetune"
    title = "Last-layer fine-tuning"
    order = 4
    panel_label = "Fine-tune the last layer (new model)"

    def __init__(self, loss: str | None = None, learning_rate: float | None = None, max_epochs: int = 50, patience: int = 10,
                 plateau_patience: int = 2, holdout_fraction: float = 0.2, batch_size: int = 8,
                 patch_size: tuple[int, int, int] | None = None, seed: int = 0):
        self.loss = loss
        self.learning_rate = learning_rate
        self.max_epochs = max_epochs
        self.patience = patience
        self.plateau_patience = plateau_patience
        self.holdout_fraction = holdout_fraction
        self.batch_size = batch_size
        self.patch_size = patch_size
        self.seed = seed

    def get_params(self) -> dict:
        return {"loss": self.loss, "learning_rate": self.learning_rate, "max_epochs": self.max_epochs, "patience": self.patience,
                "plateau_patience": self.plateau_patience, "holdout_fraction": self.holdout_fraction,
                "batch_size": self.batch_size, "patch_size": None if self.patch_size is None else list(self.patch_size),
                "seed": self.seed}

    def fit(self, model, cases: list, progress: Progress | None = None) -> LastLayerFineTuning:
        """Fine-tune copies of `model`'s networks (a `models.LoadedModel`, left unchanged) on `cases`."""
        progress = progress or Progress("none")
        if model.spec.format != "monai_network":
            raise InputError(f"model '{model.spec.name}' is {model.spec.format}: fine-tuning writes a state_dict for a MONAI "
                             "network given as model.json + weights, not a TorchScript file.")
        if len(cases) < 2:
            raise InputError(f"fine-tuning needs at least 2 cases (one held out for early stopping), found {len(cases)}.")
        if self.learning_rate is None:
            self.trained_loss_ = training_loss(model, self.loss)
            self.learning_rate_ = LEARNING_RATE_BY_TRAINING_LOSS[self.trained_loss_]
        else:
            self.trained_loss_, self.learning_rate_ = self.loss, float(self.learning_rate)
        roi = tuple(model.spec.roi_size)
        settings = FineTuneSettings(loss="ce", learning_rate=self.learning_rate_, epochs=self.max_epochs, patience=self.patience,
                                    batch_size=self.batch_size, seed=self.seed, roi_size=roi,
                                    patch_size=tuple(self.patch_size) if self.patch_size else roi,
                                    plateau_factor=0.1, plateau_patience=self.plateau_patience)
        fit_cases, holdout = split_holdout(cases, self.holdout_fraction, self.seed)
        self.model_ = model_fingerprint(model)
        self.networks_, self.logs_, self.holdout_nll_before_, self.holdout_nll_after_ = [], [], [], []
        for index, original in enumerate(model.networks):
            network = copy.deepcopy(original).cpu()
            self.layer_, layer = last_learnable_layer(network)
            report = (lambda stage, fraction, i=index, **details: progress(
                f"member {i + 1}/{len(model.networks)}: {stage}", (i + fraction) / len(model.networks), **details))
            state, log = fine_tune(network, list(layer.parameters()), fit_cases, holdout, settings, report)
            network.load_state_dict(state)
            self.networks_.append(network.eval())
            self.logs_.append(log)
            self.holdout_nll_before_.append(log[0]["holdout_nll"])
            self.holdout_nll_after_.append(min(row["holdout_nll"] for row in log))
        self.cases_used_, self.holdout_cases_ = len(fit_cases), len(holdout)
        self._spec = model.spec
        return self

    def describe(self) -> str:
        if not hasattr(self, "networks_"):
            return f"{self.title} (not fitted)"
        before = sum(self.holdout_nll_before_) / len(self.holdout_nll_before_)
        after = sum(self.holdout_nll_after_) / len(self.holdout_nll_after_)
        trained = f", trained with {self.trained_loss_}" if self.trained_loss_ else ""
        return (f"{self.title} (layer {self.layer_}, lr {self.learning_rate_:g}{trained}), "
                f"{self.cases_used_} + {self.holdout_cases_} held-out cases, held-out NLL {before:.4f} -> {after:.4f}, "
                f"for {self.model_['name']}")

    def to_json(self) -> dict:
        return {"method": self.method, "description": self.describe(), "original_model": self.model_,
                "settings": self.get_params(), "layer": self.layer_, "trained_loss": self.trained_loss_,
                "learning_rate": self.learning_rate_, "fine_tuning_loss": "ce", "fit_cases": self.cases_used_,
                "holdout_cases": self.holdout_cases_,
                "members": [{"holdout_nll_before": b, "holdout_nll_after": a, "epochs_run": len(log) - 1, "log": log}
                            for b, a, log in zip(self.holdout_nll_before_, self.holdout_nll_after_, self.logs_)]}

    def spec_json(self) -> dict:
        """model.json of the fine-tuned model: the original's, renamed, with the same weight file names."""
        spec = self._spec.to_json()
        names = [Path(name).name for name in self._spec.weight_files]
        spec.update(name=f"{self._spec.name}-finetuned", weights=names[0] if len(names) == 1 else names,
                    description=f"{self._spec.description}; last layer ({self.layer_}) fine-tuned with cross-entropy, "
                                f"lr {self.learning_rate_:g}, on {self.cases_used_} cases")
        return spec

    def save(self, path: str | Path) -> Path:
        """Write the fine-tuned model into folder `path` (created if needed): model.json, weights, fine_tuning.json."""
        import torch

        if not hasattr(self, "networks_"):
            raise RuntimeError("LastLayerFineTuning is not fitted: call fit(model, cases) first.")
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        spec = self.spec_json()
        names = [spec["weights"]] if isinstance(spec["weights"], str) else spec["weights"]
        for name, network in zip(names, self.networks_):
            torch.save(network.state_dict(), folder / name)
        write_json(folder / "model.json", spec)
        write_json(folder / RECORD_FILE, self.to_json())
        return folder
