"""One registry per kind of method: a new calibrator is one new file in `calibration/`, a new sampling axis one
entry in `predict/sampling_axes.AXES`, and every list of methods (CLI, compare, the panel, loading) follows.

Each test copies the two packages, adds only that one thing to the copy, and asks the copy, in a fresh
interpreter, for every list derived from the registry.
"""

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

MODULE = Path(__file__).resolve().parents[1] / "UncertaintySeg"
MODEL_FOLDER = MODULE / "Resources" / "Models" / "hippocampus"

NEW_CALIBRATOR = '''
from .scaling import TemperatureScaling


class TemperatureAgain(TemperatureScaling):
    """A second temperature scaling under another name: a stand-in for a new family."""

    method = "temperature_again"
    title = "Temperature again"
    order = 50
    panel_label = "Temperature, again"
'''

NEW_AXIS = '''

def _gains(plan):
    return [1.0, 1.1]


AXES["gain"] = SamplingAxis(
    "gain", INPUTS, "Intensity gain", "intensity gain", describe=lambda gain, plan, count: f"gain {gain}",
    steps=_gains, transform=lambda image, gain: image * gain, undo=lambda logits, gain: logits)
'''


def run_in_copy(tmp_path, add, script) -> str:
    copy = tmp_path / "module"
    for package in ("UncertaintySegLib", "UncertaintySegSlicer"):
        shutil.copytree(MODULE / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    add(copy)
    result = subprocess.run([sys.executable, "-c", f"MODEL_FOLDER = {str(MODEL_FOLDER)!r}\n" + textwrap.dedent(script)], cwd=copy, capture_output=True, text=True,
                            env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_new_calibrator_is_one_new_file(tmp_path):
    def add(copy):
        (copy / "UncertaintySegLib" / "calibration" / "temperature_again.py").write_text(NEW_CALIBRATOR)

    out = run_in_copy(tmp_path, add, """
        import torch
        from UncertaintySegLib.analysis.comparison_methods import METHODS
        from UncertaintySegLib.calibration import calibration_methods, load_calibrator, make_calibrator, model_fingerprint
        from UncertaintySegLib.predict.model_loading import load_model
        from UncertaintySegLib.cli import build_parser
        from UncertaintySegSlicer.panel.panelChoices import CalibrationMethod

        assert "temperature_again" in calibration_methods() and "temperature_again" in METHODS
        assert CalibrationMethod.TEMPERATURE_AGAIN.label() == "Temperature, again"
        assert "temperature_again" in build_parser()._subparsers._group_actions[0].choices["calibrate"].format_help()
        logits, labels = torch.randn(3, 6, 6, 6) * 3, torch.randint(0, 3, (6, 6, 6))
        fitted = make_calibrator("temperature_again").fit(logits, labels, model=model_fingerprint(load_model(MODEL_FOLDER)))
        fitted.save("saved")
        assert type(load_calibrator("saved")).__name__ == "TemperatureAgain"
        print("ok")
    """)
    assert out.strip() == "ok"


def test_a_new_sampling_axis_is_one_entry_in_axes(tmp_path):
    def add(copy):
        path = copy / "UncertaintySegLib" / "predict" / "sampling_axes.py"
        path.write_text(path.read_text() + NEW_AXIS)

    out = run_in_copy(tmp_path, add, """
        import numpy as np
        from UncertaintySegLib.predict.model_loading import load_model
        from UncertaintySegLib.predict.sampling import METHODS, SamplingPlan, parse_method, sample_probabilities
        from UncertaintySegSlicer.panel.panelChoices import UncertaintyMethod

        assert "gain" in METHODS and parse_method("ensemble+gain") == {"ensemble", "gain"}
        assert UncertaintyMethod.GAIN.label() == "Intensity gain" and UncertaintyMethod.ENSEMBLE_GAIN.cliMethod == "ensemble+gain"
        model = load_model(MODEL_FOLDER)
        plan = SamplingPlan(parse_method("gain"))
        labels = []
        image = np.random.default_rng(0).normal(size=(1, 24, 32, 24)).astype(np.float32)
        moments, _ = sample_probabilities(model.networks, model.spec, image, plan, device="cpu",
                                          on_sample=lambda index, label, probabilities: labels.append(label))
        assert plan.count(1) == 2 and moments.count == 2 and labels == ["gain 1.0", "gain 1.1"], labels
        print("ok")
    """)
    assert out.strip() == "ok"


def test_every_roi_choice_comes_from_the_roi_registry():
    from UncertaintySegLib.cli.calibrate import ROI_CHOICES as CALIBRATE_ROIS
    from UncertaintySegLib.cli.compare import ROI_CHOICES as COMPARE_ROIS
    from UncertaintySegLib.evaluation.roi import ROI_KINDS, roi_kinds
    from UncertaintySegSlicer.mrml.calibrationFitting import FIT_ROIS
    from UncertaintySegSlicer.panel.panelChoices import RegionOfInterest

    assert {member.value for member in RegionOfInterest} == set(ROI_KINDS)
    assert set(COMPARE_ROIS) == set(FIT_ROIS) == set(roi_kinds(with_mask=False)) == set(ROI_KINDS) - {"mask"}
    assert set(CALIBRATE_ROIS) == (set(ROI_KINDS) - {"whole"}) | {"none"}
