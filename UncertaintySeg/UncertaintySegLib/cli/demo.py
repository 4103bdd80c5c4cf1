"""The demo: the default model on a test-split hippocampus case, outputs + a slice overlay PNG."""

from __future__ import annotations

import time
from pathlib import Path

from ..data.hippocampus import load_split, resolve_data_root
from ..common.errors import InputError
from ..predict.io import read_volume
from ..common.output_folders import atomic_output_folder
from ..evaluation.metrics import dice_per_class
from ..predict.model_loading import load_model
from ..predict.outputs import run_record, write_prediction_files
from ..predict.pipeline import predict_volume
from ..common.progress import Progress
from ..evaluation.reports.overlay import save_overlay_png


def run_demo(out: Path, model: str = "hippocampus", case_id: str | None = None, data_root=None, download: bool = False,
             device: str = "auto", overwrite: bool = False, progress: Progress | None = None) -> dict:
    """Write `predict`'s outputs plus `overlay.png` for one test case; return a summary with Dice per class."""
    started = time.perf_counter()
    progress = progress or Progress("none")
    cases = load_split(resolve_data_root(data_root, download), "test")
    matching = [c for c in cases if case_id in (None, c.case_id)]
    if not matching:
        raise InputError(f"case '{case_id}' is not in the test split; choose one of {', '.join(c.case_id for c in cases[:5])}, ...")
    case = matching[0]
    image, reference = read_volume(case.image), read_volume(case.label)
    loaded = load_model(model)
    prediction = predict_volume(image, loaded, device=device, progress=progress)
    dice = dict(zip(loaded.spec.class_names[1:], dice_per_class(prediction.labels, reference.array, loaded.spec.num_classes)))
    prediction.timings["total_s"] = round(time.perf_counter() - started, 4)
    record = run_record(prediction, {"name": loaded.spec.name, "source": str(loaded.source)}, {"device": device}, str(case.image))
    record["demo"] = {"case": case.case_id, "dice": dice}
    progress("writing outputs", 0.9)
    with atomic_output_folder(out, overwrite=overwrite) as staging:
        write_prediction_files(staging, prediction, record)
        save_overlay_png(staging / "overlay.png", image, prediction, reference)
    return {"case": case.case_id, "model": loaded.spec.name, "dice": dice, "timings": prediction.timings, "out": str(out)}
