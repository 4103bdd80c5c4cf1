"""The background runner against the real CLI: progress, success, cancel within 2 s, the CLI's error message, no deadlock."""

import json
import re
import signal
import sys
import time
from pathlib import Path

import pytest

from UncertaintySegLib.cli import build_parser
from UncertaintySegSlicer.panel.process import (CANCELLED, FAILED, MODULE_FOLDER, RUNNING, SUCCEEDED, BackgroundProcess,
                                          CliProcess, cliEnvironment, predictArguments, pythonExecutable)

PREDICTION_FILES = {"probabilities.nrrd", "entropy.nrrd", "labels.nrrd", "segments.csv", "run.json"}


def leftovers(folder, name="out"):
    """The output folder and any staging folder `.<name>.*` beside it."""
    return sorted(entry.name for entry in folder.iterdir() if entry.name == name or entry.name.startswith(f".{name}."))


def poll_until(process, predicate, timeout):
    """Poll like the Widget's timer until an event satisfies `predicate`; (events so far, slowest poll in s)."""
    events, slowest, deadline = [], 0.0, time.monotonic() + timeout
    while time.monotonic() < deadline:
        started = time.perf_counter()
        new, state = process.poll()
        slowest = max(slowest, time.perf_counter() - started)
        events += new
        if any(predicate(event) for event in new) or state != RUNNING:
            return events, slowest
        time.sleep(0.02)
    process.cancel()
    pytest.fail(f"no expected progress event within {timeout} s; events: {events}\n{process.log}")


