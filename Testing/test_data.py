"""Where the data come from, and the project's fixed split."""

import json

import pytest

from UncertaintySegLib.data.hippocampus import PACKAGED_SPLITS, TASK, load_split, resolve_data_root
from UncertaintySegLib.common.errors import InputError


def test_packaged_split_is_the_shared_one(data_root):
    assert json.loads(PACKAGED_SPLITS.read_text()) == json.loads((data_root / TASK / "splits.json").read_text())


def test_splits_are_disjoint_and_complete(data_root):
    splits = {name: {c.case_id for c in load_split(data_root, name)} for name in ("train", "calibration", "test")}
    assert [len(s) for s in splits.values()] == [150, 29, 29]
    assert not (splits["train"] & splits["calibration"]) and not (splits["train"] & splits["test"]) and not (splits["calibration"] & splits["test"])


def test_resolution_order(data_root, tmp_path, monkeypatch):
    monkeypatch.delenv("UNCERTAINTYSEG_DATA", raising=False)
    assert resolve_data_root().resolve() == data_root.resolve()  # ../shared/data beside the repository
    monkeypatch.setenv("UNCERTAINTYSEG_DATA", str(data_root))
    assert resolve_data_root() == data_root
    with pytest.raises(InputError, match="--data-root .* has no Task04_Hippocampus"):
        resolve_data_root(tmp_path)
    monkeypatch.setenv("UNCERTAINTYSEG_DATA", str(tmp_path))
    with pytest.raises(InputError, match="UNCERTAINTYSEG_DATA"):
        resolve_data_root()


def test_nothing_found_explains_how_to_get_the_data(tmp_path, monkeypatch):
    import UncertaintySegLib.data.hippocampus as data

    monkeypatch.delenv("UNCERTAINTYSEG_DATA", raising=False)
    monkeypatch.setattr(data, "REPOSITORY_ROOT", tmp_path / "repo")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(InputError, match="--download"):
        resolve_data_root()


def test_unknown_split(data_root):
    with pytest.raises(InputError, match="expected one of train, calibration, test"):
        load_split(data_root, "validation")
