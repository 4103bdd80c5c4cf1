"""Train a MONAI 3-D U-Net with dropout, or a Probabilistic U-Net (`architecture="probabilistic_unet"`,
loss "elbo": `ProbabilisticUNet.elbo_loss`, validated on its prior-mean forward), on the `train`
split of MSD Task04 Hippocampus.

Deterministic given the seed. A validation part is carved from `train` only (never
`calibration` or `test`); the best epoch by validation Dice is kept (early stopping).
Augmentation is modest: a random position of the volume inside the padded training
patch (a random crop where the case is larger) and a random intensity scale/shift.
Writes `model.json`, `model.pt` (state_dict) or one `member_<m>.pt` per ensemble member,
`training_log*.csv`, `training_curve*.png` and `training_summary.json` into the output
folder, whole or not at all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..data.hippocampus import Case, load_split
from ..common.csv_tables import write_csv
from ..common.errors import InputError
from ..common.plots import pyplot
from ..predict.inference import normalize_intensity
from ..predict.io import read_volume
from ..common.output_folders import atomic_output_folder
from ..evaluation.metrics import dice_per_class
from ..predict.models import ModelSpec
from ..common.progress import Progress
from ..common.json_output import write_json

LOSSES = ("ce", "dice", "dice_ce", "elbo")  # elbo: the Probabilistic U-Net's, and only its
ARCHITECTURES = ("unet", "probabilistic_unet")
CLASS_NAMES = ("background", "anterior", "posterior")
NORMALIZATION = {"kind": "zscore"}


@dataclass
class TrainSettings:
    loss: str = "dice_ce"
    seed: int = 0
    epochs: int = 60
    patience: int = 15
    batch_size: int = 8
    learning_rate: float = 2e-3
    validation_fraction: float = 0.1
    roi_size: tuple[int, int, int] = (48, 64, 48)  # inference window; covers every Task04 case
    patch_size: tuple[int, int, int] = (40, 56, 40)  # training crop: most cases fit, 1.6x cheaper than the ROI
    channels: tuple[int, ...] = (16, 32, 64, 128)
    dropout: float = 0.1
    name: str = "hippocampus"
    max_cases: int | None = None  # train on the split's first N cases only (quick experiments, tests)
    min_validation_dice: float = 0.0  # an ensemble member below this (a collapsed run) is retrained with the next seed
    device: str = "auto"  # "cpu", "cuda", "cuda:1", ...; CUDA runs use cuDNN's deterministic kernels
    architecture: str = "unet"  # or "probabilistic_unet" (loss "elbo"; `dropout` unused)
    latent_dim: int = 6  # Probabilistic U-Net latent dimensions
    beta: float = 1.0  # Probabilistic U-Net: weight of KL(posterior || prior) against the per-voxel cross-entropy


def network_config(settings: TrainSettings) -> dict:
    if settings.architecture == "probabilistic_unet":
        return {"name": "ProbabilisticUNet", "args": {
            "spatial_dims": 3, "in_channels": 1, "out_channels": len(CLASS_NAMES),
            "channels": list(settings.channels), "strides": [2] * (len(settings.channels) - 1), "num_res_units": 1,
            "feature_channels": settings.channels[0], "latent_dim": settings.latent_dim,
            "encoder_channels": list(settings.channels), "fcomb_channels": settings.channels[0], "fcomb_layers": 3,
        }}
    return {"name": "UNet", "args": {
        "spatial_dims": 3, "in_channels": 1, "out_channels": len(CLASS_NAMES),
        "channels": list(settings.channels), "strides": [2] * (len(settings.channels) - 1),
        "num_res_units": 1, "dropout": settings.dropout,
    }}


def model_description(loss: str, seeds: list[int], architecture: str = "unet") -> str:
    trained = f"seed {seeds[0]}" if len(seeds) == 1 else f"{len(seeds)} members, seeds {', '.join(map(str, seeds))}"
    network = "Probabilistic U-Net (MONAI UNet backbone)" if architecture == "probabilistic_unet" else "MONAI UNet"
    return f"{network} trained on MSD Task04 Hippocampus (train split), loss {loss}, {trained}"


def model_spec(settings: TrainSettings, seeds: list[int]) -> ModelSpec:
    """The spec of one network (`model.pt`) or of an ensemble (`member_<m>.pt`) trained from `seeds`."""
    return ModelSpec(
        name=settings.name, description=model_description(settings.loss, seeds, settings.architecture),
        class_names=CLASS_NAMES, roi_size=tuple(settings.roi_size), normalization=NORMALIZATION,
        network=network_config(settings),
        weights="model.pt" if len(seeds) == 1 else tuple(f"member_{m}.pt" for m in range(len(seeds))),
    )


def load_cases(cases: list[Case], normalization: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(image (I, J, K) float32 normalised, label (I, J, K) int64)] for each case."""
    return [prepare_case(read_volume(case.image).array, read_volume(case.label).array, normalization) for case in cases]


