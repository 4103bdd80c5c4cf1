"""`uncertaintyseg insert-dropout`: a copy of a model with dropout inserted, optionally retrained.

    uncertaintyseg insert-dropout --model mymodel --placement decoder --p 0.1 --out mymodel-dropout
    uncertaintyseg insert-dropout --model mymodel --placement center --retrain --data-root data --out mymodel-mcd
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .option_types import at_least, probability
from ..common.json_output import json_text


def add_insert_dropout_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("insert-dropout", help="copy a MONAI UNet model with dropout inserted (for MC dropout), "
                                                          "optionally retraining the layers after it")
    parser.add_argument("--model", required=True, help="bundled model name, model folder or model.json (MONAI UNet)")
    parser.add_argument("--placement", choices=("decoder", "center"), default="decoder",
                        help="decoder: before each decoder block and the output; center: around the lowest encoder/decoder blocks")
    parser.add_argument("--p", type=probability, default=0.1, help="dropout probability (default: 0.1)")
    parser.add_argument("--retrain", action="store_true", help="retrain the blocks after the dropout on labelled cases "
                                                                "(lrs 1e-3/1e-4/1e-5, best held-out NLL kept)")
    parser.add_argument("--split", default="calibration", help="split of Task04_Hippocampus/splits.json to retrain on (default: calibration)")
    parser.add_argument("--loss", choices=("ce", "dice", "dice_ce"), help="the model's training loss (default: from its training_summary.json)")
    parser.add_argument("--epochs", type=at_least(1), default=10, help="at most this many epochs per learning rate (default: 10)")
    parser.add_argument("--max-cases", type=at_least(1), help="retrain on the split's first N cases only (quick experiments)")
    parser.add_argument("--data-root", type=Path, help="folder holding Task04_Hippocampus/")
    parser.add_argument("--download", action="store_true")
    return parser


def run_insert_dropout(args, progress) -> None:
    from ..training.dropout_retraining import make_dropout_model

    cases = None
    if args.retrain:
        from ..data.hippocampus import load_split, resolve_data_root
        from ..predict.model_loading import load_model
        from ..training.train import load_cases

        normalization = load_model(args.model).spec.normalization
        cases = load_cases(load_split(resolve_data_root(args.data_root, args.download), args.split)[:args.max_cases], normalization)
    summary = make_dropout_model(args.model, args.placement, args.p, args.out, cases, args.loss, args.epochs, args.overwrite, progress)
    if args.progress != "json":
        print(json_text(summary), end="")
