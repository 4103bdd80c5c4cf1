"""Load a MONAI bundle folder as a `LoadedModel`, keeping the network's raw output.

A bundle (`configs/inference.json`, `configs/metadata.json`, `models/model.pt` or
`models/model.ts`) ends its pipeline with post-processing such as argmax; only its
`network_def` and weights are used here, so per-class probabilities survive. Intensity
normalisation (`ScaleIntensityRanged`, `NormalizeIntensityd`) and the inferer's ROI size
are carried into the spec. Spatial pre-processing (resampling, reorientation) is not
applied: the input must already be on the grid the bundle expects.

A bundle's config is code to MONAI (`$` expressions, any `_target_`); by default it is read as
data (`bundle_config.SafeBundleConfig`), and only these paths of `inference.json` are read:

- `network_def` (only with `models/model.pt`): `{"_target_": <class of monai.networks.nets>, literal args}`;
- `inferer::roi_size`;
- `preprocessing::transforms`, each transform's `_target_`, and of the first `ScaleIntensityRange(d)` its
  `a_min`, `a_max`, `b_min`, `b_max`, `clip`, or of the first `NormalizeIntensity(d)` its `nonzero`;
- for a bundle with one output channel only, `postprocessing::transforms` and each one's `sigmoid`.

On these paths `@key` references are followed to literal values; a `$` expression, a `%` macro or another
`_target_` is refused (`ModelError`, exit 2) naming the key. Every other key is neither evaluated nor checked.
`trust_bundle=True` (`--trust-bundle`) reads the same paths through MONAI's own `ConfigParser`, which runs the
bundle's code as MONAI does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from .bundle_config import SafeBundleConfig, TrustedBundleConfig, read_inference_json
from ..common.errors import ModelError
from .models import LoadedModel, ModelSpec, load_state_dict_into, load_torchscript

NORMALIZATION_FIELDS = ("a_min", "a_max", "b_min", "b_max", "clip")


def load_bundle(folder: Path, trust_bundle: bool = False) -> LoadedModel:
    folder = Path(folder)
    config_path = folder / "configs" / "inference.json"
    if not config_path.is_file():
        raise ModelError(f"'{folder}' looks like a MONAI bundle but has no configs/inference.json.")
    config = _trusted_config(folder, config_path) if trust_bundle else _safe_config(folder, config_path)
    metadata = _read_metadata(folder / "configs" / "metadata.json")
    spec = _spec_from_bundle(folder, config, metadata)
    torchscript, state_dict = folder / "models" / "model.ts", folder / "models" / "model.pt"
    if state_dict.is_file():
        network = config.network("network_def")
        load_state_dict_into(network, state_dict)
    elif torchscript.is_file():
        network = load_torchscript(torchscript)
    else:
        raise ModelError(f"MONAI bundle '{folder}' has no weights: expected models/model.pt or models/model.ts.")
    return LoadedModel(spec=spec, networks=[network.eval()], source=folder)


def _safe_config(folder: Path, config_path: Path) -> SafeBundleConfig:
    config = read_inference_json(config_path)
    config["bundle_root"] = str(folder)  # as `_trusted_config` sets it for MONAI
    return SafeBundleConfig(config, config_path)


def _trusted_config(folder: Path, config_path: Path) -> TrustedBundleConfig:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    try:
        parser.read_config(str(config_path))
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot read '{config_path}': {error}") from None
    parser["bundle_root"] = str(folder)
    return TrustedBundleConfig(parser, config_path)


def _read_metadata(path: Path) -> dict:
    """configs/metadata.json, checked against `schemas.BundleMetadataSchema` (one line per bad field)."""
    from .schemas import BundleMetadataSchema, validate

    if not path.is_file():
        return {}
    try:
        metadata = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ModelError(f"cannot read '{path}': {error}") from None
    validate(BundleMetadataSchema, metadata, str(path), ModelError)
    return metadata


def _spec_from_bundle(folder: Path, config: SafeBundleConfig, metadata: dict) -> ModelSpec:
    data_format = metadata.get("network_data_format", {})
    inputs = data_format.get("inputs", {}).get("image", {})
    outputs = data_format.get("outputs", {}).get("pred", {})
    num_outputs = int(outputs.get("num_channels", 2))
    channel_def = outputs.get("channel_def", {})
    activation = "sigmoid" if num_outputs == 1 and _uses_sigmoid(config) else "softmax"  # postprocessing read only then
    num_classes = 2 if activation == "sigmoid" else num_outputs
    class_names = tuple(str(channel_def.get(str(c), f"class {c}")) for c in range(num_classes))
    roi_size = config.literal("inferer", "roi_size") if isinstance(config.get("inferer"), dict) else None
    if not isinstance(roi_size, list) or len(roi_size) != 3:
        roi_size = inputs.get("spatial_shape") or [96, 96, 96]
    return ModelSpec(
        name=metadata.get("name", folder.name),
        description=metadata.get("description", "MONAI bundle"),
        class_names=class_names,
        input_channels=int(inputs.get("num_channels", 1)),
        roi_size=tuple(int(v) for v in roi_size),
        normalization=_normalization(config),
        activation=activation,
        format="monai_bundle",
        weights="models",
    )


def _transforms(config: SafeBundleConfig, section: str) -> Iterator[tuple[tuple, dict]]:
    """(keys, transform) of each dict in `<section>::transforms`, read one by one (the caller may stop early)."""
    if not isinstance(config.get(section), dict):
        return
    transforms = config.get(section, "transforms", default=[])
    if not isinstance(transforms, list):
        return
    for index in range(len(transforms)):
        transform = config.get(section, "transforms", index)
        if isinstance(transform, dict):
            yield (section, "transforms", index), transform


def _normalization(config: SafeBundleConfig) -> dict:
    for keys, transform in _transforms(config, "preprocessing"):
        target = str(config.literal(*keys, "_target_", default="")).rsplit(".", 1)[-1]
        if target in ("ScaleIntensityRanged", "ScaleIntensityRange"):
            return {"kind": "range", **{k: config.literal(*keys, k) for k in NORMALIZATION_FIELDS if k in transform}}
        if target in ("NormalizeIntensityd", "NormalizeIntensity"):
            return {"kind": "zscore", "nonzero": bool(config.literal(*keys, "nonzero", default=False))}
    return {"kind": "none"}


def _uses_sigmoid(config: SafeBundleConfig) -> bool:
    return any(bool(config.literal(*keys, "sigmoid", default=False)) for keys, _ in _transforms(config, "postprocessing"))