def prepare_case(image: np.ndarray, label: np.ndarray, normalization: dict) -> tuple[np.ndarray, np.ndarray]:
    """A case's voxels (I, J, K) as the network trains on them: float32 normalised image, int64 label."""
    import torch

    image = normalize_intensity(torch.from_numpy(image.astype(np.float32))[None], normalization)[0].numpy()
    return image, label.astype(np.int64)


def place_in_roi(image: np.ndarray, label: np.ndarray, roi: tuple[int, ...], rng: np.random.Generator | None):
    """Pad (or crop) a case to `roi`, at a random offset when `rng` is given, else centred."""
    padded_image = np.zeros(roi, np.float32)
    padded_label = np.zeros(roi, np.int64)
    src, dst = [], []
    for size, target in zip(image.shape, roi):
        slack = target - size
        if slack >= 0:
            offset = int(rng.integers(0, slack + 1)) if rng is not None else slack // 2
            src.append(slice(0, size))
            dst.append(slice(offset, offset + size))
        else:
            offset = int(rng.integers(0, -slack + 1)) if rng is not None else -slack // 2
            src.append(slice(offset, offset + target))
            dst.append(slice(0, target))
    padded_image[tuple(dst)] = image[tuple(src)]
    padded_label[tuple(dst)] = label[tuple(src)]
    return padded_image, padded_label


def make_loss(name: str):
    import torch
    from monai.losses import DiceCELoss, DiceLoss

    if name == "ce":
        cross_entropy = torch.nn.CrossEntropyLoss()
        return lambda logits, labels: cross_entropy(logits, labels[:, 0])
    if name == "dice":  # with the background channel: without it, soft Dice alone converged far slower here
        return DiceLoss(to_onehot_y=True, softmax=True, include_background=True, batch=True)
    if name == "dice_ce":
        return DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)
    raise InputError(f"unknown loss '{name}': expected one of {', '.join(LOSSES)}.")


def train(data_root: Path, out: Path, settings: TrainSettings, members: int = 1, overwrite: bool = False,
          progress: Progress | None = None, workers: int = 1) -> dict:
    """Train one network, or an ensemble of `members`, on the `train` split under `data_root`
    (see `train_on_cases`). Returns the summary also written to `training_summary.json`."""
    check_request(settings, members, workers)
    cases = load_cases(load_split(data_root, "train")[:settings.max_cases], NORMALIZATION)
    return train_on_cases(cases, out, settings, members, overwrite, progress, workers)


def check_request(settings: TrainSettings, members: int, workers: int) -> None:
    if settings.loss not in LOSSES:
        raise InputError(f"unknown loss '{settings.loss}': expected one of {', '.join(LOSSES)}.")
    if settings.architecture not in ARCHITECTURES:
        raise InputError(f"unknown architecture '{settings.architecture}': expected one of {', '.join(ARCHITECTURES)}.")
    if (settings.loss == "elbo") != (settings.architecture == "probabilistic_unet"):
        raise InputError(f"loss '{settings.loss}' with architecture '{settings.architecture}': the Probabilistic U-Net trains "
                         "on its ELBO (--loss elbo) and the U-Net on ce, dice or dice_ce.")
    if members < 1:
        raise InputError(f"--members {members}: expected at least 1.")
    if workers < 1:
        raise InputError(f"--workers {workers}: expected at least 1.")


