"""Uncertainty-ranked vs random picks for annotation (Czolbe et al.'s active-learning experiment; issue 8).

    .venv/bin/python scripts/active_learning.py [--out build/active_learning] [--sizes 3,6,12,24,48]
        [--seeds 0,1,2,3] [--steps 300] [--score mean_entropy] [--method softmax] [--overwrite]

The pool is the hippocampus `train` split (its labels are hidden until a case is picked), the
curve is measured on the `test` split. `UncertaintySegLib/analysis/active_learning.py` says what a round
does. Writes into --out, whole or not at all: rounds.csv (every training: seed, strategy, pool
size, cases added, their scores, test Dice), learning_curve.csv/.png (mean and spread over seeds),
paired_differences.csv (uncertainty minus random per seed), summary.json (also how many distinct
cases each strategy picked); prints the tables.
The defaults take about 40 minutes on 2 CPU cores.
"""

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "UncertaintySeg"))

from UncertaintySegLib.analysis.active_learning import (STRATEGIES, ExperimentSettings, LabelledCase,  # noqa: E402
                                               learning_curves, paired_differences, pick_overlap, run_experiment)
from UncertaintySegLib.data.hippocampus import load_split, resolve_data_root  # noqa: E402
from UncertaintySegLib.predict.io import read_volume  # noqa: E402
from UncertaintySegLib.common.csv_tables import write_csv  # noqa: E402
from UncertaintySegLib.common.output_folders import atomic_output_folder, require_new_output_folder  # noqa: E402
from UncertaintySegLib.common.plots import pyplot  # noqa: E402


def integers(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def parse_arguments(argv=None) -> argparse.Namespace:
    defaults = ExperimentSettings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/active_learning"))
    parser.add_argument("--data-root", type=Path)
    parser.add_argument("--sizes", type=integers, default=defaults.sizes, help="labelled cases per round, comma-separated")
    parser.add_argument("--seeds", type=integers, default=defaults.seeds)
    parser.add_argument("--steps", type=int, default=defaults.steps, help="optimiser steps per training")
    parser.add_argument("--channels", type=integers, default=defaults.channels)
    parser.add_argument("--score", default=defaults.score, help="mean_entropy, mean_mi or segment_entropy")
    parser.add_argument("--method", default=defaults.method, help="sampling that scores the pool: softmax, mc_dropout, tta")
    parser.add_argument("--samples", type=int, default=defaults.samples)
    parser.add_argument("--max-pool", type=int, help="use the train split's first N cases only (quick runs)")
    parser.add_argument("--max-test", type=int, help="use the test split's first N cases only (quick runs)")
    parser.add_argument("--overwrite", action="store_true")
    return parser.parse_args(argv)


def labelled_cases(root: Path, split: str, limit: int | None) -> list[LabelledCase]:
    return [LabelledCase(case.case_id, read_volume(case.image), read_volume(case.label).array)
            for case in load_split(root, split)[:limit]]


def write_table(path: Path, rows: list[dict]) -> None:
    """`rows` as CSV, list cells joined by spaces."""
    write_csv(path, [{k: " ".join(map(str, v)) if isinstance(v, list) else v for k, v in row.items()} for row in rows], list(rows[0]))


def plot_learning_curves(curves: list[dict], path: Path, title: str) -> None:
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    for strategy, colour in zip(STRATEGIES, ("tab:gray", "tab:red")):
        rows = [row for row in curves if row["strategy"] == strategy]
        labelled = [row["labelled"] for row in rows]
        mean = [row["mean_dice"] for row in rows]
        axis.plot(labelled, mean, "o-", color=colour, label=f"{strategy} (mean of {rows[0]['seeds']} seeds)")
        axis.fill_between(labelled, [row["min_dice"] for row in rows], [row["max_dice"] for row in rows], color=colour, alpha=0.2)
    axis.set_xscale("log", base=2)
    axis.set_xticks(labelled, [str(n) for n in labelled])
    axis.set_xlabel("labelled training cases")
    axis.set_ylabel("mean foreground Dice on test")
    axis.set_title(title, fontsize=9)
    axis.legend(title="shaded: min-max over seeds", fontsize=8, title_fontsize=8)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def format_tables(curves: list[dict], differences: list[dict], overlap: list[dict]) -> str:
    lines = [f"{'labelled':>8}" + "".join(f"{s + ' Dice (sd)':>26}" for s in STRATEGIES)]
    for labelled in sorted({row["labelled"] for row in curves}):
        cells = {row["strategy"]: f"{row['mean_dice']:.4f} ({row['sd_dice']:.4f})" for row in curves if row["labelled"] == labelled}
        lines.append(f"{labelled:>8}" + "".join(f"{cells[s]:>26}" for s in STRATEGIES))
    lines.append(f"\n{'labelled':>10}{'uncertainty - random':>22}{'wins':>6}  per seed")
    for row in differences:
        lines.append(f"{row['labelled']:>10}{row['mean_difference']:>+22.4f}{row['uncertainty_wins']:>3}/{row['seeds']}  "
                     + " ".join(f"{d:+.4f}" for d in row["per_seed"]))
    lines.append("")
    for row in overlap:
        lines.append(f"{row['strategy']}: {row['picks']} picks, {row['distinct']} distinct cases, "
                     f"{row['picked_by_every_seed']} picked by all {row['seeds']} seeds")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_arguments(argv)
    require_new_output_folder(args.out, args.overwrite)  # refuse before an hour of training, not after
    settings = ExperimentSettings(sizes=args.sizes, seeds=args.seeds, steps=args.steps, channels=args.channels,
                                  score=args.score, method=args.method, samples=args.samples)
    root = resolve_data_root(args.data_root)
    pool, test = labelled_cases(root, "train", args.max_pool), labelled_cases(root, "test", args.max_test)
    started = time.perf_counter()
    results = run_experiment(pool, test, settings, progress=lambda message: print(message, flush=True))
    seconds = round(time.perf_counter() - started, 1)
    curves, differences, overlap = learning_curves(results), paired_differences(results), pick_overlap(results)
    with atomic_output_folder(args.out, overwrite=args.overwrite) as staging:
        write_table(staging / "rounds.csv", [{k: v for k, v in asdict(r).items() if k != "test_dice_per_case"} for r in results])
        write_table(staging / "learning_curve.csv", curves)
        write_table(staging / "paired_differences.csv", differences)
        (staging / "summary.json").write_text(json.dumps({
            "settings": asdict(settings), "pool_cases": len(pool), "test_cases": len(test), "seconds": seconds,
            "learning_curve": curves, "paired_differences": differences, "pick_overlap": overlap, "rounds": [asdict(r) for r in results]}, indent=2) + "\n")
        plot_learning_curves(curves, staging / "learning_curve.png",
                             f"{len(pool)}-case pool, {len(test)} test cases, {settings.steps} steps per training\n"
                             f"uncertainty picks by {settings.score} ({settings.method})")
    print(format_tables(curves, differences, overlap))
    print(f"{seconds:.0f} s; written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
