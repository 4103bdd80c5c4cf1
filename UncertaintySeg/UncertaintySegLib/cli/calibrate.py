"""`uncertaintyseg calibrate`: fit a post-hoc calibrator on labelled cases and save it for `predict --calibrator`.

    uncertaintyseg calibrate --model hippocampus --method temperature --out hippocampus-ts
    uncertaintyseg calibrate --model hippocampus-dice --method auxconv --roi bbox --max-voxels-per-case 50000 --out dice-aux
    uncertaintyseg calibrate --model hippocampus --method finetune --out hippocampus-ft    # a new model folder

Methods: temperature, vector and Platt scaling, auxiliary convolution (auxconv), last-layer
fine-tuning (finetune), and, for comparison, histogram binning and isotonic regression of the
top-label confidence (see `calibration/`).

A seeded `--holdout-fraction` of the split's cases is set aside and never fitted on: the report
gives the NLL before and after calibration on the fitting voxels and on these held-out voxels
(per forward pass, nats, at most `--max-voxels-per-case` ROI voxels per case and network).
Logit calibrators see one deterministic forward pass per network and case; an ensemble's
members' passes are pooled. `finetune` trains on whole cases as `train.py` does (the ROI applies
to its report only). Cases are read and run one at a time. Writes, whole or not at all:
`calibrator.json` (+ `calibrator.pt`, the tensors), or for `finetune` a model folder
(`model.json`, weights, `fine_tuning.json`) with a `calibrator.json` that says so; and
`fit_report.json`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ..data.hippocampus import SPLITS
from ..common.errors import InputError
from .option_types import at_least, device, seed
from .predict import add_trust_bundle_argument
from ..common.json_output import write_json

METHOD_CHOICES = ("temperature", "vector", "platt", "auxconv", "finetune", "histogram", "isotonic")
ROI_CHOICES = ("bbox", "mask", "none")
REPORT_FILE = "fit_report.json"


def add_calibrate_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("calibrate", help="fit a post-hoc calibrator (temperature, vector or Platt scaling, "
                                                     "auxiliary convolution, last-layer fine-tuning) on labelled cases")
    parser.add_argument("--model", nargs="+", required=True, help="bundled model name, model folder or model.json, MONAI "
                                                                  "bundle folder, or TorchScript file; several: one ensemble")
    add_trust_bundle_argument(parser)
    parser.add_argument("--method", required=True, help=f"one of {', '.join(METHOD_CHOICES)}")
    parser.add_argument("--data-root", type=Path, help="folder holding Task04_Hippocampus/ (default: as `train` finds it)")
    parser.add_argument("--download", action="store_true", help="download MSD Task04 into the user cache if it is not found")
    parser.add_argument("--split", choices=SPLITS, default="calibration", help="labelled cases to fit on (default: calibration)")
    parser.add_argument("--max-cases", type=at_least(1), help="use only the split's first N cases (quick experiments)")
    parser.add_argument("--roi", choices=ROI_CHOICES, default="bbox",
                        help="voxels fitted on: bbox (reference foreground box dilated 8 mm in-plane, 2 slices "
                             "out-of-plane, as `evaluate --roi bbox`), mask (--mask), none (whole volume) (default: bbox)")
    parser.add_argument("--mask", type=Path, help="ROI mask volume, or a folder of masks named by case id (--roi mask)")
    parser.add_argument("--max-voxels-per-case", type=int, default=200_000,
                        help="fit on at most N ROI voxels per case and network, drawn at random (seeded); 0: all (default: 200000)")
    parser.add_argument("--holdout-fraction", type=float, default=0.2,
                        help="fraction of the cases set aside for the report, never fitted on; 0: fit on all (default: 0.2)")
    parser.add_argument("--seed", type=seed, default=0, help="seed of the case split and the voxel sampling (default: 0)")
    parser.add_argument("--kernel-size", type=int, default=5, help="auxconv: convolution kernel size (default: 5)")
    parser.add_argument("--bins", type=at_least(1), default=15, help="histogram: equal-width confidence bins (default: 15)")
    parser.add_argument("--epochs", type=at_least(1), default=50, help="auxconv, finetune: at most this many epochs (default: 50)")
    parser.add_argument("--learning-rate", type=float,
                        help="auxconv, finetune: Adam learning rate (default: 5e-3 for auxconv; for finetune 1e-3 if the "
                             "model was trained with a Dice loss, 1e-4 with cross-entropy)")
    parser.add_argument("--loss", choices=("ce", "dice", "dice_ce"),
                        help="finetune: the loss the model was trained with (default: from its training_summary.json)")
    parser.add_argument("--device", type=device, default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1, ...")
    return parser


def check_arguments(args) -> None:
    if args.method not in METHOD_CHOICES:
        raise InputError(f"unknown calibration method {args.method!r}: expected one of {', '.join(METHOD_CHOICES)}.")
    if args.max_voxels_per_case < 0:
        raise InputError(f"--max-voxels-per-case {args.max_voxels_per_case}: expected 0 (all) or more.")
    if not 0 <= args.holdout_fraction < 1:
        raise InputError(f"--holdout-fraction {args.holdout_fraction}: expected a number in [0, 1).")
    if args.max_cases is not None and args.max_cases < 1:
        raise InputError(f"--max-cases {args.max_cases}: expected at least 1.")
    if args.epochs < 1:
        raise InputError(f"--epochs {args.epochs}: expected at least 1.")
    if args.roi == "mask" and args.mask is None:
        raise InputError("--roi mask needs --mask FILE_OR_FOLDER.")


def make_calibrator(args):
    """The estimator --method names, with the command's settings."""
    from ..calibration import (AuxiliaryConvCalibrator, HistogramBinning, IsotonicRegression, LastLayerFineTuning, PlattScaling,
                              TemperatureScaling, VectorScaling)

    voxels = args.max_voxels_per_case or None
    if args.method == "auxconv":
        return AuxiliaryConvCalibrator(kernel_size=args.kernel_size, learning_rate=args.learning_rate or 5e-3,
                                       max_epochs=args.epochs, max_voxels_per_case=voxels, seed=args.seed)
    if args.method == "finetune":
        return LastLayerFineTuning(loss=args.loss, learning_rate=args.learning_rate, max_epochs=args.epochs, seed=args.seed)
    if args.method == "histogram":
        return HistogramBinning(n_bins=args.bins, max_voxels_per_case=voxels, seed=args.seed)
    voxel_calibrator = {"temperature": TemperatureScaling, "vector": VectorScaling, "platt": PlattScaling,
                        "isotonic": IsotonicRegression}[args.method]
    return voxel_calibrator(max_voxels_per_case=voxels, seed=args.seed)