def train_on_cases(cases: list[tuple[np.ndarray, np.ndarray]], out: Path, settings: TrainSettings, members: int = 1,
                   overwrite: bool = False, progress: Progress | None = None, workers: int = 1) -> dict:
    """Train one network, or an ensemble of `members` networks seeded `seed, seed + 1, ...` (so
    different initialisations, data orders and validation parts), on `cases` as `prepare_case`
    gives them; `workers` members train at once in separate processes. A run whose best
    validation Dice stays below `min_validation_dice` (a collapsed run) is set aside and the next
    seed trained instead. Weights are stored as float16 (half the size; loaded into float32 networks)."""
    import torch

    check_request(settings, members, workers)
    progress = progress or Progress("none")
    if workers == 1:
        results, rejected = train_members_in_turn(cases, settings, members, progress)
    else:
        results, rejected = train_members_at_once(cases, settings, members, workers, progress)
    spec = model_spec(settings, [summary["seed"] for _, _, summary in results])
    names = spec.weight_files
    summary = {"members": [summary for _, _, summary in results], "rejected": [summary for _, _, summary in rejected],
               "settings": {**vars(settings)}, "workers": workers, "weights": list(names),
               "seconds": round(sum(summary["seconds"] for _, _, summary in results + rejected), 1)}
    with atomic_output_folder(out, overwrite=overwrite) as staging:
        for name, (state, log, _) in zip(names, results):
            torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, staging / name)
            write_log(staging, log, suffix="" if members == 1 else f"_{name.removesuffix('.pt')}")
        write_json(staging / "model.json", spec.to_json())
        write_json(staging / "training_summary.json", summary, default=list)
    return summary


def is_collapsed(result, settings: TrainSettings) -> bool:
    return result[2]["best_validation_dice"] < settings.min_validation_dice


def give_up_after(rejected: list, members: int, settings: TrainSettings) -> None:
    if len(rejected) >= members:
        raise RuntimeError(f"{len(rejected)} runs ended below validation Dice {settings.min_validation_dice}: "
                           "the recipe does not converge on this data; check the settings.")


def train_members_in_turn(cases, settings: TrainSettings, members: int, progress: Progress):
    """(accepted results, rejected results) training one member after the other; result = train_network's."""
    results, rejected, seed = [], [], settings.seed
    while len(results) < members:
        give_up_after(rejected, members, settings)
        result = train_network(cases, replace(settings, seed=seed), member_progress(progress, len(results), members))
        (rejected if is_collapsed(result, settings) else results).append(result)
        seed += 1
    return results, rejected


def train_members_at_once(cases, settings: TrainSettings, members: int, workers: int, progress: Progress):
    """As `train_members_in_turn` (the same seeds are tried and kept), with `workers` processes
    (spawned, so CUDA works in them) sharing the CPU cores evenly; progress counts finished members."""
    import multiprocessing
    import os
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    threads = max(1, (os.cpu_count() or 1) // workers)
    results, rejected, next_seed = [], [], settings.seed + members
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=limit_threads, initargs=(threads,)) as pool:
        pending = {pool.submit(train_network, cases, replace(settings, seed=s)) for s in range(settings.seed, next_seed)}
        progress("training", 0.0, members=members, workers=workers)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                result = future.result()
                (rejected if is_collapsed(result, settings) else results).append(result)
                if is_collapsed(result, settings):
                    give_up_after(rejected, members, settings)
                    pending.add(pool.submit(train_network, cases, replace(settings, seed=next_seed)))
                    next_seed += 1
            progress("training", len(results) / members, finished=len(results), rejected=len(rejected))
    results.sort(key=lambda result: result[2]["seed"])
    return results, rejected


def limit_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def member_progress(progress: Progress, member: int, members: int):
    """Progress of one member, reported as a part of the whole run."""
    def report(stage: str, fraction: float, **details) -> None:
        progress(stage if members == 1 else f"training member {member + 1}/{members}", (member + fraction) / members, **details)
    return report


def validation_count(cases: int, fraction: float) -> int:
    """How many of `cases` `train_network` holds out for validation: at least one."""
    return max(1, int(round(fraction * cases)))


