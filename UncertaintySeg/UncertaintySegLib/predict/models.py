"""Model specs (`model.json`) and networks: TorchScript, MONAI network + state_dict, ensembles of them.

A spec says what the network expects and returns, so that inference needs nothing else:

    {"name": "hippocampus", "class_names": ["background", "anterior", "posterior"],
     "input_channels": 1, "spatial_dims": 3, "roi_size": [48, 64, 48],
     "normalization": {"kind": "zscore"}, "output": "logits", "activation": "softmax",
     "format": "monai_network", "network": {"name": "UNet", "args": {...}}, "weights": "model.pt"}

`format` is "monai_network" (MONAI class by name, or this project's "ProbabilisticUNet", + a
state_dict, loaded with `weights_only=True`) or "torchscript" (`weights` is a TorchScript file). `weights` may list
several files: the members of a deep ensemble, whose probabilities `predict` averages.
MONAI bundle folders are read by `bundle.py`; `model_loading.load_model` takes any of them by name or path.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ..common.errors import ModelError

NORMALIZATION_KINDS = ("zscore", "range", "none")
FORMATS = ("monai_network", "torchscript")


@dataclass(frozen=True)
class ModelSpec:
    """What a segmentation network expects and returns."""

    name: str
    class_names: tuple[str, ...]
    input_channels: int = 1
    spatial_dims: int = 3
    roi_size: tuple[int, ...] = (96, 96, 96)
    normalization: dict = field(default_factory=lambda: {"kind": "zscore"})
    output: str = "logits"  # or "probabilities"
    activation: str = "softmax"  # or "sigmoid" (one foreground channel)
    format: str = "monai_network"
    network: dict | None = None  # {"name": MONAI class, "args": {...}} for monai_network
    weights: str | tuple[str, ...] = "model.pt"  # relative to the spec's folder; several: ensemble members
    description: str = ""
    inserted_dropout: dict | None = None  # {"placement": "decoder"|"center", "p": float, "retrained": bool}
    flip_axes: tuple[int, ...] | None = None  # (I, J, K) axes the network was trained flip-invariant on (safe for TTA)
    stochastic: bool = False  # forward is random by design: `--method sample` draws it S times, each seeded

    @property
    def weight_files(self) -> tuple[str, ...]:
        return (self.weights,) if isinstance(self.weights, str) else tuple(self.weights)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def output_channels(self) -> int:
        """Channels the network returns: one per class, or one foreground channel for sigmoid."""
        return 1 if self.activation == "sigmoid" else self.num_classes

    def to_json(self) -> dict:
        return {
            "name": self.name, "description": self.description, "class_names": list(self.class_names),
            "input_channels": self.input_channels, "spatial_dims": self.spatial_dims,
            "roi_size": list(self.roi_size), "normalization": dict(self.normalization),
            "output": self.output, "activation": self.activation, "format": self.format,
            "network": self.network, "weights": self.weights if isinstance(self.weights, str) else list(self.weights),
            **({"inserted_dropout": dict(self.inserted_dropout)} if self.inserted_dropout else {}),
            **({"flip_axes": list(self.flip_axes)} if self.flip_axes is not None else {}),
            **({"stochastic": True} if self.stochastic else {}),
        }


def spec_from_json(data: dict, source: str = "model.json") -> ModelSpec:
    """Validate a parsed `model.json` against `schemas.ModelSpecSchema` (strict: "1" is not an int, "abc" is not a
    list of names); ModelError with one line per bad field, '<source>: <field>: expected ..., found ...'."""
    from .schemas import ModelSpecSchema, validate

    checked = validate(ModelSpecSchema, data, source, ModelError)
    return ModelSpec(
        name=checked.name, description=checked.description, class_names=tuple(checked.class_names),
        input_channels=checked.input_channels, spatial_dims=checked.spatial_dims, roi_size=tuple(checked.roi_size),
        normalization=checked.normalization.to_dict(), output=checked.output, activation=checked.activation,
        format=checked.format, network=None if checked.network is None else checked.network.model_dump(),
        weights=checked.weights if isinstance(checked.weights, str) else tuple(checked.weights),
        inserted_dropout=None if checked.inserted_dropout is None else checked.inserted_dropout.model_dump(),
        flip_axes=None if checked.flip_axes is None else tuple(checked.flip_axes), stochastic=checked.stochastic,
    )


def read_spec(path: Path) -> ModelSpec:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelError(f"cannot read model spec '{path}': {error}. Expected a JSON file (see model.json in the README).") from None
    return spec_from_json(data, source=str(path))


@dataclass
class LoadedModel:
    """Networks in eval mode, `(B, input_channels, *spatial) -> (B, output_channels, *spatial)`:
    one, or the members of a deep ensemble."""

    spec: ModelSpec
    networks: list  # torch.nn.Module or torch.jit.ScriptModule
    source: Path

    @property
    def network(self):
        """The first (or only) network."""
        return self.networks[0]


def combine_models(models: list[LoadedModel]) -> LoadedModel:
    """Several loaded models with the same spec (but their weights) -> one ensemble of all their networks."""
    if len(models) == 1:
        return models[0]
    first = models[0].spec.to_json()
    for other in models[1:]:
        theirs = other.spec.to_json()
        different = sorted(k for k in first if k not in ("name", "description", "weights") and first[k] != theirs.get(k))
        if different:
            raise ModelError(f"models '{models[0].source}' and '{other.source}' differ in {different}: ensemble members "
                             "must share classes, input, normalization, output and network; give models trained alike.")
    networks = [network for model in models for network in model.networks]
    return LoadedModel(spec=models[0].spec, networks=networks, source=models[0].source)


def load_network(spec: ModelSpec, spec_path: Path, weights: Path):
    """One network of `spec` with the given weights file, in eval mode."""
    if spec.format == "torchscript":
        network = load_torchscript(weights)
    else:
        network = build_monai_network(spec.network, spec_path)
        if spec.inserted_dropout:
            from .dropout_insertion import insert_dropout

            insert_dropout(network, spec.inserted_dropout["placement"], float(spec.inserted_dropout["p"]))
        load_state_dict_into(network, weights)
    return network.eval()


def load_torchscript(path: Path):
    import torch

    if not Path(path).is_file():
        raise ModelError(f"model weights not found: '{path}'. Check 'weights' in model.json.")
    try:
        with warnings.catch_warnings():  # TorchScript is deprecated in torch 2.13 but is what Slicer users export
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else "unknown reason"
        raise ModelError(f"'{path}' is not a TorchScript model ({first}). Export one with torch.jit.script/trace and save it.") from None


PROJECT_NETWORKS = ("ProbabilisticUNet",)  # this project's networks, looked up before MONAI's (MONAI has none of these names)


def project_network_class(name: str):
    """The class of one of this project's networks (`PROJECT_NETWORKS`), else None."""
    if name == "ProbabilisticUNet":
        from .probabilistic_unet import ProbabilisticUNet

        return ProbabilisticUNet
    return None


