"""Careless or hostile output folders: never over an input, never over a run that finished meanwhile,
nothing left behind on SIGTERM, and a SIGKILLed run's staging folder reclaimed by the next run."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPOSITORY, write_image

from UncertaintySegLib.cli import main
from UncertaintySegLib.common.errors import InputError
from UncertaintySegLib.common.output_folders import atomic_output_folder

# `.<name>.[old.]<pid>@<host>.XXXXXXXX`: the owner of a staging folder can be read from its name.
STAGING = re.compile(r"^\.(?P<name>.+)\.(?:old\.)?(?P<pid>\d+)@(?P<host>[A-Za-z0-9_-]+)\.[a-z0-9_]{8}$")
PREDICTION_FILES = ["entropy.nrrd", "labels.nrrd", "probabilities.nrrd", "run.json", "segments.csv"]


def snapshot(root):
    """Every entry under `root` with the bytes of every file: what "nothing touched" compares."""
    return {str(path.relative_to(root)): (path.read_bytes() if path.is_file() else None) for path in sorted(root.rglob("*"))}


def synthetic_image(path, shape=(16, 16, 16)):
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_image(path, np.random.default_rng(0).normal(100, 20, shape).astype(np.float32))


def predict(image, model, out, *extra):
    return main(["predict", "--image", str(image), "--model", str(model), "--out", str(out), "--progress", "none",
                 "--device", "cpu", *extra])


# --- item 2: --out over an input -----------------------------------------------------------------------
def overlap_cases(root, model):
    """name -> (argv, the argument whose input --out would destroy)."""
    data = root / "d"
    image = synthetic_image(data / "case.nii.gz")
    synthetic_image(data / "other.nii.gz")
    nested = synthetic_image(root / "e" / "sub" / "case.nii.gz")
    (root / "refs1").mkdir()
    (root / "refs2").mkdir()
    (root / "refs2" / "case.nii.gz").write_bytes(image.read_bytes())
    task = root / "data" / "Task04_Hippocampus"
    task.mkdir(parents=True)
    (task / "dataset.json").write_text("{}")
    common = ["--progress", "none", "--overwrite"]
    predict_argv = ["predict", "--model", str(model), "--device", "cpu", *common]
    return {
        "out is the image's folder": (predict_argv + ["--image", str(image), "--out", str(data)], "--image"),
        "out is the image": (predict_argv + ["--image", str(image), "--out", str(image)], "--image"),
        "out contains the image": (predict_argv + ["--image", str(nested), "--out", str(root / "e")], "--image"),
        "out is the model folder": (predict_argv + ["--image", str(image), "--out", str(model)], "--model"),
        "out is the images folder": (["rank", "--model", str(model), "--images", str(data), "--out", str(data),
                                      "--device", "cpu", *common], "--images"),
        "out inside the images folder": (["rank", "--model", str(model), "--images", str(data),
                                          "--out", str(data / "ranked"), "--device", "cpu", *common], "--images"),
        "out is the second --ref": (["evaluate", "--pred", str(data), "--ref", str(root / "refs1"),
                                     "--ref", str(root / "refs2"), "--out", str(root / "refs2"), *common], "--ref"),
        "out is the data set": (["calibrate", "--model", str(model), "--method", "temperature",
                                 "--data-root", str(root / "data"), "--out", str(task), *common], "--data-root"),
    }


CASES = ["out is the image's folder", "out is the image", "out contains the image", "out is the model folder",
         "out is the images folder", "out inside the images folder", "out is the second --ref", "out is the data set"]


@pytest.mark.parametrize("case", CASES)
def test_an_out_over_an_input_is_refused_even_with_overwrite(case, small_model_dir, tmp_path, capsys):
    model = tmp_path / "model"
    model.mkdir()
    for entry in small_model_dir.iterdir():
        (model / entry.name).write_bytes(entry.read_bytes())
    argv, argument = overlap_cases(tmp_path, model)[case]
    before = snapshot(tmp_path)
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and argument in error and "--out" in error and "choose" in error, error
    assert snapshot(tmp_path) == before  # nothing created, nothing deleted


def test_out_dot_with_overwrite_replaces_the_folder_and_leaves_no_old_folder(small_model_dir, tmp_path, monkeypatch):
    image = synthetic_image(tmp_path / "inputs" / "image.nii.gz")
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    (work / "previous.txt").write_text("replaced")
    monkeypatch.chdir(work / "sub")
    assert predict(image, small_model_dir, "..", "--overwrite") == 0  # --out .. from work/sub: work itself
    assert sorted(os.listdir(tmp_path)) == ["inputs", "work"] and sorted(os.listdir(work)) == PREDICTION_FILES
    monkeypatch.chdir(work)
    assert predict(image, small_model_dir, ".", "--overwrite") == 0
    assert sorted(os.listdir(tmp_path)) == ["inputs", "work"] and sorted(os.listdir(work)) == PREDICTION_FILES


@pytest.mark.parametrize("name", [".", "..", ".hidden", "..x"])
def test_dot_names_are_staged_beside_the_folder_not_inside_it(name, tmp_path, monkeypatch):
    inner = tmp_path / "a" / "b"
    inner.mkdir(parents=True)
    monkeypatch.chdir(inner)
    target = (inner / name).resolve()
    target.mkdir(exist_ok=True)
    (target / "previous.txt").write_text("old")
    siblings = sorted(os.listdir(target.parent))
    with atomic_output_folder(name, overwrite=True) as staging:
        assert staging.resolve().parent == target.parent
        (staging / "new.txt").write_text("new")
    assert os.listdir(target) == ["new.txt"] and sorted(os.listdir(target.parent)) == siblings


# --- item 3: a folder that appears meanwhile ----------------------------------------------------------------
def test_a_folder_that_appeared_meanwhile_is_not_replaced(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(InputError, match="appeared .*while this run"):
        with atomic_output_folder(out) as staging:
            (staging / "mine.txt").write_text("mine")
            out.mkdir()  # another run finished first
            (out / "theirs.txt").write_text("theirs")
    assert os.listdir(out) == ["theirs.txt"] and os.listdir(tmp_path) == ["out"]
    with pytest.raises(InputError, match="appeared"):  # even an empty folder: someone claimed the name
        with atomic_output_folder(tmp_path / "empty") as staging:
            (staging / "mine.txt").write_text("mine")
            (tmp_path / "empty").mkdir()
    assert os.listdir(tmp_path / "empty") == []


def test_overlapping_overwrite_runs_leave_one_whole_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "previous.txt").write_text("previous")
    with atomic_output_folder(out, overwrite=True) as first:
        (first / "first.txt").write_text("first")
        with atomic_output_folder(out, overwrite=True) as second:
            (second / "second.txt").write_text("second")
        assert os.listdir(out) == ["second.txt"]
    assert os.listdir(out) == ["first.txt"] and os.listdir(tmp_path) == ["out"]


def staging_folders(parent, name):
    return sorted(entry.name for entry in parent.iterdir() if entry.name.startswith(f".{name}."))


def test_two_cli_runs_to_the_same_out_exactly_one_succeeds(small_model_dir, tmp_path, monkeypatch, capsys):
    from UncertaintySegLib.common.progress import Progress

    image = synthetic_image(tmp_path / "inputs" / "image.nii.gz")
    out = tmp_path / "results" / "out"
    report, codes = Progress.__call__, []

    def meanwhile(self, stage, fraction, **details):  # the first run, past its check that --out is new, is writing
        report(self, stage, fraction, **details)
        if stage == "writing outputs" and not codes:
            codes.append(None)
            codes[0] = predict(image, small_model_dir, out)  # ... while a second run finishes first
            codes.append(snapshot(out))

    monkeypatch.setattr(Progress, "__call__", meanwhile)
    assert predict(image, small_model_dir, out) == 2 and codes[0] == 0
    error = capsys.readouterr().err.strip()
    assert re.fullmatch(rf"error: output folder '{re.escape(str(out))}' appeared while this run was working.*", error), error
    assert snapshot(out) == codes[1] and os.listdir(out.parent) == ["out"]  # the winner's folder, whole; the loser's gone


# --- item 7: real processes, SIGTERM and SIGKILL -----------------------------------------------------------------
def cli_process(image, model, out, log, samples):
    """A real `uncertaintyseg predict` process with JSON progress in `log`.out; slow: MC dropout, many samples."""
    command = [sys.executable, "-m", "UncertaintySegLib.cli", "predict", "--image", str(image), "--model", str(model),
               "--out", str(out), "--method", "mc_dropout", "--insert-dropout", "decoder", "--samples", str(samples),
               "--device", "cpu", "--progress", "json"]
    environment = dict(os.environ, PYTHONPATH=str(REPOSITORY / "UncertaintySeg"))
    stdout, stderr = open(f"{log}.out", "w"), open(f"{log}.err", "w")
    process = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=environment)
    stdout.close()
    stderr.close()
    return process


def wait_for_sampling(process, log, timeout=120):
    """Block until the process reports its second sample (past the start checks, staging folder made)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "(2/" in Path(f"{log}.out").read_text():
            return
        if process.poll() is not None:
            pytest.fail(f"the CLI ended early ({process.returncode}): {Path(f'{log}.err').read_text()}")
        time.sleep(0.01)
    pytest.fail(f"no sampling progress within {timeout} s: {Path(f'{log}.err').read_text()}")