def train_network(cases: list, settings: TrainSettings, progress=None) -> tuple[dict, list[dict], dict]:
    """Train one network on `cases` (a validation part carved from them); (best state_dict on the CPU,
    per-epoch log, summary). `progress(stage, fraction, **details)` is called after each epoch."""
    import torch

    from ..predict.inference import resolve_device
    from ..predict.models import build_monai_network

    device = resolve_device(settings.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    order = rng.permutation(len(cases))
    n_val = validation_count(len(cases), settings.validation_fraction)
    validation = [cases[i] for i in order[:n_val]]
    training = [cases[i] for i in order[n_val:]]
    network = build_monai_network(network_config(settings), Path("train")).to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=settings.learning_rate, weight_decay=1e-5)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs)
    loss_fn = None if settings.loss == "elbo" else make_loss(settings.loss)
    elbo_beta = settings.beta if settings.loss == "elbo" else None
    log, best, best_state, stale, started = [], -1.0, None, 0, time.perf_counter()
    for epoch in range(1, settings.epochs + 1):
        train_loss = train_epoch(network, optimizer, loss_fn, training, settings.batch_size, settings.patch_size, rng,
                                 elbo_beta=elbo_beta)
        scheduler.step()
        dice = validate(network, validation, settings.roi_size)
        log.append({"epoch": epoch, "train_loss": train_loss, "validation_dice": dice,
                    "seconds": round(time.perf_counter() - started, 1)})
        if progress:
            progress("training", epoch / settings.epochs, epoch=epoch, loss=round(train_loss, 4), val_dice=round(dice, 4))
        if dice > best:
            best, stale = dice, 0
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in network.state_dict().items()}
        else:
            stale += 1
            if stale >= settings.patience:
                break
    summary = {"seed": settings.seed, "best_validation_dice": best, "best_epoch": 1 + int(np.argmax([r["validation_dice"] for r in log])),
               "epochs_run": len(log), "seconds": round(time.perf_counter() - started, 1),
               "parameters": sum(p.numel() for p in network.parameters()), "validation_cases": int(n_val),
               "training_cases": len(training), "device": str(device)}
    return best_state, log, summary


def train_epoch(network, optimizer, loss_fn, cases: list, batch_size: int, patch_size, rng: np.random.Generator,
                elbo_beta: float | None = None) -> float:
    """One pass over `cases` in a random order, augmented crops of `patch_size` in batches, on the
    network's device; returns the mean loss. With `elbo_beta`, the loss is the network's
    `elbo_loss(images, labels, elbo_beta)` (a Probabilistic U-Net) and `loss_fn` is unused."""
    import torch

    device = next(network.parameters()).device
    network.train()
    losses = []
    order = rng.permutation(len(cases))
    for start in range(0, len(cases), batch_size):
        images, labels = zip(*(augment(*cases[i], patch_size, rng) for i in order[start:start + batch_size]))
        images = torch.from_numpy(np.stack(images))[:, None].to(device)
        labels = torch.from_numpy(np.stack(labels))[:, None].to(device)
        loss = network.elbo_loss(images, labels, elbo_beta) if elbo_beta is not None else loss_fn(network(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return float(np.mean(losses))


def augment(image: np.ndarray, label: np.ndarray, roi, rng: np.random.Generator):
    scale, shift = rng.uniform(0.9, 1.1), rng.uniform(-0.1, 0.1)
    return place_in_roi(image * np.float32(scale) + np.float32(shift), label, roi, rng)


def validate(network, cases, roi) -> float:
    """Mean foreground Dice of the centred-ROI prediction over `cases`."""
    import torch

    device = next(network.parameters()).device
    network.eval()
    scores = []
    with torch.inference_mode():
        for image, label in cases:
            x, y = place_in_roi(image, label, roi, None)
            predicted = network(torch.from_numpy(x)[None, None].to(device))[0].argmax(0).cpu().numpy()
            scores.append(np.mean(dice_per_class(predicted, y, len(CLASS_NAMES))))
    return float(np.mean(scores))


def write_log(folder: Path, log: list[dict], suffix: str = "") -> None:
    """`training_log{suffix}.csv` and `training_curve{suffix}.png` (loss and validation Dice per epoch)."""
    write_csv(folder / f"training_log{suffix}.csv", log, log[0])
    plt = pyplot()

    figure, loss_axis = plt.subplots(figsize=(6, 3.5))
    epochs = [row["epoch"] for row in log]
    loss_axis.plot(epochs, [row["train_loss"] for row in log], color="tab:blue", label="training loss")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("training loss")
    dice_axis = loss_axis.twinx()
    dice_axis.plot(epochs, [row["validation_dice"] for row in log], color="tab:orange", label="validation Dice")
    dice_axis.set_ylabel("validation Dice")
    figure.legend(loc="center right")
    figure.tight_layout()
    figure.savefig(folder / f"training_curve{suffix}.png", dpi=100)
    plt.close(figure)
