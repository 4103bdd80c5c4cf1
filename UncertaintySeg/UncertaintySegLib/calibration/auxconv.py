"""Auxiliary convolution (Rousseau et al.): one 3-D convolution, kernel k, C -> C channels, on the logits.

Initialised as the identity (centre tap 1 on its own channel, every other weight and the bias 0),
so before training it changes nothing; trained with cross-entropy on the ROI voxels, Adam
(lr 5e-3), the learning rate times 0.1 when the held-out NLL stalls (ReduceLROnPlateau), at most
50 epochs, stopping early after `patience` (10) epochs without a better held-out NLL and keeping
the best epoch (the identity, epoch 0, competes too). The patience must outlast the plateau
schedule: at lr 5e-3 the first epoch overshoots on logits as large as a Dice-trained network's
(held-out NLL 0.15 -> 0.96 for `hippocampus-dice` member 0), and only after the learning rate has
dropped does it beat the identity (epoch 8; best 0.063 at epoch 27). With a patience of 5 it
stopped at epoch 5 and kept the identity. The held-out part is a seeded random
`holdout_fraction` of the cases (`fine_tuning.split_holdout`); for an ensemble, whose members'
passes are pooled as cases, it is drawn among those passes.

Memory: each case is kept as its logits cropped to the ROI's bounding box grown by k // 2
(the convolution's reach), and the loss is taken on at most `max_voxels_per_case` ROI voxels
of it (seeded). Borders are padded by replicating the edge voxel, in fitting and in `transform`,
so a crop sees the same neighbourhood as the whole volume.
"""

from __future__ import annotations

import time

import numpy as np

from ..common.errors import InputError
from .base import DEFAULT_MAX_VOXELS_PER_CASE, Calibrator
from .cases import Case, roi_box, sample_index


def identity_kernel(classes: int, kernel_size: int):
    """Weight `(C, C, k, k, k)` and bias `(C,)` of a convolution that returns its input."""
    import torch

    weight = torch.zeros(classes, classes, kernel_size, kernel_size, kernel_size)
    centre = kernel_size // 2
    for c in range(classes):
        weight[c, c, centre, centre, centre] = 1.0
    return weight, torch.zeros(classes)


def convolve(logits, weight, bias):
    """`(N, C, I, J, K)` logits -> same shape, edge-replicating padding of k // 2."""
    import torch

    pad = weight.shape[-1] // 2
    padded = torch.nn.functional.pad(logits, (pad,) * 6, mode="replicate") if pad else logits
    return torch.nn.functional.conv3d(padded, weight.to(logits.device), bias.to(logits.device))


