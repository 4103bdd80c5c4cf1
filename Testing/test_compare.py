"""`uncertaintyseg compare`: methods parsed and checked, ensemble-size curve exact, table flags, the whole run on real data."""

import json
from itertools import combinations

import numpy as np
import pytest
import torch

from UncertaintySegLib.evaluation.case_evaluation import evaluate_case
from UncertaintySegLib.cli import main
from UncertaintySegLib.analysis.comparison_methods import parse_methods
from UncertaintySegLib.evaluation.comparison_tables import markdown_tables, table_rows
from UncertaintySegLib.evaluation.ensemble_size import case_subset_scores, pool_cases
from UncertaintySegLib.common.errors import InputError
from UncertaintySegLib.evaluation.metrics import negative_log_likelihood

CLASSES = ["background", "anterior", "posterior"]


def test_methods_keep_their_order_once_and_unknown_ones_are_refused():
    assert parse_methods("ensemble, base,temperature,base") == ["ensemble", "base", "temperature"]
    with pytest.raises(InputError, match="'tempreature'.*expected a comma-separated list"):
        parse_methods("base,tempreature")
    with pytest.raises(InputError, match="empty list"):
        parse_methods(" , ")


def random_probabilities(rng, shape, classes=3):
    logits = rng.normal(size=(classes, *shape)) * 3
    return torch.softmax(torch.from_numpy(logits), 0).numpy().astype(np.float32)


def test_ensemble_size_averages_every_subset_of_members():
    rng = np.random.default_rng(0)
    members = [random_probabilities(rng, (6, 5, 4)) for _ in range(3)]
    reference = rng.integers(0, 3, size=(6, 5, 4))
    region = np.zeros((6, 5, 4), bool)
    region[1:5, 1:4] = True
    scores = case_subset_scores(members, reference, region)
    assert [scores[m]["subsets"] for m in (1, 2, 3)] == [3, 3, 1]
    pairs = [negative_log_likelihood(np.mean([members[i], members[j]], axis=0), reference, region)[0]
             for i, j in combinations(range(3), 2)]
    assert scores[2]["nll"] == pytest.approx(np.mean(pairs), rel=1e-5)
    assert scores[1]["nll"] == pytest.approx(np.mean([negative_log_likelihood(m, reference, region)[0] for m in members]), rel=1e-5)
    assert scores[3]["voxels"] == region.sum()
    pooled = pool_cases([scores, case_subset_scores(members[::-1], reference, None)])
    assert [row["members"] for row in pooled] == [1, 2, 3] and all(row["cases"] == 2 for row in pooled)


def test_a_clearly_better_method_is_flagged_and_a_clearly_worse_one_is_not():
    rng = np.random.default_rng(1)
    good, poor = [], []
    for case in range(8):
        reference = rng.integers(0, 3, size=(8, 8, 4))
        sharp = np.eye(3, dtype=np.float32)[reference].transpose(3, 0, 1, 2) * 0.9 + 0.1 / 3
        noisy = 0.5 * sharp + 0.5 * random_probabilities(rng, reference.shape)
        for results, probabilities in ((good, sharp), (poor, noisy)):
            results.append(evaluate_case(f"case{case}", probabilities, reference, probabilities.argmax(0), CLASSES,
                                         (1.0, 1.0, 1.0), None, 20))
    rows = {row["method"]: row for row in table_rows({"model": {"good": good, "poor": poor}}, CLASSES)}
    assert rows["good"]["nll_best"] and not rows["poor"]["nll_best"] and rows["poor"]["nll_p_vs_best"] < 0.05
    assert rows["good"]["nll_ci_low"] <= rows["good"]["nll"] <= rows["good"]["nll_ci_high"]
    assert rows["good"]["dice"] == pytest.approx(1.0)
    assert "**1.000**" in markdown_tables(list(rows.values()))


