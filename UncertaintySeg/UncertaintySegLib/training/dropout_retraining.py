"""A new model folder with dropout inserted into a trained MONAI network, optionally retrained (what
`uncertaintyseg insert-dropout`, in cli/insert_dropout.py, runs).

Rousseau et al. found that dropout inserted into a trained network without retraining usually
hurt calibration, so `--retrain` resumes training of the blocks after the inserted dropout on
labelled cases (the `calibration` split for the default data): the original loss, learning
rates 1e-3, 1e-4 and 1e-5 each from the original weights, keeping the one with the lowest
held-out NLL. The original model folder is never modified; `model.json` of the new folder
records the placement, p and whether (and how) it was retrained, and `predict` reports it.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..predict.dropout_insertion import insert_dropout, modules_after_dropout
from ..common.errors import InputError
from .layer_retraining import FineTuneSettings, fine_tune, holdout_nll, split_holdout
from ..common.output_folders import atomic_output_folder
from ..predict.models import LoadedModel
from ..predict.model_loading import load_model
from ..common.progress import Progress
from ..common.json_output import write_json

LEARNING_RATES = (1e-3, 1e-4, 1e-5)


def retrain_after_dropout(network, placement: str, cases: list, loss: str, learning_rates=LEARNING_RATES, epochs: int = 10,
                          seed: int = 0, progress: Progress | None = None) -> dict:
    """Retrain, in place, the blocks after the dropout already inserted at `placement`; returns what was done.

    `cases`: `(image, label)` pairs (see `fine_tuning.py`), 20% held out to choose the learning rate and epoch.
    """
    progress = progress or Progress("none")
    fit, holdout = split_holdout(cases, 0.2, seed)
    original = {k: v.detach().clone() for k, v in network.state_dict().items()}
    before = holdout_nll(network, holdout, FineTuneSettings(loss, 0.0).roi_size)
    trials = []
    for index, rate in enumerate(learning_rates):
        network.load_state_dict(original)
        parameters = [p for block in modules_after_dropout(network, placement) for p in block.parameters()]
        report = (lambda stage, fraction, i=index, **details: progress(
            f"retraining after dropout, lr {learning_rates[i]:g}", (i + fraction) / len(learning_rates), **details))
        state, log = fine_tune(network, parameters, fit, holdout, FineTuneSettings(loss, rate, epochs=epochs, seed=seed), report)
        trials.append((min(row["holdout_nll"] for row in log), rate, state, log))
    best_nll, best_rate, best_state, _ = min(trials, key=lambda trial: trial[0])
    network.load_state_dict(best_state)
    return {"retrained": True, "loss": loss, "learning_rate": best_rate, "holdout_nll_before": round(before, 6),
            "holdout_nll_after": round(best_nll, 6), "holdout_nll_by_learning_rate": {f"{r:g}": round(n, 6) for n, r, _, _ in trials},
            "fit_cases": len(fit), "holdout_cases": len(holdout), "epochs": epochs}


def training_loss_of(model: LoadedModel) -> str | None:
    """The loss a model was trained with, from the `training_summary.json` that `train` writes beside it."""
    summary = Path(model.source if Path(model.source).is_dir() else Path(model.source).parent) / "training_summary.json"
    try:
        return json.loads(summary.read_text())["settings"]["loss"]
    except (OSError, KeyError, TypeError, json.JSONDecodeError):
        return None


def make_dropout_model(model: str, placement: str, p: float, out: Path, retrain_cases: list | None = None,
                       loss: str | None = None, epochs: int = 10, overwrite: bool = False,
                       progress: Progress | None = None) -> dict:
    """Write `out`: the model with dropout at `placement` (every member), retrained on `retrain_cases` if given."""
    import torch

    progress = progress or Progress("none")
    loaded = load_model(model)
    if loaded.spec.format != "monai_network":
        raise InputError(f"model '{loaded.spec.name}' is {loaded.spec.format}: dropout can be inserted into a MONAI network "
                         "given as model.json + weights, not into a TorchScript file or a MONAI bundle.")
    if loaded.spec.inserted_dropout:
        raise InputError(f"model '{loaded.spec.name}' already has inserted dropout ({loaded.spec.inserted_dropout}); start from the original.")
    loss = loss or training_loss_of(loaded)
    if retrain_cases is not None and loss is None:
        raise InputError(f"the loss model '{loaded.spec.name}' was trained with is unknown (no training_summary.json): "
                         "give it with --loss ce|dice|dice_ce.")
    records = []
    for index, network in enumerate(loaded.networks):
        wrapped = insert_dropout(network, placement, p)
        record = {"placement": placement, "p": p, "modules": wrapped, "retrained": False}
        if retrain_cases is not None:
            member_progress = (lambda stage, fraction, i=index, **details: progress(
                f"member {i + 1}/{len(loaded.networks)}: {stage}", (i + fraction) / len(loaded.networks), **details))
            record.update(retrain_after_dropout(network, placement, retrain_cases, loss, epochs=epochs, progress=member_progress))
        records.append(record)
    summary = {"placement": placement, "p": p, "retrained": retrain_cases is not None, "members": records}
    spec = loaded.spec.to_json()
    spec.update(name=f"{loaded.spec.name}-dropout-{placement}", inserted_dropout={"placement": placement, "p": p,
                                                                                   "retrained": retrain_cases is not None},
                description=f"{loaded.spec.description}; dropout p={p} inserted at '{placement}'"
                            + (f", retrained on {len(retrain_cases)} cases ({loss})" if retrain_cases is not None else ", not retrained"))
    names = [Path(name).name for name in loaded.spec.weight_files]
    spec["weights"] = names[0] if len(names) == 1 else names
    with atomic_output_folder(out, overwrite=overwrite) as staging:
        for name, network in zip(names, loaded.networks):
            torch.save(network.state_dict(), staging / name)
        write_json(staging / "model.json", spec)
        write_json(staging / "dropout_insertion.json", summary)
    return summary