def staging_folders(parent, name):
    return sorted(entry.name for entry in parent.iterdir() if entry.name.startswith(f".{name}."))


def owner(staging):
    match = STAGING.match(staging)
    return int(match["pid"]) if match else None


def test_sigterm_leaves_nothing_and_a_killed_runs_staging_is_reclaimed_by_the_next_run(small_model_dir, tmp_path):
    """Two CLI processes in one folder, started together (each pays torch's import, in parallel): `kill` is
    SIGKILLed and its staging folder is reclaimed by the next run there, which keeps the live one's; `term`
    then gets SIGTERM, what the panel's Cancel sends first, and exits 1 leaving nothing."""
    image = synthetic_image(tmp_path / "inputs" / "image.nii.gz")
    results = tmp_path / "results"
    logs = {name: tmp_path / name for name in ("kill", "term")}
    processes = {name: cli_process(image, small_model_dir, results / name, log, 100_000) for name, log in logs.items()}
    kill, term = processes["kill"], processes["term"]
    try:
        wait_for_sampling(kill, logs["kill"])
        wait_for_sampling(term, logs["term"])
        kill.send_signal(signal.SIGKILL)
        assert kill.wait(10) == -signal.SIGKILL
        staging = {name: staging_folders(results, name) for name in processes}
        assert {name: [owner(folder) for folder in folders] for name, folders in staging.items()} == \
            {name: [process.pid] for name, process in processes.items()}, staging  # each names its owner

        assert predict(image, small_model_dir, results / "next") == 0  # the next run in that folder
        assert staging_folders(results, "kill") == []  # its owner is gone: reclaimed
        assert staging_folders(results, "term") == staging["term"]  # its owner is alive: kept

        term.send_signal(signal.SIGTERM)
        assert term.wait(30) == 1
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    assert Path(f"{logs['term']}.err").read_text().strip() == "error: interrupted (SIGTERM); no output was written."
    assert sorted(os.listdir(results)) == ["next"]
