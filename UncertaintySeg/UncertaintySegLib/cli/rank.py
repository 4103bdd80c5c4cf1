"""`uncertaintyseg rank`: order unlabelled images by uncertainty, to suggest what to annotate next.

    uncertaintyseg rank --model hippocampus --images unlabelled/ --out ranking
    uncertaintyseg rank --model hippocampus-dice --method ensemble --score mean_mi --images unlabelled/ --out ranking

Every volume file in `--images` (.nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd; the case is the file name
without its extension) is run through the model, one at a time, and scored as `ranking.py` says.
Writes, whole or not at all, `ranking.csv` (rank, case, score, every score, predicted foreground
volume, region) and `ranking.json` (the same rows with the model, sampling and settings).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..common.csv_tables import write_csv
from ..common.errors import InputError
from .option_types import device
from ..analysis.ranking import RANK_SCORES, CaseUncertainty
from .predict import add_sampling_arguments, add_trust_bundle_argument, sampling_plan
from ..common.json_output import write_json

RANKING_COLUMNS = ("rank", "case", "score", *CaseUncertainty.__dataclass_fields__)


def add_rank_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("rank", help="order unlabelled images by uncertainty, most uncertain first "
                                                "(which cases to annotate next)")
    parser.add_argument("--model", nargs="+", required=True, help="bundled model name, model folder or model.json, MONAI "
                                                                  "bundle folder, or TorchScript file; several: one ensemble")
    add_trust_bundle_argument(parser)
    parser.add_argument("--images", type=Path, required=True, help="folder of unlabelled volumes (NIfTI, NRRD, MetaImage)")
    parser.add_argument("--score", choices=RANK_SCORES, default="mean_entropy",
                        help="mean_entropy / mean_mi: mean over the predicted foreground; segment_entropy: the highest "
                             "per-class mean entropy (default: mean_entropy; mean_mi needs several samples)")
    add_sampling_arguments(parser)
    parser.add_argument("--device", type=device, default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1, ...")
    return parser


def image_files(folder: Path) -> dict[str, Path]:
    """Case name -> volume file of every volume file in `folder` (sorted by name); refuses two files of one case."""
    from ..evaluation.prediction_sets import VOLUME_SUFFIXES, case_id_of
    from ..predict.io import READABLE

    if not folder.is_dir():
        raise InputError(f"--images '{folder}' is not a folder: expected a folder of {READABLE.split(', or')[0]} files.")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith(".") or not path.name.endswith(VOLUME_SUFFIXES):
            continue
        case = case_id_of(path)
        if case in found:
            raise InputError(f"two files for case '{case}' in '{folder}': {found[case].name} and {path.name}; keep one.")
        found[case] = path
    if not found:
        raise InputError(f"no volumes in --images folder '{folder}': expected files ending in {', '.join(VOLUME_SUFFIXES)}.")
    return found


def check_readable(files: dict[str, Path]) -> None:
    """Read every file's header before any inference, so a bad file fails the run at once, naming it."""
    import SimpleITK as sitk

    for case, path in files.items():
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            raise InputError(f"cannot read '{path}' (case '{case}') as an image: fix or remove it, then run again.") from None


def run_rank(args, progress) -> None:
    from ..predict.io import read_volume
    from ..common.output_folders import atomic_output_folder
    from ..predict.models import combine_models
    from ..predict.model_loading import load_model
    from ..predict.outputs import versions
    from ..analysis.ranking import rank_volumes

    started = time.perf_counter()
    files = image_files(args.images)
    check_readable(files)
    progress("loading model", 0.0)
    model = combine_models([load_model(path, trust_bundle=args.trust_bundle) for path in args.model])
    plan = sampling_plan(args, len(model.networks))
    ranked = rank_volumes([(case, lambda path=path: read_volume(path)) for case, path in files.items()], model, plan,
                          args.score, args.device, progress)
    rows = [case.to_row() for case in ranked]
    progress("writing outputs", 0.95)
    record = {
        "score": args.score, "order": "most uncertain first; equal scores by case name",
        "score_region": "predicted foreground (classes > 0); the whole volume where none was predicted (region column)",
        "units": "nats; foreground_ml in millilitres",
        "model": {"name": model.spec.name, "source": str(model.source), "members": len(model.networks)},
        "sampling": plan.to_json(),
        "settings": {"images": str(args.images), "device": args.device},
        "files": {case: path.name for case, path in files.items()},
        "timings": {"total_s": round(time.perf_counter() - started, 3)},
        "rows": rows, "versions": versions(),
    }
    with atomic_output_folder(args.out, overwrite=args.overwrite) as staging:
        write_ranking_csv(staging / "ranking.csv", rows)
        write_json(staging / "ranking.json", record)
    if args.progress != "json":
        print(format_ranking(rows, args.score))


def write_ranking_csv(path: Path, rows: list[dict]) -> None:
    write_csv(path, rows, RANKING_COLUMNS, float_format=repr)


def format_ranking(rows: list[dict], score: str) -> str:
    lines = [f"{'rank':>4} {'case':<28} {score:>16} {'foreground ml':>13}"]
    lines += [f"{row['rank']:4d} {row['case']:<28} {row['score']:16.5f} {row['foreground_ml']:13.3f}" for row in rows]
    return "\n".join(lines)
