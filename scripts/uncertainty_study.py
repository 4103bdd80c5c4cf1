"""Does segment uncertainty predict segment quality on the hippocampus `test` split? (issue: uncertainty estimation)

    .venv/bin/python scripts/uncertainty_study.py [--out build/uncertainty_study] [--max-cases N]

Runs `uncertaintyseg predict` on every test case for several models and methods (in process,
so torch is imported once), then `uncertaintyseg evaluate` over all of them, which writes the
per-segment Dice vs mean-entropy table, the Pearson/Spearman correlations of logit(Dice) with
mean entropy, fitted flag thresholds, TP/FP/FN confidence and reliability diagrams. Prints the
correlations and the time per case of each method.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "UncertaintySeg"))

from UncertaintySegLib.cli.main import main  # noqa: E402
from UncertaintySegLib.data.hippocampus import load_split, resolve_data_root  # noqa: E402

RUNS = {  # name: predict arguments
    "softmax": ["--model", "hippocampus"],
    "mc_dropout": ["--model", "hippocampus", "--method", "mc_dropout", "--samples", "20"],
    "tta": ["--model", "hippocampus", "--method", "tta"],
    "ensemble_dice": ["--model", "hippocampus-dice", "--method", "ensemble"],
    "ensemble_ce": ["--model", "hippocampus-ce", "--method", "ensemble"],
}


def main_study() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("build/uncertainty_study"))
    parser.add_argument("--max-cases", type=int)
    parser.add_argument("--data-root", type=Path)
    args = parser.parse_args()
    root = resolve_data_root(args.data_root)
    cases = load_split(root, "test")[:args.max_cases]
    seconds = {}
    for name, arguments in RUNS.items():
        started = time.perf_counter()
        for case in cases:
            folder = args.out / "predictions" / name / case.case_id
            if not (folder / "run.json").exists():
                code = main(["predict", "--image", str(case.image), *arguments, "--device", "cpu", "--out", str(folder), "--progress", "none"])
                if code:
                    raise SystemExit(f"predict {name} {case.case_id} failed ({code})")
        seconds[name] = round((time.perf_counter() - started) / len(cases), 3)
    evaluation = args.out / "evaluation"
    code = main(["evaluate", *[item for name in RUNS for item in ("--pred", f"{name}={args.out / 'predictions' / name}")],
                 "--ref", str(root / "Task04_Hippocampus" / "labelsTr"), "--roi", "bbox", "--out", str(evaluation),
                 "--overwrite", "--progress", "none"])
    if code:
        raise SystemExit(f"evaluate failed ({code})")
    quality = json.loads((evaluation / "segment_quality.json").read_text())
    print(f"{'method':<15}{'s/case':>8}{'class':>12}{'n':>4}{'pearson r':>11}{'spearman':>10}{'flag thr':>10}{'sens':>6}{'spec':>6}")
    for name, summary in quality["methods"].items():
        for cls, part in summary.items():
            corr, flag = part["correlation"], part["flag"]
            fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
            print(f"{name:<15}{seconds[name]:>8}{cls:>12}{corr['n']:>4}{fmt(corr['pearson_r']):>11}{fmt(corr['spearman_rho']):>10}"
                  f"{fmt(flag['threshold']):>10}{fmt(flag['sensitivity']):>6}{fmt(flag['specificity']):>6}")


if __name__ == "__main__":
    main_study()
