"""Resume training of some of a network's parameters on labelled cases, keeping the best epoch by held-out NLL.

Used to retrain the blocks after inserted dropout (Rousseau et al.: the original loss, learning
rates 1e-3/1e-4/1e-5, keep the best). Cases are `(image (I, J, K) float32 normalised, label
(I, J, K) int64)` pairs as `train.load_cases` returns them; training crops and the held-out
evaluation window are those of `train.py`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..common.progress import Progress
from .train import make_loss, place_in_roi, train_epoch


@dataclass(frozen=True)
class FineTuneSettings:
    loss: str
    learning_rate: float
    epochs: int = 10
    patience: int = 3
    batch_size: int = 8
    seed: int = 0
    patch_size: tuple[int, int, int] = (40, 56, 40)
    roi_size: tuple[int, int, int] = (48, 64, 48)
    plateau_factor: float | None = None  # multiply the learning rate by this when the held-out NLL stalls (ReduceLROnPlateau)
    plateau_patience: int = 2  # epochs without a better held-out NLL before the learning rate drops


def split_holdout(cases: list, fraction: float = 0.2, seed: int = 0) -> tuple[list, list]:
    """(fit, holdout): a seeded random `fraction` of the cases (at least one) held out for choosing the epoch."""
    order = np.random.default_rng(seed).permutation(len(cases))
    held = max(1, round(fraction * len(cases)))
    return [cases[i] for i in order[held:]], [cases[i] for i in order[:held]]


def holdout_nll(network, cases: list, roi) -> float:
    """Mean voxel NLL of the network's deterministic (eval-mode) softmax over `cases`, each centred in `roi`."""
    import torch

    network.eval()
    total, voxels = 0.0, 0
    with torch.inference_mode():
        for image, label in cases:
            x, y = place_in_roi(image, label, roi, None)
            logits = network(torch.from_numpy(x)[None, None])
            total += float(torch.nn.functional.cross_entropy(logits, torch.from_numpy(y)[None], reduction="sum"))
            voxels += y.size
    return total / voxels


def fine_tune(network, parameters: list, fit_cases: list, holdout_cases: list, settings: FineTuneSettings,
              progress: Progress | None = None) -> tuple[dict, list[dict]]:
    """Train only `parameters` of `network`; returns (best state_dict by held-out NLL, per-epoch log).

    The epoch-0 state (before any update) competes too, so fine-tuning never returns a worse network
    than it was given, by held-out NLL. With `settings.plateau_factor` the learning rate is multiplied
    by it after `plateau_patience` epochs without a better held-out NLL.
    """
    import torch

    progress = progress or Progress("none")
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    trainable = {id(p) for p in parameters}
    for parameter in network.parameters():
        parameter.requires_grad_(id(parameter) in trainable)
    optimizer = torch.optim.Adam(parameters, lr=settings.learning_rate)
    loss_fn = make_loss(settings.loss)
    scheduler = None
    if settings.plateau_factor is not None:
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=settings.plateau_factor,
                                                               patience=settings.plateau_patience)
    best = holdout_nll(network, holdout_cases, settings.roi_size)
    best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
    log, stale, started = [{"epoch": 0, "train_loss": float("nan"), "holdout_nll": best, "seconds": 0.0}], 0, time.perf_counter()
    try:
        for epoch in range(1, settings.epochs + 1):
            train_loss = train_epoch(network, optimizer, loss_fn, fit_cases, settings.batch_size, settings.patch_size, rng)
            nll = holdout_nll(network, holdout_cases, settings.roi_size)
            log.append({"epoch": epoch, "train_loss": train_loss, "holdout_nll": nll,
                        "learning_rate": optimizer.param_groups[0]["lr"], "seconds": round(time.perf_counter() - started, 1)})
            if scheduler is not None:
                scheduler.step(nll)
            progress("fine-tuning", epoch / settings.epochs, epoch=epoch, holdout_nll=round(nll, 5))
            if nll < best:
                best, stale = nll, 0
                best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
            else:
                stale += 1
                if stale >= settings.patience:
                    break
    finally:
        for parameter in network.parameters():
            parameter.requires_grad_(True)
        network.eval()
    return best_state, log