class AuxiliaryConvCalibrator(Calibrator):
    """One `kernel_size`^3 convolution C -> C on the logits, trained with cross-entropy (see the module).

    Fitted attributes: `weight_ (C, C, k, k, k)`, `bias_ (C,)`, `epochs_run_`, `best_epoch_`,
    `holdout_cases_`, `holdout_nll_before_`, `holdout_nll_after_`, `log_` (one row per epoch), and the
    base's `n_classes_`, `cases_used_`, `voxels_used_`, `nll_before_`/`nll_after_` (on every case it was given,
    the early-stopping part included).
    """

    method = "auxconv"
    title = "Auxiliary convolution"
    order = 3
    panel_label = "Auxiliary convolution (k = 5)"

    def __init__(self, kernel_size: int = 5, learning_rate: float = 5e-3, max_epochs: int = 50, patience: int = 10,
                 plateau_patience: int = 2, holdout_fraction: float = 0.2,
                 max_voxels_per_case: int | None = DEFAULT_MAX_VOXELS_PER_CASE, seed: int = 0):
        super().__init__(max_voxels_per_case, seed)
        self.kernel_size = kernel_size
        self.learning_rate = learning_rate
        self.max_epochs = max_epochs
        self.patience = patience
        self.plateau_patience = plateau_patience
        self.holdout_fraction = holdout_fraction

    def _begin(self) -> None:
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise InputError(f"kernel size {self.kernel_size}: expected an odd number >= 1 (Rousseau et al. used 5 to 11).")
        if not 0 < self.holdout_fraction < 1:
            raise InputError(f"holdout fraction {self.holdout_fraction}: expected a number between 0 and 1.")
        self._crops = []

    def _add_case(self, case: Case, rng: np.random.Generator) -> None:
        """Keep `(logits crop (1, C, ...), labels of the loss voxels (M,), their flat indices in the crop (M,))`."""
        box = roi_box(case.mask, self.kernel_size // 2)
        logits, labels, mask = case.logits[(slice(None), *box)], case.labels[box], case.mask[box]
        index = sample_index(mask, self.max_voxels_per_case, rng)
        self._crops.append((logits.contiguous()[None], labels.reshape(-1)[index], index))

    def _fit(self) -> None:
        import torch

        from ..training.layer_retraining import split_holdout

        crops = self._crops
        del self._crops
        if len(crops) < 2:
            raise InputError(f"the auxiliary convolution needs at least 2 cases (one held out for early stopping), found {len(crops)}.")
        train, holdout = split_holdout(crops, self.holdout_fraction, self.seed)
        torch.manual_seed(self.seed)
        weight, bias = identity_kernel(self.n_classes_, self.kernel_size)
        weight.requires_grad_(True)
        bias.requires_grad_(True)
        optimizer = torch.optim.Adam([weight, bias], lr=self.learning_rate)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.1, patience=self.plateau_patience)
        rng = np.random.default_rng(self.seed)
        before_all, before_holdout = crops_nll(crops, weight, bias), crops_nll(holdout, weight, bias)
        best, best_state, stale, started = before_holdout, (weight.detach().clone(), bias.detach().clone()), 0, time.perf_counter()
        self.log_ = [{"epoch": 0, "train_loss": float("nan"), "holdout_nll": best, "learning_rate": self.learning_rate, "seconds": 0.0}]
        for epoch in range(1, self.max_epochs + 1):
            losses = []
            for i in rng.permutation(len(train)):
                logits, labels, index = train[i]
                output = convolve(logits, weight, bias)[0].reshape(self.n_classes_, -1)[:, index].T
                loss = torch.nn.functional.cross_entropy(output, labels)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
            nll = crops_nll(holdout, weight, bias)
            scheduler.step(nll)
            self.log_.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "holdout_nll": nll,
                              "learning_rate": optimizer.param_groups[0]["lr"], "seconds": round(time.perf_counter() - started, 2)})
            if nll < best:
                best, stale, best_state = nll, 0, (weight.detach().clone(), bias.detach().clone())
            else:
                stale += 1
                if stale >= self.patience:
                    break
        self.weight_, self.bias_ = best_state
        self.epochs_run_ = len(self.log_) - 1
        self.best_epoch_ = min(self.log_, key=lambda row: row["holdout_nll"])["epoch"]
        self.holdout_cases_ = len(holdout)
        self.holdout_nll_before_, self.holdout_nll_after_ = before_holdout, best
        self.voxels_used_ = sum(int(labels.numel()) for _, labels, _ in crops)
        self.nll_before_, self.nll_after_ = before_all, crops_nll(crops, self.weight_, self.bias_)

    def _apply(self, logits, channel_dim: int):
        if logits.ndim == 2:
            raise InputError("the auxiliary convolution needs logits with their spatial layout, (C, I, J, K) or (N, C, I, J, K), not (N, C) voxels.")
        return convolve(logits[None], self.weight_, self.bias_)[0] if logits.ndim == 4 else convolve(logits, self.weight_, self.bias_)

    def _tensors(self) -> dict:
        return {"weight": self.weight_, "bias": self.bias_}

    def _load_tensors(self, tensors: dict) -> None:
        self.weight_, self.bias_ = tensors["weight"].float(), tensors["bias"].float()

    def _tensor_shapes(self) -> dict:
        c, k = self.n_classes_, self.kernel_size
        return {"weight": ((c, c, k, k, k), "classes out, classes in, kernel_size^3"), "bias": ((c,), "one value per class")}

    def _summary(self) -> dict:
        return {"kernel_size": self.kernel_size, "epochs_run": getattr(self, "epochs_run_", None),
                "best_epoch": getattr(self, "best_epoch_", None), "holdout_cases": getattr(self, "holdout_cases_", None),
                "holdout_nll_before": getattr(self, "holdout_nll_before_", None),
                "holdout_nll_after": getattr(self, "holdout_nll_after_", None)}

    def _parameters_text(self) -> str:
        epochs = f", best epoch {self.best_epoch_} of {self.epochs_run_}" if hasattr(self, "best_epoch_") else ""
        return f"k = {self.kernel_size}{epochs}"

    @classmethod
    def from_json(cls, record: dict, tensors: dict, **sources) -> AuxiliaryConvCalibrator:
        calibrator = super().from_json(record, tensors, **sources)
        fit = record["fit"]
        for name in ("epochs_run", "best_epoch", "holdout_cases", "holdout_nll_before", "holdout_nll_after"):
            if fit.get(name) is not None:
                setattr(calibrator, f"{name}_", fit[name])
        return calibrator


def crops_nll(crops: list, weight, bias) -> float:
    """Mean NLL over the loss voxels of `crops` after the convolution."""
    import torch

    total, count = 0.0, 0
    with torch.no_grad():
        for logits, labels, index in crops:
            output = convolve(logits, weight, bias)[0].reshape(logits.shape[1], -1)[:, index].T
            total += float(torch.nn.functional.cross_entropy(output.double(), labels, reduction="sum"))
            count += int(labels.numel())
    return total / count
