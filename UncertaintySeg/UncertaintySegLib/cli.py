"""`uncertaintyseg predict|evaluate|demo|train`: the command line, for people and for the Slicer panel.

Exit codes: 0 ok, 2 bad input (one line on stderr saying what to fix), 1 failure.
`--progress json` prints one JSON object per line on stdout: {"stage": ..., "fraction": ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

from .errors import InputError
from .evaluate import add_evaluate_parser, run_evaluate
from .io import require_new_output_folder


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output folder (written whole or not at all)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--progress", choices=("json", "text", "none"), default="text", help="progress format (json: one object per line)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="uncertaintyseg", description="Segmentation uncertainty and calibration.")
    commands = parser.add_subparsers(dest="command", required=True)

    predict = commands.add_parser("predict", help="run a model (or read saved probabilities) and write probability, entropy and label volumes")
    predict.add_argument("--image", required=True, type=Path, help="input volume: NIfTI, NRRD, MHA or a DICOM series folder")
    source = predict.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="bundled model name, model folder or model.json, MONAI bundle folder, or TorchScript file")
    source.add_argument("--probabilities", type=Path, help="probabilities saved by another tool: nnU-Net .npz or a 4-D volume")
    predict.add_argument("--class-names", help="comma-separated class names for --probabilities (default: class 0, class 1, ...)")
    predict.add_argument("--nnunet-axes", choices=("zyx", "xyz"), default="zyx", help="axis order of an nnU-Net .npz (default: zyx, nnU-Net's own)")
    predict.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1, ...")
    _add_common(predict)

    add_evaluate_parser(commands)

    demo = commands.add_parser("demo", help="run the default model on a test-split hippocampus case")
    demo.add_argument("--model", default="hippocampus", help="bundled model name or path (default: hippocampus)")
    demo.add_argument("--case", help="case id from the test split (default: the split's first case)")
    demo.add_argument("--data-root", type=Path, help="folder holding Task04_Hippocampus/")
    demo.add_argument("--download", action="store_true", help="download MSD Task04 into the user cache if it is not found")
    demo.add_argument("--device", default="auto")
    _add_common(demo)

    train = commands.add_parser("train", help="train a MONAI U-Net with dropout on the hippocampus train split")
    train.add_argument("--loss", choices=("ce", "dice", "dice_ce"), default="dice_ce")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--epochs", type=int, default=60)
    train.add_argument("--patience", type=int, default=15, help="stop after this many epochs without a better validation Dice")
    train.add_argument("--name", default="hippocampus", help="model name written into model.json")
    train.add_argument("--max-cases", type=int, help="use only the first N cases of the train split (quick experiments)")
    train.add_argument("--members", type=int, default=1, help="train a deep ensemble of N members seeded seed, seed+1, ...")
    train.add_argument("--min-validation-dice", type=float, default=0.0,
                       help="set aside a run whose best validation Dice stays below this (collapsed) and train the next seed")
    train.add_argument("--data-root", type=Path)
    train.add_argument("--download", action="store_true")
    _add_common(train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .progress import Progress

    progress = Progress(args.progress)
    try:
        require_new_output_folder(args.out, args.overwrite)  # before long work, not only when writing
        {"predict": run_predict, "evaluate": run_evaluate, "demo": run_demo, "train": run_train}[args.command](args, progress)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; no output was written.", file=sys.stderr)
        return 1
    except Exception as error:  # a failure, not bad input: say what happened, keep the traceback for the log
        if os.environ.get("UNCERTAINTYSEG_DEBUG"):
            traceback.print_exc()
        print(f"error: uncertaintyseg {args.command} failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    progress("done", 1.0)
    return 0


def run_predict(args, progress) -> None:
    from .io import read_volume
    from .outputs import run_record, write_prediction
    from .pipeline import predict_volume, summarize

    started = time.perf_counter()
    progress("reading image", 0.0)
    volume = read_volume(args.image)
    if args.model:
        from .models import load_model

        progress("loading model", 0.05)
        model = load_model(args.model)
        prediction = predict_volume(volume, model, device=args.device, progress=progress)
        model_info = {"name": model.spec.name, "source": str(model.source), "spec": model.spec.to_json()}
    else:
        import torch

        from .precomputed import read_probabilities

        probabilities = read_probabilities(args.probabilities, volume, args.nnunet_axes)
        names = args.class_names.split(",") if args.class_names else [f"class {c}" for c in range(probabilities.num_channels)]
        if len(names) != probabilities.num_channels:
            raise InputError(f"--class-names lists {len(names)} names, the probabilities have {probabilities.num_channels} classes.")
        prediction = summarize(torch.from_numpy(probabilities.array), names, volume.geometry, progress)
        model_info = {"name": "precomputed", "source": str(args.probabilities)}
    prediction.timings["total_s"] = round(time.perf_counter() - started, 4)
    progress("writing outputs", 0.9)
    write_prediction(args.out, prediction, run_record(prediction, model_info, {"device": args.device}, str(args.image)), args.overwrite)


def run_demo(args, progress) -> None:
    from .demo import run_demo as demo

    summary = demo(args.out, model=args.model, case_id=args.case, data_root=args.data_root, download=args.download,
                   device=args.device, overwrite=args.overwrite, progress=progress)
    if args.progress != "json":
        print(json.dumps(summary, indent=2))


def run_train(args, progress) -> None:
    from .data import resolve_data_root
    from .train import TrainSettings, train

    settings = TrainSettings(loss=args.loss, seed=args.seed, epochs=args.epochs, patience=args.patience, name=args.name,
                             max_cases=args.max_cases, min_validation_dice=args.min_validation_dice)
    summary = train(resolve_data_root(args.data_root, args.download), args.out, settings, args.members, args.overwrite, progress)
    if args.progress != "json":
        print(json.dumps(summary, indent=2, default=list))


if __name__ == "__main__":
    sys.exit(main())
