"""The active-learning experiment: settings refused, steps kept fixed, picks (random and most uncertain),
a tiny run on real cases (shared first round, nested pools, reproducible), the summaries, and the script."""

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from UncertaintySegLib.analysis.active_learning import (ExperimentSettings, LabelledCase, RoundResult, check_settings,
                                               learning_curves, paired_differences, pick_most_uncertain, pick_overlap, pick_random,
                                               run_experiment, train_model, train_settings)
from UncertaintySegLib.common.errors import InputError

TINY = ExperimentSettings(sizes=(2, 3, 5), seeds=(0,), steps=2, channels=(4, 8))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))


@pytest.fixture(scope="module")
def cases(data_root):
    """(pool of 6 train cases, 2 test cases), images and labels read once."""
    from UncertaintySegLib.data.hippocampus import load_split
    from UncertaintySegLib.predict.io import read_volume

    def read(split, count):
        return [LabelledCase(c.case_id, read_volume(c.image), read_volume(c.label).array) for c in load_split(data_root, split)[:count]]
    return read("train", 6), read("test", 2)


@pytest.mark.parametrize("changes, message", [
    ({"sizes": (3,)}, "at least two strictly increasing"),
    ({"sizes": (3, 3)}, "at least two strictly increasing"),
    ({"sizes": (1, 4)}, "the first at least 2"),
    ({"sizes": (2, 11)}, "exceeds the 10 cases"),
    ({"seeds": (1, 1)}, "each once"),
    ({"steps": 0}, "at least 1"),
    ({"score": "mean_mi"}, "needs several samples"),
    ({"score": "loudest"}, "unknown ranking score"),
    ({"method": "dropout"}, "unknown method"),
    ({"method": "ensemble"}, "cannot score the pool"),
    ({"method": "sample", "score": "mean_mi"}, "cannot score the pool"),
])
def test_settings_that_cannot_run_are_refused_before_training(changes, message):
    settings = ExperimentSettings(**{**TINY.__dict__, **changes})
    with pytest.raises(InputError, match=message):
        check_settings(settings, pool_size=10, test_size=2)


@pytest.mark.parametrize("method", ["mc_dropout", "tta", "mc_dropout+tta"])
def test_mutual_information_is_accepted_with_several_samples(method):
    check_settings(ExperimentSettings(**{**TINY.__dict__, "score": "mean_mi", "method": method, "samples": 4}), 10, 2)


def test_no_test_cases_are_refused():
    with pytest.raises(InputError, match="at least one labelled test case"):
        check_settings(TINY, 10, 0)


