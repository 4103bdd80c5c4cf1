"""`uncertaintyseg predict`: options, and the run from files to an output folder.

    uncertaintyseg predict --image case.nii.gz --model hippocampus-dice --method ensemble+tta --out out/case
    uncertaintyseg predict --image case.nii.gz --model hippocampus --method mc_dropout --samples 20 --out out/case
    uncertaintyseg predict --image case.nii.gz --model prob-unet/model.json --method sample --samples 20 --out out/case
    uncertaintyseg predict --image case.nii.gz --model a/model.json b/model.json --method ensemble --out out/case

Writes the volumes of `outputs.py`, `segments.csv` (per-segment and per-component volume, mean
entropy, mean MI and quality flag), optionally every sample under `samples/`, and `run.json`.
`--calibrator CAL` applies a calibrator from `uncertaintyseg calibrate` to every forward pass's
logits, after checking it was fitted for this model's classes and weights; run.json records it.
`--feature-maps LAYER[=mean|max|0,3,5] ...` also writes `feature_maps/<layer>_<reduction>.nrrd`
(`feature_maps.py`: one deterministic pass of the first network, on the input's grid);
`--list-layers` prints the model's layers with their output channels and writes nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..common.errors import InputError
from .option_types import at_least, device, flag_threshold, probability, seed
from ..predict.sampling import METHODS, SamplingPlan, default_plan, parse_method



def add_sampling_arguments(parser, seed_help: str = "seed of the first MC dropout pass or draw (default: 0)") -> None:
    """--method, --samples, --seed and --tta-axes: what `sampling_plan(args, members)` reads."""
    parser.add_argument("--method", help=f"{', '.join(METHODS)}, or a combination such as ensemble+tta or ensemble+mc_dropout "
                                         "(default: ensemble for an ensemble model, else softmax)")
    parser.add_argument("--samples", type=at_least(1), default=20,
                        help="MC dropout passes / stochastic draws (--method sample) per network and flip (default: 20)")
    parser.add_argument("--seed", type=seed, default=0, help=seed_help)
    parser.add_argument("--tta-axes", default="0,1,2", help="image axes (0=I, 1=J, 2=K) whose flips TTA combines (default: 0,1,2: 8 flips)")


def add_trust_bundle_argument(parser) -> None:
    """--trust-bundle: let MONAI's ConfigParser run a MONAI bundle's config (its `$` expressions and `_target_`s)."""
    parser.add_argument("--trust-bundle", action="store_true",
                        help="a MONAI bundle's configs/inference.json is code to MONAI ($ expressions, any _target_): by "
                             "default it is read as data and refused if it holds code; with this flag MONAI's ConfigParser "
                             "runs it. Only for bundles whose code you trust")


def add_predict_parser(subparsers) -> argparse.ArgumentParser:
    predict = subparsers.add_parser("predict", help="run a model (or read saved probabilities) and write probability, "
                                                    "uncertainty and label volumes and per-segment scores")
    predict.add_argument("--image", type=Path, help="input volume: NIfTI, NRRD, MHA or a DICOM series folder (required)")
    source = predict.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", nargs="+", help="bundled model name, model folder or model.json, MONAI bundle folder, or "
                                                   "TorchScript file; several: the members of one ensemble (same classes)")
    source.add_argument("--probabilities", type=Path, help="probabilities saved by another tool: nnU-Net .npz or a 4-D volume")
    predict.add_argument("--class-names", help="comma-separated class names for --probabilities (default: class 0, class 1, ...)")
    predict.add_argument("--nnunet-axes", choices=("zyx", "xyz"), default="zyx", help="axis order of an nnU-Net .npz (default: zyx, nnU-Net's own)")
    add_trust_bundle_argument(predict)
    add_sampling_arguments(predict)
    predict.add_argument("--insert-dropout", choices=("decoder", "center"),
                         help="insert dropout into a MONAI UNet without it (not retrained: see `insert-dropout --retrain`)")
    predict.add_argument("--dropout-p", type=probability, default=0.1, help="probability of inserted dropout (default: 0.1)")
    predict.add_argument("--save-samples", action="store_true", help="also write every sample's probabilities under samples/")
    predict.add_argument("--normalize-uncertainty", action="store_true", help="divide entropy, expected entropy and MI by log C (range [0, 1])")
    predict.add_argument("--flag-threshold", type=flag_threshold, help="mean segment entropy above which a segment is flagged 'check': a number, "
                                                  "or the thresholds.json that `evaluate` fits on labelled cases")
    predict.add_argument("--calibrator", type=Path, help="apply a calibrator written by `uncertaintyseg calibrate` to every "
                                                         "forward pass's logits (it must have been fitted for this model)")
    predict.add_argument("--feature-maps", nargs="*", metavar="LAYER[=mean|max|0,3,5]",
                         help="also write these layers' outputs (channel mean, max, or chosen channels) under feature_maps/; "
                              "without a layer: each UNet encoder and decoder block's last convolution, channel mean")
    predict.add_argument("--list-layers", action="store_true", help="print the model's layers (name, type, output channels) "
                                                                    "and exit; needs only --model, writes nothing")
    predict.add_argument("--device", type=device, default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1, ...")
    return predict


def check_predict_arguments(parser, args) -> None:
    """--image and --out are required unless --list-layers, which needs only --model."""
    if args.list_layers:
        if not args.model:
            parser.error("--list-layers needs --model (saved probabilities have no layers).")
        return
    missing = [option for option, value in (("--image", args.image), ("--out", args.out)) if value is None]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")


def print_layers(args) -> None:
    from ..predict.feature_maps import default_layers, list_layers
    from ..predict.model_loading import load_model

    model = load_model(args.model[0], trust_bundle=args.trust_bundle)
    network = model.network
    layers = list_layers(network, model.spec)
    try:
        defaults = set(default_layers(network))
    except InputError:
        defaults = set()
    print("layer\ttype\toutput channels\tdefault")
    for name, kind, channels in layers:
        print(f"{name}\t{kind}\t{'' if channels is None else channels}\t{'yes' if name in defaults else ''}")


def sampling_plan(args, members: int) -> SamplingPlan:
    if not args.method:
        return default_plan(members)
    try:
        axes = tuple(int(axis) for axis in args.tta_axes.split(",") if axis.strip())
    except ValueError:
        raise InputError(f"--tta-axes {args.tta_axes!r}: expected comma-separated axes among 0, 1, 2.") from None
    return SamplingPlan(methods=parse_method(args.method), samples=args.samples, seed=args.seed, tta_axes=axes)


def run_predict(args, progress) -> None:
    from ..predict.io import read_volume
    from ..common.output_folders import atomic_output_folder
    from ..predict.outputs import run_record, write_prediction_files
    from ..predict.segment_scores import SEGMENTS_FILE, read_thresholds, segment_scores, write_segment_csv

    if args.list_layers:
        print_layers(args)
        return
    started = time.perf_counter()
    thresholds = read_thresholds(args.flag_threshold, args.normalize_uncertainty)
    progress("reading image", 0.0)
    volume = read_volume(args.image)
    with atomic_output_folder(args.out, overwrite=args.overwrite) as staging:
        if args.model:
            prediction, model_info = predict_with_model(args, volume, staging, progress)
        else:
            prediction, model_info = read_precomputed(args, volume, progress)
        if args.normalize_uncertainty:
            prediction.normalize_uncertainty()
        segments = segment_scores(prediction.labels, prediction.entropy, volume.geometry.spacing, prediction.class_names,
                                  prediction.mutual_information, thresholds)
        prediction.timings["total_s"] = round(time.perf_counter() - started, 4)
        progress("writing outputs", 0.9)
        settings = {"device": args.device, "normalize_uncertainty": args.normalize_uncertainty, "flag_threshold": thresholds}
        record = run_record(prediction, model_info, settings, str(args.image))
        record["outputs"]["segments"] = SEGMENTS_FILE
        if args.feature_maps is not None:
            record["outputs"]["feature_maps"] = model_info.pop("feature_map_files")
            record["settings"]["feature_maps"] = "one pass of the first network, dropout off, on the input's grid"
        write_segment_csv(staging / SEGMENTS_FILE, segments)
        write_prediction_files(staging, prediction, record)


def predict_with_model(args, volume, staging: Path, progress):
    from ..predict.io import Volume, write_volume
    from ..calibration import load_calibrator_for
    from ..predict.models import combine_models
    from ..predict.model_loading import load_model
    from ..predict.pipeline import predict_volume

    progress("loading model", 0.05)
    model = combine_models([load_model(path, trust_bundle=args.trust_bundle) for path in args.model])
    feature_requests = feature_map_requests(args.feature_maps, model.network)
    calibrator = load_calibrator_for(args.calibrator, model) if args.calibrator else None
    inserted = None
    if args.insert_dropout:
        from ..predict.dropout_insertion import insert_dropout

        modules = [insert_dropout(network, args.insert_dropout, args.dropout_p) for network in model.networks]
        inserted = {"placement": args.insert_dropout, "p": args.dropout_p, "retrained": False, "modules": modules[0]}
    on_sample = None
    if args.save_samples:
        (staging / "samples").mkdir()
        on_sample = (lambda index, label, probabilities: write_volume(
            staging / "samples" / f"sample_{index:03d}.nrrd", Volume(probabilities.numpy(), volume.geometry)))
    prediction = predict_volume(volume, model, device=args.device, progress=progress,
                                plan=sampling_plan(args, len(model.networks)), on_sample=on_sample,
                                logits_transform=calibrator.transform if calibrator else None)
    if "warning" in prediction.sampling:
        print(f"warning: {prediction.sampling['warning']}", file=sys.stderr)
    feature_files = None
    if feature_requests:
        from ..predict.feature_maps import feature_maps
        from ..predict.outputs import write_feature_map_files

        progress("feature maps", 0.85)
        maps = feature_maps(model.network, model.spec, volume.array if volume.array.ndim == 4 else volume.array[None],
                            feature_requests, device=args.device)
        feature_files = write_feature_map_files(staging, maps, volume.geometry)
    info = {"name": model.spec.name, "source": str(model.source), "spec": model.spec.to_json(),
            "inserted_dropout": inserted or model.spec.inserted_dropout,
            "calibrator": None if calibrator is None else {
                "path": str(args.calibrator), "method": calibrator.method, "description": calibrator.describe(),
                "settings": calibrator.get_params(), "fitted_for": calibrator.model_}}
    if feature_files is not None:
        info["feature_map_files"] = feature_files
    return prediction, info


def feature_map_requests(options: list[str] | None, network) -> list:
    """--feature-maps values -> requests, checked against the network before the long work (no layer: the defaults, mean)."""
    if options is None:
        return []
    from ..predict.feature_maps import check_layers, default_layers, parse_feature_map

    requests = [parse_feature_map(option) for option in options] if options else \
        [parse_feature_map(layer) for layer in default_layers(network)]
    check_layers(network, requests)
    return requests


def read_precomputed(args, volume, progress):
    import torch

    from ..predict.pipeline import summarize
    from ..predict.precomputed import read_probabilities

    if args.feature_maps is not None:
        raise InputError("--feature-maps needs --model: saved probabilities come without the network's layers.")
    if args.method or args.insert_dropout or args.save_samples:
        raise InputError("--method, --insert-dropout and --save-samples need --model: saved probabilities are one sample.")
    if args.calibrator:
        raise InputError("--calibrator needs --model: a calibrator transforms the logits of the model it was fitted for, "
                         "and saved probabilities carry no record of which model made them.")
    probabilities = read_probabilities(args.probabilities, volume, args.nnunet_axes)
    names = args.class_names.split(",") if args.class_names else [f"class {c}" for c in range(probabilities.num_channels)]
    if len(names) != probabilities.num_channels:
        raise InputError(f"--class-names lists {len(names)} names, the probabilities have {probabilities.num_channels} classes.")
    prediction = summarize(torch.from_numpy(probabilities.array), names, volume.geometry, progress)
    prediction.sampling = {"method": "precomputed", "samples_drawn": 1}
    return prediction, {"name": "precomputed", "source": str(args.probabilities)}