def build_monai_network(network: dict, source: Path):
    """Instantiate `<name>(**args)`: one of this project's networks (`PROJECT_NETWORKS`) or `monai.networks.nets.<name>`."""
    from monai.networks import nets

    name, args = network["name"], network.get("args", {})
    cls = project_network_class(name) or getattr(nets, name, None)
    if cls is None:
        raise ModelError(f"{source}: MONAI has no network '{name}'. Use a class name from monai.networks.nets, e.g. 'UNet', "
                         f"or one of this project's: {', '.join(PROJECT_NETWORKS)}.")
    try:
        return cls(**args)
    except (TypeError, ValueError, AssertionError) as error:
        raise ModelError(f"{source}: cannot build {name}(**{args}): {error}") from None


def load_state_dict_into(network, path: Path) -> None:
    """Load weights with `weights_only=True` (never unpickles objects); unwraps {"model": ...} / {"state_dict": ...}."""
    import torch

    if not Path(path).is_file():
        raise ModelError(f"model weights not found: '{path}'. Check 'weights' in model.json.")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError... for foreign files
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(f"'{path}' is not a PyTorch state_dict that loads with weights_only=True ({first}).") from None
    if isinstance(state, dict):
        for key in ("state_dict", "model", "network"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"'{path}' does not hold a state_dict (a mapping of parameter names to tensors).")
    try:
        result = network.load_state_dict(state, strict=False)
    except RuntimeError as error:  # tensor shape mismatch
        first = str(error).strip().splitlines()[-1].strip()
        raise ModelError(f"weights in '{path}' do not fit the network {type(network).__name__}: {first}. Check 'network' in model.json.") from None
    if result.missing_keys or result.unexpected_keys:
        raise ModelError(
            f"weights in '{path}' do not fit the network {type(network).__name__}: "
            f"missing {list(result.missing_keys)[:5]}, unexpected {list(result.unexpected_keys)[:5]}. "
            "Check 'network' in model.json."
        )