@pytest.mark.parametrize("labelled, steps_per_epoch", [(3, 1), (10, 3), (48, 11)])
def test_every_pool_size_trains_for_the_same_number_of_steps(labelled, steps_per_epoch):
    settings = ExperimentSettings(steps=300, batch_size=4)
    trainer = train_settings(settings, labelled, seed=7)
    assert trainer.epochs == -(-300 // steps_per_epoch)
    assert trainer.patience == trainer.epochs  # no early stopping
    assert (trainer.seed, trainer.channels, trainer.batch_size) == (7, settings.channels, 4)


def test_random_picks_are_distinct_unlabelled_cases_and_reproducible():
    unlabelled = [3, 5, 8, 9, 12, 20]
    picks, scores = pick_random(unlabelled, 4, np.random.default_rng(5))
    assert len(set(picks)) == 4 and set(picks) <= set(unlabelled) and scores == []
    assert pick_random(unlabelled, 4, np.random.default_rng(5))[0] == picks


def test_uncertainty_picks_are_the_cases_the_model_scores_highest(cases):
    from UncertaintySegLib.predict.pipeline import predict_volume
    from UncertaintySegLib.analysis.ranking import case_uncertainty
    from UncertaintySegLib.training.train import NORMALIZATION, prepare_case

    pool, _ = cases
    arrays = [prepare_case(c.image.array, c.label, NORMALIZATION) for c in pool]
    model, summary = train_model(arrays, [0, 1], TINY, seed=0)
    assert summary["training_cases"] == 1 and summary["validation_cases"] == 1
    unlabelled = [2, 3, 4, 5]
    picks, scores = pick_most_uncertain(model, pool, unlabelled, 2, TINY, seed=0)
    expected = {}
    for i in unlabelled:
        prediction = predict_volume(pool[i].image, model, device="cpu")
        expected[i] = case_uncertainty(prediction.labels, prediction.entropy, pool[i].image.geometry.spacing,
                                       prediction.class_names).mean_entropy
    assert picks == sorted(unlabelled, key=lambda i: -expected[i])[:2]
    assert scores == pytest.approx([expected[i] for i in picks])


def test_a_tiny_experiment_shares_its_first_round_grows_nested_pools_and_repeats_exactly(cases):
    pool, test = cases
    results = run_experiment(pool, test, TINY)
    assert [(r.strategy, r.round, r.labelled) for r in results] == [
        ("random", 0, 2), ("random", 1, 3), ("random", 2, 5), ("uncertainty", 0, 2), ("uncertainty", 1, 3), ("uncertainty", 2, 5)]
    first = [r for r in results if r.round == 0]
    assert first[0].test_dice == first[1].test_dice and first[0].added == first[1].added == []
    pool_names = {c.name for c in pool}
    for strategy in ("random", "uncertainty"):
        added = [name for r in results if r.strategy == strategy for name in r.added]
        assert len(added) == 3 and len(set(added)) == 3 and set(added) <= pool_names
    uncertainty = [r for r in results if r.strategy == "uncertainty" and r.round]
    assert all(len(r.added_scores) == len(r.added) and r.added_scores == sorted(r.added_scores, reverse=True) for r in uncertainty)
    for r in results:
        assert len(r.test_dice_per_case) == len(test) and r.test_dice == pytest.approx(np.mean(r.test_dice_per_case))
        assert 0.0 <= r.test_dice <= 1.0
    again = run_experiment(pool, test, TINY)
    assert [(r.added, r.test_dice) for r in again] == [(r.added, r.test_dice) for r in results]


def rounds(dice):
    """RoundResults from {(strategy, seed): [Dice per round]} with pool sizes 2, 4, 8."""
    return [RoundResult(seed, strategy, k, n, [], [], d, [d]) for (strategy, seed), values in dice.items()
            for k, (n, d) in enumerate(zip((2, 4, 8), values))]


def test_curves_and_paired_differences_summarise_the_seeds():
    results = rounds({("random", 0): [0.5, 0.6, 0.7], ("random", 1): [0.4, 0.7, 0.8],
                      ("uncertainty", 0): [0.5, 0.65, 0.6], ("uncertainty", 1): [0.4, 0.8, 0.85]})
    curves = {(row["strategy"], row["labelled"]): row for row in learning_curves(results)}
    assert curves[("random", 4)]["mean_dice"] == pytest.approx(0.65)
    assert curves[("random", 4)]["sd_dice"] == pytest.approx(np.std([0.6, 0.7], ddof=1))
    assert (curves[("uncertainty", 8)]["min_dice"], curves[("uncertainty", 8)]["max_dice"], curves[("uncertainty", 8)]["seeds"]) == (0.6, 0.85, 2)
    differences = {row["labelled"]: row for row in paired_differences(results)}
    assert list(differences) == [4, 8, "all rounds"]
    assert differences[4]["per_seed"] == pytest.approx([0.05, 0.1]) and differences[4]["uncertainty_wins"] == 2
    assert differences[8]["mean_difference"] == pytest.approx((-0.1 + 0.05) / 2) and differences[8]["uncertainty_wins"] == 1
    assert differences["all rounds"]["per_seed"] == pytest.approx([(0.05 - 0.1) / 3, (0.1 + 0.05) / 3])


def test_pick_overlap_counts_distinct_cases_and_those_every_seed_picked():
    def picked(strategy, seed, names):
        return RoundResult(seed, strategy, 1, 4, names, [], 0.5, [0.5])
    results = [picked("random", 0, ["a", "b"]), picked("random", 1, ["c", "d"]), picked("uncertainty", 0, ["a", "b"]),
               picked("uncertainty", 1, ["b", "e"]), RoundResult(1, "uncertainty", 2, 6, ["a"], [], 0.5, [0.5])]
    assert pick_overlap(results) == [
        {"strategy": "random", "picks": 4, "distinct": 4, "picked_by_every_seed": 0, "seeds": 2},
        {"strategy": "uncertainty", "picks": 5, "distinct": 3, "picked_by_every_seed": 2, "seeds": 2}]


def test_the_script_writes_its_tables_and_figure_whole_and_refuses_an_existing_folder(data_root, tmp_path, capsys):
    import active_learning as script

    out = tmp_path / "experiment"
    arguments = ["--out", str(out), "--data-root", str(data_root), "--sizes", "2,3", "--seeds", "0,1", "--steps", "1",
                 "--channels", "4,8", "--max-pool", "4", "--max-test", "1"]
    assert script.main(arguments) == 0
    assert sorted(p.name for p in out.iterdir()) == ["learning_curve.csv", "learning_curve.png", "paired_differences.csv",
                                                     "rounds.csv", "summary.json"]
    with open(out / "rounds.csv") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 2 * 2 * 2 and {row["labelled"] for row in rows} == {"2", "3"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["sizes"] == [2, 3] and summary["pool_cases"] == 4 and summary["test_cases"] == 1
    printed = capsys.readouterr().out
    assert "uncertainty - random" in printed and "distinct cases" in printed
    assert [row["picks"] for row in summary["pick_overlap"]] == [2, 2]
    before = (out / "summary.json").read_text()
    with pytest.raises(InputError, match="already exists"):
        script.main(arguments)
    assert (out / "summary.json").read_text() == before
