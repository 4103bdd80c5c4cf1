"""Out-of-distribution detection: AUROC by ranks, seeded corruptions, case scores, and `uncertaintyseg ood` on real data."""

import csv
import json

import numpy as np
import pytest

from UncertaintySegLib.cli import main
from UncertaintySegLib.common.errors import InputError
from UncertaintySegLib.analysis.ood import CORRUPTIONS, auroc, auroc_by_group, case_score, corrupt


def test_auroc_perfect_reversed_and_tied():
    labels = [0, 0, 0, 1, 1]
    assert auroc([0.1, 0.2, 0.3, 0.8, 0.9], labels) == 1.0
    assert auroc([0.8, 0.9, 0.7, 0.1, 0.2], labels) == 0.0
    assert auroc([0.5] * 5, labels) == 0.5
    # OOD 0.3 ties one in-distribution 0.3 (half), beats 0.1 and 0.2; OOD 0.05 beats none: (2.5 + 0) / 6
    assert auroc([0.1, 0.2, 0.3, 0.3, 0.05], labels) == pytest.approx(2.5 / 6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_equals_scikit_learn(seed):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 80)
    continuous = rng.normal(size=80) + 0.7 * labels
    tied = np.round(continuous)  # many ties
    for scores in (continuous, tied):
        assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_auroc_refuses_one_kind_only_and_nan():
    with pytest.raises(InputError, match="both kinds"):
        auroc([0.1, 0.2], [0, 0])
    with pytest.raises(InputError, match="NaN"):
        auroc([0.1, np.nan], [0, 1])


def test_auroc_by_group_scores_each_group_against_in_distribution():
    groups = ["id", "id", "id", "a", "a", "b"]
    scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.15]
    rows = auroc_by_group(groups, scores, "id")
    assert [row["group"] for row in rows] == ["a", "b"]
    assert rows[0]["auroc"] == 1.0 and rows[0]["n_ood"] == 2 and rows[0]["n_in_distribution"] == 3
    assert rows[1]["auroc"] == pytest.approx(1 / 3) and rows[1]["n_ood"] == 1


@pytest.fixture
def image():
    """A smooth blob on a gradient, (20, 24, 16) float32, intensities about 100-600."""
    i, j, k = np.meshgrid(*(np.linspace(-1, 1, n) for n in (20, 24, 16)), indexing="ij")
    return (100 + 100 * (i + 1) + 400 * np.exp(-(i**2 + j**2 + k**2) / 0.2)).astype(np.float32)


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_corruption_is_seeded_keeps_shape_and_dtype_and_leaves_the_input(image, kind):
    original = image.copy()
    first, again = corrupt(image, kind, 2, seed=5), corrupt(image, kind, 2, seed=5)
    assert np.array_equal(first, again)
    assert first.shape == image.shape and first.dtype == image.dtype
    assert np.array_equal(image, original)
    assert not np.allclose(first, image)
    if kind in ("noise", "bias"):  # random: another seed, another corruption
        assert not np.array_equal(corrupt(image, kind, 2, seed=6), first)


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_corruption_grows_with_severity(image, kind):
    changes = [float(np.sqrt(np.mean((corrupt(image, kind, s, seed=0).astype(np.float64) - image) ** 2))) for s in (1, 2, 3)]
    assert changes[0] < changes[1] < changes[2], changes


def test_noise_std_is_the_documented_fraction_of_the_image_std(image):
    for severity, fraction in zip((1, 2, 3), (0.25, 0.5, 1.0)):
        noise = corrupt(image, "noise", severity, seed=0).astype(np.float64) - image
        assert noise.std() == pytest.approx(fraction * image.std(), rel=0.05)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float64])
def test_integer_images_stay_integers_within_their_range(image, dtype):
    scaled = (image / image.max() * 250).astype(dtype)
    for kind in CORRUPTIONS:
        corrupted = corrupt(scaled, kind, 3, seed=0)
        assert corrupted.dtype == dtype
        if dtype == np.uint8:
            assert corrupted.min() >= 0 and corrupted.max() <= 255


def test_corruption_refuses_unknown_kind_severity_and_channels(image):
    with pytest.raises(InputError, match="unknown corruption"):
        corrupt(image, "jpeg", 1)
    with pytest.raises(InputError, match="severity"):
        corrupt(image, "noise", 4)
    with pytest.raises(InputError, match="one channel"):
        corrupt(image[np.newaxis], "noise", 1)


