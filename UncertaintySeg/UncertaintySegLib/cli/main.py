"""`uncertaintyseg predict|calibrate|compare|evaluate|ood|rank|demo|train|insert-dropout`: the command line, for people and for the Slicer panel.

Exit codes: 0 ok, 2 bad input (one line on stderr saying what to fix), 1 failure.
`--progress json` prints one JSON object per line on stdout: {"stage": ..., "fraction": ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import traceback
from pathlib import Path

from .calibrate import add_calibrate_parser, run_calibrate
from .compare import add_compare_parser, run_compare
from .insert_dropout import add_insert_dropout_parser, run_insert_dropout
from ..common.errors import InputError
from .evaluate import add_evaluate_parser, run_evaluate
from ..common.output_folders import refuse_output_over_inputs, require_new_output_folder
from .ood import add_ood_parser, run_ood
from .option_types import at_least, device, seed
from .predict import add_predict_parser, check_predict_arguments, run_predict
from .rank import add_rank_parser, run_rank
from ..common.json_output import json_text


def _add_common(parser: argparse.ArgumentParser, out_required: bool = True) -> None:
    parser.add_argument("--out", required=out_required, type=Path, help="output folder (written whole or not at all)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--progress", choices=("json", "text", "none"), default="text", help="progress format (json: one object per line)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="uncertaintyseg", description="Segmentation uncertainty and calibration.")
    commands = parser.add_subparsers(dest="command", required=True)

    _add_common(add_predict_parser(commands), out_required=False)  # predict --list-layers writes nothing
    _add_common(add_insert_dropout_parser(commands))
    _add_common(add_ood_parser(commands))
    _add_common(add_calibrate_parser(commands))
    _add_common(add_compare_parser(commands))
    _add_common(add_rank_parser(commands))

    add_evaluate_parser(commands)

    demo = commands.add_parser("demo", help="run the default model on a test-split hippocampus case")
    demo.add_argument("--model", default="hippocampus", help="bundled model name or path (default: hippocampus)")
    demo.add_argument("--case", help="case id from the test split (default: the split's first case)")
    demo.add_argument("--data-root", type=Path, help="folder holding Task04_Hippocampus/")
    demo.add_argument("--download", action="store_true", help="download MSD Task04 into the user cache if it is not found")
    demo.add_argument("--device", type=device, default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1, mps")
    _add_common(demo)

    train = commands.add_parser("train", help="train a MONAI U-Net with dropout (or a Probabilistic U-Net) on the hippocampus train split")
    train.add_argument("--architecture", choices=("unet", "probabilistic_unet"), default="unet",
                       help="unet (with dropout) or probabilistic_unet (Kohl et al.: prior/posterior nets, trained on its ELBO)")
    train.add_argument("--loss", choices=("ce", "dice", "dice_ce", "elbo"),
                       help="default: dice_ce for unet, elbo (the only one it takes) for probabilistic_unet")
    train.add_argument("--channels", type=parse_channels, default=(16, 32, 64, 128), metavar="C1,C2,...",
                       help="channels per U-Net level (and per prior/posterior encoder level); default: 16,32,64,128")
    train.add_argument("--beta", type=float, default=1.0, help="probabilistic_unet: weight of the KL term in the ELBO (default: 1)")
    train.add_argument("--seed", type=seed, default=0)
    train.add_argument("--epochs", type=at_least(1), default=60)
    train.add_argument("--patience", type=at_least(1), default=15, help="stop after this many epochs without a better validation Dice")
    train.add_argument("--name", default="hippocampus", help="model name written into model.json")
    train.add_argument("--max-cases", type=at_least(1), help="use only the first N cases of the train split (quick experiments)")
    train.add_argument("--members", type=at_least(1), default=1, help="train a deep ensemble of N members seeded seed, seed+1, ...")
    train.add_argument("--min-validation-dice", type=float, default=0.0,
                       help="set aside a run whose best validation Dice stays below this (collapsed) and train the next seed")
    train.add_argument("--workers", type=at_least(1), default=1, help="train this many members at once, in separate processes")
    train.add_argument("--device", type=device, default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1, ...")
    train.add_argument("--data-root", type=Path)
    train.add_argument("--download", action="store_true")
    _add_common(train)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "predict":
        check_predict_arguments(parser, args)
    from ..predict.io import quiet_itk_warnings
    from ..common.progress import Progress

    progress = Progress(args.progress)
    quiet_itk_warnings()
    previous_sigterm = _sigterm_raises()
    try:
        if args.out is not None:  # predict --list-layers has none
            refuse_output_over_inputs(args.out, inputs_read_by(args))  # even with --overwrite: never an input
            require_new_output_folder(args.out, args.overwrite)  # before long work, not only when writing
        {"predict": run_predict, "evaluate": run_evaluate, "demo": run_demo, "train": run_train,
         "insert-dropout": run_insert_dropout, "ood": run_ood, "calibrate": run_calibrate, "compare": run_compare,
         "rank": run_rank}[args.command](args, progress)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:  # Ctrl+C, or SIGTERM (the panel's Cancel): staging folders are gone by now
        how = " (SIGTERM)" if isinstance(interrupt, Terminated) else ""
        print(f"error: interrupted{how}; no output was written.", file=sys.stderr)
        return 1
    except Exception as error:  # a failure, not bad input: say what happened, keep the traceback for the log
        if os.environ.get("UNCERTAINTYSEG_DEBUG"):
            traceback.print_exc()
        print(f"error: uncertaintyseg {args.command} failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    finally:
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)
    progress("done", 1.0)
    return 0


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the run is, so that it unwinds like Ctrl+C: every staging folder is removed."""


