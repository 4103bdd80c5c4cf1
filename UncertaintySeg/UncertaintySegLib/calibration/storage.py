"""Reading a saved calibrator back: `calibrator.json` (what and for which model) + `calibrator.pt` (tensors).

Tensors are read with `torch.load(..., weights_only=True)`: a calibrator file can hold tensors
and plain containers, never pickled objects, so loading one cannot run code.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..common.errors import InputError
from .fingerprint import model_fingerprint
from .base import FORMAT, FORMAT_VERSION, JSON_FILE, TENSOR_FILE, Calibrator


def read_calibrator_record(path: str | Path) -> tuple[dict, Path]:
    """(parsed calibrator.json, its folder) for a calibrator folder or its calibrator.json."""
    path = Path(path)
    json_path = path / JSON_FILE if path.is_dir() else path
    if not json_path.is_file():
        raise InputError(f"calibrator '{path}' not found: expected a folder written by `uncertaintyseg calibrate` "
                         f"(holding {JSON_FILE}) or that file.")
    try:
        record = json.loads(json_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"cannot read calibrator '{json_path}': {error}.") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise InputError(f"'{json_path}' is not a calibrator file (expected \"format\": \"{FORMAT}\").")
    version = record.get("format_version")
    if type(version) is int and version > FORMAT_VERSION:  # a newer writer: its fields may differ, say so first
        raise InputError(f"'{json_path}' has calibrator format version {version}, this UncertaintySeg reads "
                         f"up to {FORMAT_VERSION}: update UncertaintySeg.")
    if "model" not in record:  # the record that `check_model` compares with the model it is applied to
        raise InputError(f"{json_path}: model: no record of the model it was fitted for (the field is missing), so it cannot "
                         "be checked against the model it is applied to; fit it again for your model: "
                         f"`uncertaintyseg calibrate --model MODEL --method {record.get('method', 'METHOD')} --out FOLDER`.")
    if record.get("method") != "finetune":  # a fine-tuned model folder's marker: `load_calibrator` points to --model
        from ..predict.schemas import CalibratorRecordSchema, validate  # pydantic: not loaded with the Slicer panel

        validate(CalibratorRecordSchema, record, str(json_path), InputError)
    return record, json_path.parent


def load_calibrator(path: str | Path) -> Calibrator:
    """The fitted calibrator saved in folder `path` (or its calibrator.json), ready to `transform`."""
    import torch

    from .methods import logit_calibrators

    calibrators = logit_calibrators()
    record, folder = read_calibrator_record(path)
    method = record.get("method")
    if method == "finetune":
        raise InputError(f"'{folder}' holds a fine-tuned model, not a logits calibrator (fine-tuning changes the "
                         f"network's weights): run it as a model, `uncertaintyseg predict --model {folder} ...`.")
    if method not in calibrators:
        raise InputError(f"{folder / JSON_FILE}: method: expected one of {', '.join(sorted(calibrators))}, found {method!r}.")
    tensor_path = folder / record.get("tensors", TENSOR_FILE)
    try:
        tensors = torch.load(str(tensor_path), map_location="cpu", weights_only=True)
    except Exception as error:  # missing file, foreign or damaged file
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"cannot read the calibrator's tensors '{tensor_path}' with weights_only=True ({first}).") from None
    if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        raise InputError(f"'{tensor_path}' does not hold a dict of tensors.")
    try:
        return calibrators[method].from_json(record, tensors, source=folder / JSON_FILE, tensor_source=tensor_path)
    except (KeyError, TypeError) as error:
        raise InputError(f"calibrator '{folder}' is incomplete or damaged ({type(error).__name__}: {error}); fit it again.") from None


def load_calibrator_for(path: Path, model):
    """The calibrator saved at `path`, refused unless it was fitted for `model` (class names and weights)."""
    calibrator = load_calibrator(path)
    calibrator.check_model(model_fingerprint(model))
    if calibrator.n_classes_ != model.spec.num_classes:
        raise InputError(f"calibrator '{path}' was fitted on {calibrator.n_classes_} classes, model '{model.spec.name}' has "
                         f"{model.spec.num_classes}: fit one for this model with `uncertaintyseg calibrate`.")
    return calibrator
