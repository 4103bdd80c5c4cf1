"""How NLL and Dice change with the number of ensemble members (Mehrtash et al. Fig. 2).

For M = 1 ... K members, every subset of M of the K members is averaged (K choose M subsets) and
scored; a case's value at M is the mean over its subsets. Across cases NLL is voxel-weighted (the
ROI's voxels, as everywhere else in the project) and Dice averaged. Cost per case: 2^K - 1 subset
means of `(C, I, J, K)` arrays (31 for 5 members), each linear in the voxels.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np

from .metrics import dice_per_class, negative_log_likelihood, pooled_mean
from ..common.csv_tables import write_csv
from ..common.plots import pyplot


def case_subset_scores(members: list[np.ndarray], reference: np.ndarray, region: np.ndarray | None) -> dict[int, dict]:
    """M -> {"nll": mean over subsets of the ROI NLL, "dice": mean over subsets of the mean foreground Dice,
    "voxels": ROI voxels, "subsets": number of subsets} for member probabilities `[(C, I, J, K)] * K`."""
    classes = members[0].shape[0]
    scores = {}
    for size in range(1, len(members) + 1):
        nll, dice, voxels = [], [], 0
        for subset in combinations(range(len(members)), size):
            probabilities = np.mean([members[i] for i in subset], axis=0, dtype=np.float32)
            value, voxels = negative_log_likelihood(probabilities, reference, region)
            nll.append(value)
            dice.append(float(np.mean(dice_per_class(probabilities.argmax(0), reference, classes))))
        scores[size] = {"nll": None if voxels == 0 else float(np.mean(nll)), "dice": float(np.mean(dice)),
                        "voxels": voxels, "subsets": len(dice)}
    return scores


def pool_cases(per_case: list[dict[int, dict]]) -> list[dict]:
    """One row per M over every case: voxel-weighted NLL, mean Dice, and the number of subsets and cases."""
    rows = []
    for size in sorted(per_case[0]):
        entries = [case[size] for case in per_case]
        rows.append({"members": size, "subsets": entries[0]["subsets"], "cases": len(entries),
                     "nll": pooled_mean([e["nll"] for e in entries], [e["voxels"] for e in entries]),
                     "dice": float(np.mean([e["dice"] for e in entries]))})
    return rows


def write_ensemble_size(folder: Path, curves: dict[str, list[dict]]) -> None:
    """ensemble_size.csv and ensemble_size.png: NLL and Dice vs members, one line per model."""
    write_csv(folder / "ensemble_size.csv", ({"model": model, **row} for model, rows in curves.items() for row in rows),
              ["model", "members", "subsets", "cases", "nll", "dice"])
    plt = pyplot()

    figure, (nll_axis, dice_axis) = plt.subplots(1, 2, figsize=(9, 3.6))
    for model, rows in curves.items():
        members = [row["members"] for row in rows]
        nll_axis.plot(members, [row["nll"] for row in rows], "o-", label=model)
        dice_axis.plot(members, [row["dice"] for row in rows], "o-", label=model)
    for axis, label in ((nll_axis, "NLL (nats, ROI voxels)"), (dice_axis, "mean foreground Dice")):
        axis.set_xlabel("ensemble members M (mean over all subsets of M)")
        axis.set_ylabel(label)
        axis.set_xticks(range(1, max(len(rows) for rows in curves.values()) + 1))
        axis.grid(alpha=0.3)
    nll_axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(folder / "ensemble_size.png", dpi=100)
    plt.close(figure)