def test_case_score_averages_over_the_predicted_foreground():
    labels = np.zeros((2, 2, 2), dtype=np.uint8)
    labels[0, 0, 0], labels[1, 1, 1] = 1, 2
    entropy = np.full((2, 2, 2), 0.1, dtype=np.float32)
    entropy[0, 0, 0], entropy[1, 1, 1] = 0.5, 0.7
    mutual_information = entropy / 10
    score = case_score(labels, entropy, mutual_information)
    assert score.region == "foreground" and score.voxels == 2
    assert score.mean_entropy == pytest.approx(0.6) and score.mean_mutual_information == pytest.approx(0.06)
    assert case_score(labels, entropy).mean_mutual_information is None


def test_case_score_falls_back_to_the_whole_volume_when_nothing_is_predicted():
    entropy = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    score = case_score(np.zeros((2, 2, 2), dtype=np.uint8), entropy)
    assert score.region == "whole volume" and score.voxels == 8 and score.mean_entropy == pytest.approx(3.5)
    with pytest.raises(InputError, match="one \\(I, J, K\\) shape"):
        case_score(np.zeros((2, 2, 3), dtype=np.uint8), entropy)


def test_bad_severities_exit_2(tmp_path, capsys):
    assert main(["ood", "--model", "hippocampus", "--severities", "1,4", "--out", str(tmp_path / "out"), "--progress", "none"]) == 2
    assert "expected comma-separated severities among 1, 2, 3" in capsys.readouterr().err


def test_ood_command_on_real_data(data_root, tmp_path):
    """Two test cases, severity 1, the OOD scans; one OOD file left out to check that it is skipped with a note."""
    root = tmp_path / "data"
    (root / "ood").mkdir(parents=True)
    (root / "Task04_Hippocampus").symlink_to(data_root / "Task04_Hippocampus")
    for name in ("vxm_hippo_left", "spleen_ct"):
        (root / "ood" / f"{name}_image.nii.gz").symlink_to(data_root / "ood" / f"{name}_image.nii.gz")
    out = tmp_path / "out"
    code = main(["ood", "--model", "hippocampus", "--data-root", str(root), "--max-cases", "2", "--severities", "1",
                 "--out", str(out), "--progress", "none"])
    assert code == 0
    assert {p.name for p in out.iterdir()} == {"ood_scores.csv", "ood_auroc.csv", "ood_auroc.json", "ood_histogram.png", "run.json"}

    with open(out / "ood_scores.csv") as handle:
        scores = list(csv.DictReader(handle))
    groups = [row["group"] for row in scores]
    assert groups.count("in-distribution") == 2 and groups.count("noise-1") == 2 and groups.count("contrast-1") == 2
    assert groups[-2:] == ["vxm_hippo", "spleen_ct"] and len(scores) == 2 * 5 + 2
    assert all(float(row["mean_entropy"]) >= 0 and row["mean_mutual_information"] == "" for row in scores)  # softmax: no MI

    with open(out / "ood_auroc.csv") as handle:
        reader = csv.DictReader(handle)
        table = list(reader)
    assert reader.fieldnames == ["group", "kind", "score", "auroc", "n_in_distribution", "n_ood", "mean_in_distribution", "mean_ood"]
    assert [row["group"] for row in table] == ["noise-1", "bias-1", "blur-1", "contrast-1", "vxm_hippo", "spleen_ct"]
    assert {row["score"] for row in table} == {"mean_entropy"}
    assert all(0.0 <= float(row["auroc"]) <= 1.0 and row["n_in_distribution"] == "2" for row in table)
    assert table[-1]["kind"] == "far-OOD" and table[-1]["n_ood"] == "1"

    result = json.loads((out / "ood_auroc.json").read_text())
    assert [row["auroc"] for row in result["rows"]] == pytest.approx([float(row["auroc"]) for row in table], abs=1e-6)
    assert any("vxm_hippo_right" in note for note in result["notes"])
    run = json.loads((out / "run.json").read_text())
    assert run["model"]["name"] == "hippocampus" and run["sampling"]["method"] == "softmax"
    assert run["settings"]["severities"] == [1] and run["timings"]["scans"] == 12
    assert (out / "ood_histogram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