def run_calibrate(args, progress) -> None:
    from ..calibration import model_fingerprint
    from ..data.hippocampus import load_split, resolve_data_root
    from ..evaluation.prediction_sets import find_volumes
    from ..training.layer_retraining import split_holdout
    from ..common.output_folders import atomic_output_folder
    from ..predict.models import combine_models
    from ..predict.model_loading import load_model
    from ..predict.outputs import versions

    started = time.perf_counter()
    check_arguments(args)
    data_root = resolve_data_root(args.data_root, args.download)
    cases = load_split(data_root, args.split)[: args.max_cases]
    masks = find_volumes(args.mask, "mask") if args.roi == "mask" else None
    progress("loading model", 0.0)
    model = combine_models([load_model(path, trust_bundle=args.trust_bundle) for path in args.model])
    fingerprint = model_fingerprint(model)
    calibrator = make_calibrator(args)
    fit_cases, held_out = split_holdout(cases, args.holdout_fraction, args.seed) if args.holdout_fraction and len(cases) > 1 else (cases, [])
    source = CaseSource(model, args.roi, masks, args.device, args.max_voxels_per_case or None, args.seed)
    fit_started = time.perf_counter()
    if args.method == "finetune":
        from ..training.train import load_cases

        progress("fine-tuning", 0.05)
        calibrator.fit(model, load_cases(fit_cases, model.spec.normalization),
                       lambda stage, fraction, **details: progress(stage, 0.05 + 0.65 * fraction, **details))
        fit_seconds = time.perf_counter() - fit_started
        tuned = calibrator.networks_
        report = {"fit": source.nll_report(fit_cases, progress, "fit cases", (0.7, 0.85), networks_after=tuned),
                  "held_out": source.nll_report(held_out, progress, "held-out cases", (0.85, 0.95), networks_after=tuned)}
    else:
        calibrator.fit_cases(source.logit_cases(fit_cases, progress, "fitting"), model=fingerprint)
        fit_seconds = time.perf_counter() - fit_started
        report = {"fit": {"cases": len(fit_cases), "passes": calibrator.cases_used_, "voxels": calibrator.voxels_used_,
                          "nll_before": calibrator.nll_before_, "nll_after": calibrator.nll_after_},
                  "held_out": source.nll_report(held_out, progress, "held-out cases", (0.7, 0.95), transform=calibrator.transform)}
    record = {
        "method": args.method, "description": calibrator.describe(), "model": fingerprint,
        "data": {"data_root": str(data_root), "split": args.split, "max_cases": args.max_cases,
                 "fit_cases": [case.case_id for case in fit_cases], "held_out_cases": [case.case_id for case in held_out]},
        "settings": {"roi": args.roi, "mask": None if args.mask is None else str(args.mask), "holdout_fraction": args.holdout_fraction,
                     "max_voxels_per_case": args.max_voxels_per_case, "seed": args.seed, "device": args.device,
                     "calibrator": calibrator.get_params()},
        "nll_per_forward_pass": report,
        "timings": {"fit_s": round(fit_seconds, 3), "total_s": round(time.perf_counter() - started, 3)},
        "versions": versions(),
    }
    progress("writing calibrator", 0.97)
    with atomic_output_folder(args.out, overwrite=args.overwrite) as staging:
        calibrator.save(staging)
        if args.method == "finetune":
            write_fine_tuning_marker(staging, calibrator, fingerprint)
        write_json(staging / REPORT_FILE, record)
    if args.progress != "json":
        print(format_report(record))