@pytest.fixture(scope="module")
def quick_comparison(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "out"
    assert main(["compare", "--model", "hippocampus-dice", "--methods", "base,temperature,mc_dropout,ensemble",
                 "--data-root", str(data_root), "--max-cases", "3", "--max-fit-cases", "3", "--samples", "2",
                 "--out", str(out), "--progress", "none"]) == 0
    return out


def test_compare_writes_the_table_the_curve_and_each_models_evaluation(quick_comparison):
    out = quick_comparison
    assert {"comparison.md", "comparison.csv", "comparison.json", "ece_vs_dice.png", "ensemble_size.csv",
            "ensemble_size.png", "hippocampus-dice"} <= {p.name for p in out.iterdir()}
    document = json.loads((out / "comparison.json").read_text())
    assert [row["method"] for row in document["table"]] == ["base", "temperature", "mc_dropout", "ensemble"]
    assert all(0.7 < row["dice"] <= 1 and row["nll"] > 0 for row in document["table"])
    assert (out / "hippocampus-dice" / "reliability_temperature_top_label.png").is_file()
    assert "| temperature |" in (out / "comparison.md").read_text()


def test_the_full_ensemble_point_of_the_curve_is_the_ensemble_method(quick_comparison):
    document = json.loads((quick_comparison / "comparison.json").read_text())
    curve = document["ensemble_size"]["hippocampus-dice"]
    assert [(row["members"], row["subsets"]) for row in curve] == [(1, 5), (2, 10), (3, 10), (4, 5), (5, 1)]
    metrics = json.loads((quick_comparison / "hippocampus-dice" / "metrics.json").read_text())
    assert curve[-1]["nll"] == pytest.approx(metrics["methods"]["ensemble"]["pooled"]["nll"], rel=1e-4)


def test_the_saved_calibrator_is_the_one_evaluated(quick_comparison, data_root):
    from UncertaintySegLib.calibration import load_calibrator

    calibrator = load_calibrator(quick_comparison / "hippocampus-dice" / "calibrators" / "temperature")
    logits = torch.randn(3, 4, 4, 4) * 4
    assert torch.equal(calibrator.transform(logits).argmax(0), logits.argmax(0))
    assert "emperature" in calibrator.describe()


def test_bad_requests_are_refused_before_any_work(data_root, tmp_path, capsys):
    common = ["--data-root", str(data_root), "--progress", "none"]
    assert main(["compare", "--model", "hippocampus", "--methods", "base,temperature", "--fit-split", "test",
                 "--out", str(tmp_path / "a"), *common]) == 2
    assert "would be evaluated on the cases they were fitted on" in capsys.readouterr().err
    assert main(["compare", "--model", "hippocampus", "--methods", "base,ensemble", "--max-cases", "1",
                 "--out", str(tmp_path / "b"), *common]) == 2
    assert "'ensemble' needs a model with several members" in capsys.readouterr().err
    assert main(["compare", "--model", "hippocampus", "--methods", "base,sample", "--max-cases", "1",
                 "--out", str(tmp_path / "d"), *common]) == 2
    assert "method 'sample' needs a stochastic model" in capsys.readouterr().err
    assert main(["compare", "--model", "hippocampus", "--methods", "base,tempreature", "--out", str(tmp_path / "c"), *common]) == 2
    assert "'tempreature'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_a_stochastic_models_draws_are_a_method(data_root, tmp_path):
    out = tmp_path / "punet"
    assert main(["compare", "--model", "hippocampus-punet", "--methods", "base,sample", "--samples", "3",
                 "--max-cases", "2", "--data-root", str(data_root), "--out", str(out), "--progress", "none"]) == 0
    rows = {row["method"]: row for row in json.loads((out / "comparison.json").read_text())["table"]}
    assert set(rows) == {"base", "sample"} and rows["sample"]["dice"] > 0.7
    assert rows["sample"]["nll"] == pytest.approx(rows["base"]["nll"], rel=0.05)  # the shipped model's latent collapsed


def test_histogram_binning_takes_its_own_bins_not_the_ece_bins(data_root):
    """`--histogram-bins` sets the calibrator's bins; `--bins` is ECE's (it used to feed both)."""
    from types import SimpleNamespace

    from UncertaintySegLib.analysis.comparison_methods import fit_methods
    from UncertaintySegLib.data.hippocampus import load_split
    from UncertaintySegLib.predict.model_loading import load_model

    settings = SimpleNamespace(roi="bbox", max_voxels_per_case=5000, seed=0, kernel_size=5, epochs=2, bins=20,
                               histogram_bins=7, device="cpu")
    fitted = fit_methods(load_model("hippocampus"), ["histogram"], load_split(data_root, "calibration")[:2], settings,
                         lambda stage, fraction, **details: None)
    assert fitted.calibrators["histogram"].n_bins == 7
