"""Last-layer fine-tuning: a new model whose only changed layer is the last, the original untouched; its schedule."""

import json
import shutil

import pytest
import torch

from UncertaintySegLib.calibration import LastLayerFineTuning
from UncertaintySegLib.calibration.finetune import LEARNING_RATE_BY_TRAINING_LOSS, last_learnable_layer, training_loss
from UncertaintySegLib.common.errors import InputError
from UncertaintySegLib.training.layer_retraining import FineTuneSettings, fine_tune
from UncertaintySegLib.predict.model_loading import load_model
from synthetic_cases import blob_cases, digest

CASE_SHAPE = (14, 16, 14)


def test_fine_tuning_writes_a_new_model_and_leaves_the_original_untouched(small_model_dir, tmp_path):
    original = tmp_path / "original"
    shutil.copytree(small_model_dir, original)
    before = digest(original)
    model = load_model(original)
    tuned = LastLayerFineTuning(loss="ce", max_epochs=3).fit(model, blob_cases(4, CASE_SHAPE))
    tuned.save(tmp_path / "tuned")
    assert digest(original) == before  # files untouched
    assert set(digest(tmp_path / "tuned")) == {"model.json", "model.pt", "fine_tuning.json"}
    assert tuned.learning_rate_ == LEARNING_RATE_BY_TRAINING_LOSS["ce"] == 1e-4 and tuned.trained_loss_ == "ce"
    reloaded = load_model(tmp_path / "tuned")
    assert reloaded.spec.name == "small-finetuned" and reloaded.spec.class_names == model.spec.class_names
    layer = tuned.layer_
    assert layer == last_learnable_layer(model.network)[0]
    old, new = model.network.state_dict(), reloaded.network.state_dict()
    assert all(torch.equal(old[name], new[name]) for name in old if not name.startswith(layer + "."))  # frozen
    assert all(torch.equal(a, b) for a, b in zip(old.values(), load_model(original).network.state_dict().values()))  # in memory too
    record = json.loads((tmp_path / "tuned" / "fine_tuning.json").read_text())
    assert record["original_model"]["weights_sha256"] != [] and record["layer"] == layer
    assert tuned.holdout_nll_after_[0] < tuned.holdout_nll_before_[0]  # an epoch was kept: the last layer changed
    assert any(not torch.equal(old[name], new[name]) for name in old if name.startswith(layer + "."))


def test_fine_tuning_learning_rate_follows_the_training_loss(small_model_dir, hippocampus_copy):
    model = load_model(small_model_dir)
    with pytest.raises(InputError, match="--loss ce|dice|dice_ce"):
        training_loss(model)  # the tiny model has no training summary and no 'loss ...' in its description
    assert training_loss(model, "dice") == "dice"
    assert training_loss(load_model(hippocampus_copy)) == "dice_ce"  # from the description `train` writes
    tuned = LastLayerFineTuning(loss="dice", max_epochs=1).fit(model, blob_cases(3, CASE_SHAPE))
    assert tuned.learning_rate_ == 1e-3
    assert LastLayerFineTuning(learning_rate=3e-4, max_epochs=1).fit(model, blob_cases(3, CASE_SHAPE)).learning_rate_ == 3e-4
    with pytest.raises(InputError, match="at least 2 cases"):
        LastLayerFineTuning(loss="ce").fit(model, blob_cases(1, CASE_SHAPE))


def test_plateau_schedule_divides_the_learning_rate_when_the_holdout_nll_stalls(small_model_dir):
    network = load_model(small_model_dir).network
    _, layer = last_learnable_layer(network)
    cases = blob_cases(4, CASE_SHAPE)
    settings = FineTuneSettings(loss="ce", learning_rate=5.0, epochs=6, patience=10, roi_size=(16, 16, 16),
                                patch_size=(16, 16, 16), plateau_factor=0.1, plateau_patience=1)
    _, log = fine_tune(network, list(layer.parameters()), cases[:3], cases[3:], settings)
    rates = [row["learning_rate"] for row in log[1:]]  # rates[k - 1]: the rate epoch k trained with
    nll = [row["holdout_nll"] for row in log]  # nll[k]: after epoch k (nll[0]: before training)
    assert rates[0] == 5.0 and min(rates) < 5.0  # a far too large rate makes the held-out NLL stall, and it drops

    def bad(k):  # epoch k brought no new best (ReduceLROnPlateau's default relative threshold 1e-4)
        return nll[k] > min(nll[:k]) * (1 - 1e-4)

    for k in range(1, len(rates)):  # from epoch k to k + 1 the rate is kept, or divided by 10 after 2 bad epochs in a row
        ratio = rates[k] / rates[k - 1]
        assert ratio == pytest.approx(1.0) or (ratio == pytest.approx(0.1) and k >= 2 and bad(k) and bad(k - 1))
