"""`uncertaintyseg predict --method ...`: sample maps, segments.csv, saved samples, ensembles of files, bad requests."""

import csv
import json
import math

import numpy as np
import pytest
from conftest import write_image

from UncertaintySegLib.cli import main
from UncertaintySegLib.predict.io import read_volume


@pytest.fixture
def image_path(tmp_path):
    array = np.random.default_rng(0).normal(100, 20, (20, 18, 15)).astype(np.float32)
    return write_image(tmp_path / "image.nii.gz", array, spacing=(0.9, 1.1, 1.7))


def predict(image, models, out, *extra):
    models = models if isinstance(models, list) else [models]
    return main(["predict", "--image", str(image), "--model", *map(str, models), "--out", str(out), "--progress", "none", *extra])


def test_mc_dropout_with_inserted_dropout_writes_every_map(image_path, small_model_dir, tmp_path):
    out = tmp_path / "out"
    assert predict(image_path, small_model_dir, out, "--method", "mc_dropout", "--samples", "3", "--insert-dropout", "decoder",
                   "--dropout-p", "0.3", "--save-samples", "--flag-threshold", "0") == 0
    record = json.loads((out / "run.json").read_text())
    assert record["sampling"] == {"method": "mc_dropout", "samples": 3, "seed": 0, "tta_axes": [0, 1, 2], "samples_drawn": 3}
    assert record["model"]["inserted_dropout"]["retrained"] is False
    assert set(record["outputs"]) == {"probabilities", "entropy", "labels", "expected_entropy", "mutual_information", "variance", "segments"}
    assert {"forward_s", "aggregation_s", "inference_s", "total_s"} <= set(record["timings"])
    probabilities = read_volume(out / "probabilities.nrrd").array
    samples = [read_volume(out / "samples" / f"sample_{i:03d}.nrrd").array for i in range(3)]
    assert np.allclose(np.mean(samples, axis=0), probabilities, atol=1e-5)
    entropy, expected, mi = (read_volume(out / f"{name}.nrrd").array for name in ("entropy", "expected_entropy", "mutual_information"))
    assert np.allclose(mi, np.clip(entropy - expected, 0, None), atol=1e-5) and mi.max() > 0
    variance = read_volume(out / "variance.nrrd")
    assert variance.num_channels == 3 and np.allclose(variance.array, np.var(samples, axis=0), atol=1e-5)
    rows = list(csv.DictReader(open(out / "segments.csv")))
    assert {row["class_name"] for row in rows} == {"a", "b"}
    assert all(row["flagged"] in ("True", "") for row in rows)  # threshold 0 flags every non-empty segment


def test_several_model_files_make_one_ensemble_and_tta_flips(image_path, small_model_dir, tmp_path):
    assert predict(image_path, [small_model_dir, small_model_dir], tmp_path / "ens", "--method", "ensemble+tta", "--tta-axes", "2") == 0
    record = json.loads((tmp_path / "ens" / "run.json").read_text())
    assert record["sampling"]["samples_drawn"] == 2 * 2
    assert predict(image_path, small_model_dir, tmp_path / "one", "--normalize-uncertainty") == 0
    entropy = read_volume(tmp_path / "one" / "entropy.nrrd").array
    assert json.loads((tmp_path / "one" / "run.json").read_text())["entropy_units"] == "fraction of log C"
    assert entropy.max() <= 1.0 + 1e-6 and not (tmp_path / "one" / "mutual_information.nrrd").exists()


@pytest.mark.parametrize("extra, message", [
    (["--method", "mc_dropout"], "needs dropout layers"),
    (["--method", "ensemble"], "several members"),
    (["--method", "magic"], "unknown method"),
    (["--method", "tta", "--tta-axes", "0,x"], "--tta-axes"),
    (["--flag-threshold", "missing.json"], "neither a number nor a thresholds.json"),
])
def test_bad_requests_exit_2_and_write_nothing(image_path, small_model_dir, tmp_path, capsys, extra, message):
    assert predict(image_path, small_model_dir, tmp_path / "out", *extra) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_thresholds_file_must_match_the_entropy_units(image_path, small_model_dir, tmp_path, capsys):
    thresholds = tmp_path / "thresholds.json"
    thresholds.write_text(json.dumps({"thresholds": {"a": 0.2, "b": 0.3}, "entropy_units": "nats"}))
    assert predict(image_path, small_model_dir, tmp_path / "bad", "--flag-threshold", str(thresholds), "--normalize-uncertainty") == 2
    assert "drop --normalize-uncertainty" in capsys.readouterr().err
    assert predict(image_path, small_model_dir, tmp_path / "ok", "--flag-threshold", str(thresholds)) == 0
    rows = {row["class_name"]: row for row in csv.DictReader(open(tmp_path / "ok" / "segments.csv")) if row["component"] == "0"}
    for name, threshold in (("a", 0.2), ("b", 0.3)):
        if rows[name]["voxels"] != "0":
            assert rows[name]["flagged"] == str(float(rows[name]["mean_entropy"]) > threshold)
        else:
            assert math.isnan(float(rows[name]["mean_entropy"]))
