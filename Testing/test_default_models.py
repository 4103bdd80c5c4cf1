"""The shipped models: load through the public loader, list files that exist, segment real cases, fit the size budget."""

import json
from dataclasses import replace

import numpy as np
import pytest

from UncertaintySegLib.predict.io import read_volume
from UncertaintySegLib.evaluation.metrics import dice_per_class
from UncertaintySegLib.predict.model_loading import BUNDLED_MODELS_DIR, bundled_model_names, load_model
from UncertaintySegLib.predict.pipeline import predict_volume

MODELS = bundled_model_names()
FIXED_CASES = ("hippocampus_011", "hippocampus_037", "hippocampus_045")  # from the test split
DICE_FLOOR = 0.82  # mean foreground Dice per case; the shipped members score 0.83-0.92 on these three, 0.86-0.87 on the test split
SIZE_BUDGET_MB = 15


def test_the_default_and_the_two_ensembles_are_shipped():
    assert {"hippocampus", "hippocampus-dice", "hippocampus-ce"} <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_model_json_lists_files_that_exist_and_a_model_card(name):
    folder = BUNDLED_MODELS_DIR / name
    weights = json.loads((folder / "model.json").read_text())["weights"]
    for file in [weights] if isinstance(weights, str) else weights:
        assert (folder / file).is_file(), f"{name}: model.json lists missing {file}"
    assert "CC-BY-SA 4.0" in (folder / "MODEL_CARD.md").read_text()


def test_all_shipped_weights_fit_the_size_budget():
    total = sum(p.stat().st_size for p in BUNDLED_MODELS_DIR.rglob("*.pt"))
    assert total < SIZE_BUDGET_MB * 2**20, f"{total / 2**20:.1f} MB of weights"


@pytest.fixture(scope="module")
def fixed_cases(data_root):
    from UncertaintySegLib.data.hippocampus import TASK

    task = data_root / TASK
    return [(read_volume(task / "imagesTr" / f"{c}.nii.gz"), read_volume(task / "labelsTr" / f"{c}.nii.gz")) for c in FIXED_CASES]


@pytest.mark.parametrize("name", MODELS)
def test_every_member_segments_three_fixed_test_cases(name, fixed_cases):
    model = load_model(name)
    assert model.spec.class_names == ("background", "anterior", "posterior")
    for index, network in enumerate(model.networks):
        member = replace(model, networks=[network])
        for (image, reference), case in zip(fixed_cases, FIXED_CASES):
            dice = np.mean(dice_per_class(predict_volume(image, member, device="cpu").labels, reference.array, 3))
            assert dice > DICE_FLOOR, f"{name} member {index} on {case}: Dice {dice:.3f}"
