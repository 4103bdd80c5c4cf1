"""The MSD Task04 Hippocampus data set: where it lives, the project's fixed split, cases.

Data root, first found: `--data-root`, `$UNCERTAINTYSEG_DATA`, `../shared/data` beside the
repository, then a user cache (`~/.cache/uncertaintyseg`) where MONAI's `DecathlonDataset`
downloads it on request (`download=True`; never in tests). The root holds the Decathlon's
own layout: `Task04_Hippocampus/{dataset.json, imagesTr/, labelsTr/}`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..common.errors import InputError

TASK = "Task04_Hippocampus"
SPLITS = ("train", "calibration", "test")
REPOSITORY_ROOT = Path(__file__).resolve().parents[3]
PACKAGED_SPLITS = Path(__file__).with_name("hippocampus_splits.json")


@dataclass(frozen=True)
class Case:
    case_id: str
    image: Path
    label: Path


def user_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "uncertaintyseg"


def data_root_candidates(data_root: str | os.PathLike | None = None) -> list[tuple[Path, str]]:
    """(folder, where it came from), in the order they are tried."""
    candidates = []
    if data_root:
        candidates.append((Path(data_root), "--data-root"))
    if os.environ.get("UNCERTAINTYSEG_DATA"):
        candidates.append((Path(os.environ["UNCERTAINTYSEG_DATA"]), "$UNCERTAINTYSEG_DATA"))
    candidates.append((REPOSITORY_ROOT.parent / "shared" / "data", "../shared/data beside the repository"))
    candidates.append((user_cache_dir(), "the user cache"))
    return candidates


def resolve_data_root(data_root: str | os.PathLike | None = None, download: bool = False) -> Path:
    """The first folder holding `Task04_Hippocampus/dataset.json`; download to the user cache if asked."""
    candidates = data_root_candidates(data_root)
    explicit = candidates[0] if data_root or os.environ.get("UNCERTAINTYSEG_DATA") else None
    if explicit and not (explicit[0] / TASK / "dataset.json").is_file():
        raise InputError(f"{explicit[1]} '{explicit[0]}' has no {TASK}/dataset.json: expected the Decathlon layout there.")
    for folder, _ in candidates:
        if (folder / TASK / "dataset.json").is_file():
            return folder
    if download:
        return download_hippocampus(user_cache_dir())
    tried = "; ".join(f"{where}: {folder}" for folder, where in candidates)
    raise InputError(
        f"the {TASK} data set was not found (tried {tried}). Set --data-root or UNCERTAINTYSEG_DATA to a folder "
        f"holding {TASK}/, or pass --download to fetch it (about 27 MB) into the user cache."
    )


def download_hippocampus(root: Path) -> Path:
    """Fetch MSD Task04 with MONAI into `root` (network access; never called by tests)."""
    from monai.apps import DecathlonDataset

    root.mkdir(parents=True, exist_ok=True)
    DecathlonDataset(root_dir=str(root), task=TASK, section="training", download=True, cache_rate=0.0, num_workers=0)
    return root


def read_splits(data_root: Path) -> dict[str, list[str]]:
    """The project's fixed split (`splits.json` in the data, else the packaged copy of it)."""
    path = data_root / TASK / "splits.json"
    return json.loads((path if path.is_file() else PACKAGED_SPLITS).read_text())


def load_split(data_root: Path, split: str) -> list[Case]:
    """Cases of one split, in the split file's order; every file must exist."""
    if split not in SPLITS:
        raise InputError(f"unknown split '{split}': expected one of {', '.join(SPLITS)}.")
    task = data_root / TASK
    cases = [
        Case(case_id, task / "imagesTr" / f"{case_id}.nii.gz", task / "labelsTr" / f"{case_id}.nii.gz")
        for case_id in read_splits(data_root)[split]
    ]
    missing = [str(c.image) for c in cases if not c.image.is_file()] + [str(c.label) for c in cases if not c.label.is_file()]
    if missing:
        raise InputError(f"{len(missing)} file(s) of the '{split}' split are missing, e.g. '{missing[0]}'. Re-download the data set.")
    return cases