def _sigterm_raises():
    """Make SIGTERM raise Terminated (once; a second SIGTERM during the clean-up is ignored); the previous handler."""
    if threading.current_thread() is not threading.main_thread():
        return None  # signal handlers can only be set from the main thread

    def terminate(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated()

    return signal.signal(signal.SIGTERM, terminate)


def inputs_read_by(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """(argument, existing path) for every path the parsed command reads: any path-like or path-naming value
    but --out (lists too; NAME=DIR; bundled model names; a model file's model.json and weights), and the data
    set under --data-root (or the default data root) for commands that read it. A new command gets it for free."""
    from ..data.hippocampus import TASK, data_root_candidates
    from ..predict.model_loading import BUNDLED_MODELS_DIR

    found = []
    for dest, value in vars(args).items():
        if dest in ("out", "command", "progress", "data_root") or isinstance(value, bool):
            continue
        argument = "--" + dest.replace("_", "-")
        for item in _flattened(value):
            if not isinstance(item, (str, os.PathLike)) or not str(item):
                continue
            path = Path(item)
            if not os.path.lexists(path) and isinstance(item, str):
                if "=" in item:  # NAME=DIR (evaluate --pred)
                    path = Path(item.split("=", 1)[1])
                elif dest == "model" and path.name == item:  # a bundled model's name
                    path = BUNDLED_MODELS_DIR / item
            if os.path.lexists(path):
                found.append((argument, path))
                if dest == "model" and path.is_file():
                    found += [(argument, file) for file in _model_files_beside(path)]
    if "data_root" in vars(args):  # the command reads the data set: its folders are inputs, the root itself not
        roots = [folder for folder, _ in data_root_candidates(args.data_root) if (folder / TASK).is_dir()][:1]
        argument = "--data-root" if args.data_root else "the data set (default data root)"
        found += [(argument, root / name) for root in roots for name in (TASK, "ood") if (root / name).exists()]
    return found


def _flattened(value):
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from _flattened(item)
    else:
        yield value


def _model_files_beside(path: Path) -> list[Path]:
    """A model file's spec and the weights it names (read when the model loads)."""
    spec = path if path.suffix == ".json" else path.parent / "model.json"
    try:
        weights = json.loads(spec.read_text()).get("weights", "model.pt")
    except (OSError, ValueError, AttributeError):
        return [spec] if spec.is_file() else []
    names = [weights] if isinstance(weights, str) else [name for name in weights if isinstance(name, str)]
    return [spec] + [spec.parent / name for name in names if (spec.parent / name).exists()]

def run_demo(args, progress) -> None:
    from .demo import run_demo as demo

    summary = demo(args.out, model=args.model, case_id=args.case, data_root=args.data_root, download=args.download,
                   device=args.device, overwrite=args.overwrite, progress=progress)
    if args.progress != "json":
        print(json_text(summary), end="")


def parse_channels(text: str) -> tuple[int, ...]:
    """'8,16,32,64' -> (8, 16, 32, 64): at least two positive levels."""
    try:
        channels = tuple(int(part) for part in text.split(","))
    except ValueError:
        channels = ()
    if len(channels) < 2 or min(channels) < 1:
        raise argparse.ArgumentTypeError(f"'{text}': expected at least two positive integers separated by commas, e.g. 8,16,32,64")
    return channels


def run_train(args, progress) -> None:
    from ..data.hippocampus import resolve_data_root
    from ..training.train import TrainSettings, train

    loss = args.loss or ("elbo" if args.architecture == "probabilistic_unet" else "dice_ce")
    settings = TrainSettings(loss=loss, seed=args.seed, epochs=args.epochs, patience=args.patience, name=args.name,
                             max_cases=args.max_cases, min_validation_dice=args.min_validation_dice, device=args.device,
                             architecture=args.architecture, beta=args.beta, channels=args.channels)
    summary = train(resolve_data_root(args.data_root, args.download), args.out, settings, args.members, args.overwrite,
                    progress, args.workers)
    if args.progress != "json":
        print(json_text(summary, default=list), end="")