def live_members(group):
    """Processes of process group `group` that are not zombies (an orphan killed a moment ago waits for init to reap it)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # ended while listing
            continue
        state, _, pgrp = text[text.rindex(")") + 2:].split()[:3]
        if int(pgrp) == group and state not in ("Z", "X"):
            members.append(int(stat.parent.name))
    return members


def test_predict_runs_in_the_background_with_rising_progress_and_a_complete_output(test_case, tmp_path):
    image, _ = test_case
    out = tmp_path / "out"
    process = CliProcess("predict", predictArguments(image, out, model="hippocampus", device="cpu"),
                         logPath=tmp_path / "logs" / "predict.log").start()
    assert process.state == RUNNING
    events, slowest = poll_until(process, lambda event: event["stage"] == "done", timeout=120)
    assert process.wait(10) == SUCCEEDED and process.returnCode == 0 and process.errorMessage == ""
    events += process.poll()[0]
    fractions = [event["fraction"] for event in events]
    assert len(events) >= 4 and fractions == sorted(fractions) and fractions[0] < 0.1 and fractions[-1] == 1.0
    assert {"reading image", "loading model", "done"} <= {event["stage"] for event in events}
    assert slowest < 0.2, f"poll() took {slowest:.3f} s: it must never block"
    assert PREDICTION_FILES <= {path.name for path in out.iterdir()}
    assert json.loads((out / "run.json").read_text())["model"]["name"] == "hippocampus"
    assert leftovers(tmp_path) == ["out"]
    assert process.log.count('"stage"') == len(events)
    assert (tmp_path / "logs" / "predict.log").read_text() == process.log
    elapsed = process.elapsedSeconds
    time.sleep(0.05)
    assert 0 < elapsed == process.elapsedSeconds  # the clock stopped when the run ended


def test_cancel_kills_the_cli_within_two_seconds_and_leaves_no_output(test_case, tmp_path):
    image, _ = test_case
    arguments = predictArguments(image, tmp_path / "out", model="hippocampus", method="mc_dropout", samples=200, device="cpu")
    process = CliProcess("predict", arguments).start()
    poll_until(process, lambda event: event["stage"].startswith("MC dropout sample"), timeout=120)
    staging = leftovers(tmp_path)
    assert len(staging) == 1 and re.fullmatch(rf"\.out\.{process.pid}@[\w-]+\.\w{{8}}", staging[0]), staging  # mid-run
    started = time.perf_counter()
    assert process.cancel() == CANCELLED
    latency = time.perf_counter() - started
    print(f"cancel latency during MC dropout: {latency:.3f} s")
    assert latency < 2.0
    assert live_members(process.pid) == []
    assert leftovers(tmp_path) == []
    assert process.poll() == ([], CANCELLED) and process.errorMessage == ""
    # the CLI removes its staging folder on SIGTERM; if SIGKILL came first, cancel removes it
    assert "interrupted (SIGTERM)" in process.log or f"removed {tmp_path / staging[0]}" in process.log


def test_cancel_during_an_overwrite_run_keeps_the_previous_output(test_case, tmp_path):
    image, _ = test_case
    out = tmp_path / "out"
    out.mkdir()
    (out / "previous.txt").write_text("kept")
    process = CliProcess("predict", predictArguments(image, out, model="hippocampus", overwrite=True)).start()
    poll_until(process, lambda event: event["stage"] == "loading model", timeout=60)
    assert len(leftovers(tmp_path)) == 2  # out and its staging folder
    assert process.cancel() == CANCELLED
    assert (out / "previous.txt").read_text() == "kept" and leftovers(tmp_path) == ["out"]


@pytest.mark.parametrize("case", ["existing output", "missing image", "bad option"])
def test_a_failing_run_surfaces_the_cli_message_not_a_traceback(case, tmp_path):
    out = tmp_path / "out"
    image, model, samples, expected = tmp_path / "image.nii.gz", "hippocampus", None, ""
    if case == "existing output":
        out.mkdir()
        expected = f"output folder '{out}' already exists; choose another folder or pass --overwrite."
    elif case == "missing image":
        expected = f"image not found: '{image}'"
    else:
        samples, expected = "many", "argument --samples: expected an integer of at least 1, found 'many'"
    process = CliProcess("predict", predictArguments(image, out, model=model, samples=samples)).start()
    assert process.wait(30) == FAILED and process.returnCode == 2
    assert process.errorMessage.startswith(expected), process.errorMessage
    assert "Traceback" not in process.errorMessage and "error: " in process.log
    assert leftovers(tmp_path) == (["out"] if case == "existing output" else [])


def test_stderr_flood_does_not_deadlock_and_non_json_lines_stay_in_the_log(tmp_path):
    script = ("import json, sys\n"
              "for i in range(50000): sys.stderr.write('warning: noisy line %d %s\\n' % (i, 'x' * 200))\n"
              "print('plain text, not progress'); print('{not json'); print(json.dumps({'other': 1}))\n"
              "print(json.dumps({'stage': 'end', 'fraction': 1.0}), flush=True)\n")
    process = BackgroundProcess([sys.executable, "-c", script], logPath=tmp_path / "flood.log").start()
    assert process.wait(30) == SUCCEEDED, "the child blocked writing to a full stderr pipe"
    assert process.poll() == ([{"stage": "end", "fraction": 1.0}], SUCCEEDED)
    log = process.log.splitlines()
    assert len(log) == 50004 and "plain text, not progress" in log and "{not json" in log
    assert sum(1 for line in log if line.startswith("warning: noisy line")) == 50000
    assert (tmp_path / "flood.log").read_text() == process.log


def test_cancel_escalates_to_sigkill_and_reaches_grandchildren(tmp_path):
    script = ("import json, signal, subprocess, sys, time\n"
              "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
              "print(json.dumps({'stage': 'started', 'fraction': 0.0, 'grandchild': child.pid}), flush=True)\n"
              "time.sleep(60)\n")
    process = BackgroundProcess([sys.executable, "-c", script]).start()
    events, _ = poll_until(process, lambda event: event["stage"] == "started", timeout=20)
    assert sorted(live_members(process.pid)) == sorted([process.pid, events[-1]["grandchild"]])
    started = time.perf_counter()
    assert process.cancel() == CANCELLED
    assert time.perf_counter() - started < 2.0
    assert process.returnCode == -signal.SIGKILL  # SIGTERM was ignored
    assert live_members(process.pid) == []


def test_a_killed_run_reports_the_signal_and_its_staging_folder_is_removed(tmp_path):
    out = tmp_path / "out"
    foreign = tmp_path / ".out.abcd1234"  # another run's staging folder, there before this one started
    foreign.mkdir()
    staging = tmp_path / ".out.zx9_k2q7"  # named as the CLI's mkdtemp names it
    script = (f"import os, signal\nos.mkdir({str(staging)!r})\n"
              f"open({str(staging / 'half.nrrd')!r}, 'w').write('half-written')\n"
              "os.kill(os.getpid(), signal.SIGKILL)\n")
    process = BackgroundProcess([sys.executable, "-c", script], outputFolder=out).start()
    assert process.wait(20) == FAILED and process.returnCode == -signal.SIGKILL
    assert "killed by SIGKILL" in process.errorMessage
    assert leftovers(tmp_path) == [".out.abcd1234"]


def test_predict_arguments_are_what_the_cli_parses(tmp_path, monkeypatch):
    # --device is checked against this machine's devices when parsed: pretend to have two GPUs
    monkeypatch.setattr("UncertaintySegLib.cli.option_types.available_devices", lambda: ["auto", "cpu", "cuda", "cuda:0", "cuda:1"])
    arguments = predictArguments(tmp_path / "case.nii.gz", tmp_path / "out", model=["a/model.json", tmp_path / "b"],
                                 method="ensemble+tta", samples=7, seed=3, ttaAxes=(0, 2), device="cuda:1",
                                 calibrator=tmp_path / "cal", insertDropout="decoder", dropoutP=0.2, saveSamples=True,
                                 normalizeUncertainty=True, flagThreshold=0.3, overwrite=True)
    args = build_parser().parse_args(["predict", *arguments, "--progress", "json"])
    assert args.image == tmp_path / "case.nii.gz" and args.out == tmp_path / "out" and args.overwrite
    assert args.model == ["a/model.json", str(tmp_path / "b")] and args.method == "ensemble+tta"
    assert (args.samples, args.seed, args.tta_axes, args.device) == (7, 3, "0,2", "cuda:1")
    assert args.calibrator == tmp_path / "cal" and args.insert_dropout == "decoder" and args.dropout_p == 0.2
    assert args.save_samples and args.normalize_uncertainty and args.flag_threshold == "0.3"
    defaults = build_parser().parse_args(["predict", *predictArguments("i.nrrd", "o", model="hippocampus")])
    assert (defaults.samples, defaults.seed, defaults.device, defaults.method, defaults.calibrator) == (20, 0, "auto", None, None)
    saved = build_parser().parse_args(["predict", *predictArguments("i.nrrd", "o", probabilities="p.npz", classNames=["bg", "x"])])
    assert saved.probabilities.name == "p.npz" and saved.class_names == "bg,x" and saved.model is None
    with pytest.raises(ValueError, match="exactly one of model"):
        predictArguments("i.nrrd", "o", model="hippocampus", probabilities="p.npz")
    with pytest.raises(ValueError, match="--progress"):
        CliProcess("predict", ["--out", "o", "--progress", "text"])


def test_the_child_imports_the_library_beside_this_module():
    # -S: no site-packages, so the (editable) installed package cannot be what the child finds
    script = "import json, UncertaintySegLib; print(json.dumps({'stage': UncertaintySegLib.__file__, 'fraction': 1.0}))"
    process = BackgroundProcess([pythonExecutable(), "-S", "-c", script], environment=cliEnvironment()).start()
    assert process.wait(20) == SUCCEEDED, process.log
    assert process.events[0]["stage"] == str(MODULE_FOLDER / "UncertaintySegLib" / "__init__.py")
    assert pythonExecutable() == sys.executable  # outside Slicer: this interpreter