def write_fine_tuning_marker(folder: Path, fine_tuning, fingerprint: dict) -> None:
    """calibrator.json of a fine-tuned model folder: says what it is, so `predict --calibrator` can point to --model."""
    from ..calibration.base import FORMAT, FORMAT_VERSION, JSON_FILE

    write_json(folder / JSON_FILE, {
        "format": FORMAT, "format_version": FORMAT_VERSION, "method": "finetune", "description": fine_tuning.describe(),
        "class_names": fingerprint["class_names"], "model": fingerprint, "settings": fine_tuning.get_params(),
        "model_folder": ".", "fine_tuning": "fine_tuning.json"})


class CaseSource:
    """Reads labelled cases one at a time, builds their ROI, and runs the model's networks on them."""

    def __init__(self, model, roi: str, masks: dict | None, device: str, max_voxels: int | None, seed: int):
        self.model, self.roi, self.masks, self.device, self.max_voxels, self.seed = model, roi, masks, device, max_voxels, seed

    def read(self, case) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(image (C_in, I, J, K), labels (I, J, K) int64, ROI (I, J, K) bool or None), checked, for one case."""
        from ..predict.inference import check_image
        from ..predict.io import read_volume
        from ..evaluation.roi import roi_mask

        volume, reference = read_volume(case.image), read_volume(case.label)
        image = check_image(volume, self.model.spec)
        labels = reference.array
        if labels.shape != image.shape[1:]:
            raise InputError(f"case '{case.case_id}': label map has shape {labels.shape}, the image {image.shape[1:]}: "
                             "expected the same grid.")
        classes = self.model.spec.num_classes
        if labels.min() < 0 or labels.max() >= classes or not np.array_equal(labels, np.round(labels)):
            raise InputError(f"case '{case.case_id}': labels hold values {labels.min():g}..{labels.max():g}, model "
                             f"'{self.model.spec.name}' has {classes} classes ({', '.join(self.model.spec.class_names)}): "
                             f"expected class indices 0..{classes - 1}.")
        mask = None
        if self.masks is not None:
            path = self.masks.get(case.case_id) or (next(iter(self.masks.values())) if len(self.masks) == 1 else None)
            if path is None:
                raise InputError(f"no ROI mask for case '{case.case_id}' in --mask: expected a file named {case.case_id}.")
            mask = read_volume(path).array
        region = roi_mask({"none": "whole"}.get(self.roi, self.roi), labels, reference.geometry.spacing, mask)
        if region is not None and not region.any():
            raise InputError(f"case '{case.case_id}': the {self.roi} ROI is empty (no voxel to calibrate on)"
                             + ("; the reference has no foreground" if self.roi == "bbox" else "")
                             + ". Use --roi none, or leave the case out.")
        return image, labels.astype(np.int64), region

    def logits(self, network, image):
        from ..predict.inference import predict_logits

        return predict_logits(network, self.model.spec, image, device=self.device)

    def logit_cases(self, cases, progress, stage: str):
        """(logits (C, I, J, K), labels, ROI) per case and network: every network's deterministic pass, pooled."""
        for index, case in enumerate(cases):
            progress(f"{stage}: {case.case_id} ({index + 1}/{len(cases)})", 0.05 + 0.6 * index / max(len(cases), 1))
            image, labels, region = self.read(case)
            for network in self.model.networks:
                yield self.logits(network, image), labels, region

    def nll_report(self, cases, progress, stage: str, span: tuple[float, float], transform=None, networks_after=None) -> dict:
        """Mean NLL per forward pass before and after calibration over at most `max_voxels` sampled ROI voxels
        per case and network: after = `transform(logits)`, or the logits of `networks_after` (fine-tuned, one per network)."""
        import torch

        from ..calibration.cases import check_case, sample_index, voxels_at

        rng = np.random.default_rng(self.seed + 1)
        totals, voxels = [0.0, 0.0], 0
        for index, case in enumerate(cases):
            progress(f"{stage}: {case.case_id} ({index + 1}/{len(cases)})", span[0] + (span[1] - span[0]) * index / len(cases))
            image, labels, region = self.read(case)
            for member, network in enumerate(self.model.networks):
                checked = check_case(self.logits(network, image), labels, region, index)
                chosen = sample_index(checked.mask, self.max_voxels, rng)
                target = checked.labels.reshape(-1)[chosen]
                calibrated = transform(checked.logits) if transform is not None else self.logits(networks_after[member], image)
                for slot, logits in enumerate((checked.logits, calibrated)):
                    totals[slot] += float(torch.nn.functional.cross_entropy(voxels_at(logits.float(), chosen).double(), target, reduction="sum"))
                voxels += int(target.numel())
        if not voxels:
            return {"cases": 0, "voxels": 0, "nll_before": None, "nll_after": None}
        return {"cases": len(cases), "passes": len(cases) * len(self.model.networks), "voxels": voxels,
                "nll_before": totals[0] / voxels, "nll_after": totals[1] / voxels}


def format_report(record: dict) -> str:
    lines = [record["description"], f"{'part':<10} {'cases':>5} {'voxels':>9} {'NLL before':>11} {'NLL after':>10}"]
    for name, row in record["nll_per_forward_pass"].items():
        if row["voxels"]:
            lines.append(f"{name:<10} {row['cases']:>5} {row['voxels']:>9} {row['nll_before']:>11.5f} {row['nll_after']:>10.5f}")
        else:
            lines.append(f"{name:<10} {'no cases (--holdout-fraction 0)':>37}")
    lines.append(f"fitted in {record['timings']['fit_s']:.1f} s")
    return "\n".join(lines)
