"""Load a MONAI bundle folder as a `LoadedModel`, keeping the network's raw output.

A bundle (`configs/inference.json`, `configs/metadata.json`, `models/model.pt` or
`models/model.ts`) ends its pipeline with post-processing such as argmax; only its
`network_def` and weights are used here, so per-class probabilities survive. Intensity
normalisation (`ScaleIntensityRanged`, `NormalizeIntensityd`) and the inferer's ROI size
are carried into the spec. Spatial pre-processing (resampling, reorientation) is not
applied: the input must already be on the grid the bundle expects.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import ModelError
from .models import LoadedModel, ModelSpec, load_state_dict_into, load_torchscript


def load_bundle(folder: Path) -> LoadedModel:
    folder = Path(folder)
    config_path = folder / "configs" / "inference.json"
    if not config_path.is_file():
        raise ModelError(f"'{folder}' looks like a MONAI bundle but has no configs/inference.json.")
    parser = _parse_config(folder, config_path)
    metadata = _read_metadata(folder / "configs" / "metadata.json")
    spec = _spec_from_bundle(folder, parser, metadata)
    torchscript, state_dict = folder / "models" / "model.ts", folder / "models" / "model.pt"
    if state_dict.is_file():
        network = _instantiate(parser, "network_def", config_path)
        load_state_dict_into(network, state_dict)
    elif torchscript.is_file():
        network = load_torchscript(torchscript)
    else:
        raise ModelError(f"MONAI bundle '{folder}' has no weights: expected models/model.pt or models/model.ts.")
    return LoadedModel(spec=spec, networks=[network.eval()], source=folder)


def _parse_config(folder: Path, config_path: Path):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    try:
        parser.read_config(str(config_path))
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot read '{config_path}': {error}") from None
    parser["bundle_root"] = str(folder)
    return parser


def _read_metadata(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ModelError(f"cannot read '{path}': {error}") from None


def _instantiate(parser, key: str, source: Path):
    if key not in parser.config:
        raise ModelError(f"'{source}' has no '{key}' entry: cannot build the network.")
    try:
        return parser.get_parsed_content(key)
    except Exception as error:  # MONAI wraps any constructor error in its own types
        raise ModelError(f"cannot build '{key}' from '{source}': {str(error).strip().splitlines()[0]}") from None


def _spec_from_bundle(folder: Path, parser, metadata: dict) -> ModelSpec:
    data_format = metadata.get("network_data_format", {})
    inputs = data_format.get("inputs", {}).get("image", {})
    outputs = data_format.get("outputs", {}).get("pred", {})
    num_outputs = int(outputs.get("num_channels", 2))
    channel_def = outputs.get("channel_def", {})
    activation = "sigmoid" if _uses_sigmoid(parser.config.get("postprocessing")) and num_outputs == 1 else "softmax"
    num_classes = 2 if activation == "sigmoid" else num_outputs
    class_names = tuple(str(channel_def.get(str(c), f"class {c}")) for c in range(num_classes))
    inferer = parser.config.get("inferer", {})
    roi_size = inferer.get("roi_size") if isinstance(inferer, dict) else None
    if not isinstance(roi_size, list) or len(roi_size) != 3:
        roi_size = inputs.get("spatial_shape") or [96, 96, 96]
    return ModelSpec(
        name=metadata.get("name", folder.name),
        description=metadata.get("description", "MONAI bundle"),
        class_names=class_names,
        input_channels=int(inputs.get("num_channels", 1)),
        roi_size=tuple(int(v) for v in roi_size),
        normalization=_normalization(parser.config.get("preprocessing")),
        activation=activation,
        format="monai_bundle",
        weights="models",
    )


def _transforms(section) -> list[dict]:
    if isinstance(section, dict):
        return [t for t in section.get("transforms", []) if isinstance(t, dict)]
    return []


def _normalization(preprocessing) -> dict:
    for transform in _transforms(preprocessing):
        target = str(transform.get("_target_", "")).rsplit(".", 1)[-1]
        if target in ("ScaleIntensityRanged", "ScaleIntensityRange"):
            return {"kind": "range", **{k: transform[k] for k in ("a_min", "a_max", "b_min", "b_max", "clip") if k in transform}}
        if target in ("NormalizeIntensityd", "NormalizeIntensity"):
            return {"kind": "zscore", "nonzero": bool(transform.get("nonzero", False))}
    return {"kind": "none"}


def _uses_sigmoid(postprocessing) -> bool:
    return any(bool(t.get("sigmoid")) for t in _transforms(postprocessing))
