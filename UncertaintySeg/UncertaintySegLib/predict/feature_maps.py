"""Feature maps for explainability: the outputs of named layers, captured during inference.

    requests = [parse_feature_map("model.0.conv.unit0=max"), parse_feature_map("model.2=0,3")]
    maps = feature_maps(network, spec, image)      # {"model.0.conv.unit0_max": (1, I, J, K), ...}

Layers are a network's `named_modules()` names; `default_layers` picks each encoder block's,
the bottom block's and each decoder block's last convolution unit of a MONAI UNet (the blocks
as `dropout_insertion.unet_blocks` walks them). Forward hooks reduce each requested layer's
output as soon as it appears (channel mean, channel max, or chosen channels), so only
`(B, k, *window)` per request is ever kept, never a layer's full output; the hooks are removed
when capturing ends, also on error.

Alignment with the input grid: the maps are computed inside MONAI's `sliding_window_inference`
with the same normalisation, window (`spec.roi_size`), overlap and Gaussian blending as
`inference.predict_logits`. The predictor returns, besides the logits, each reduced map
resampled trilinearly (`align_corners=False`) to the window's size; sliding-window inference
then pads, blends and crops them back exactly as it does the logits, so each map lies on the
input's voxel grid. Maps come from one deterministic pass of the network (eval mode: dropout
off), whatever the uncertainty method.

TorchScript models cannot be hooked by module name like this: they are refused with a
message saying what to use instead.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from ..common.errors import InputError

REDUCTIONS = ("mean", "max")


@dataclass(frozen=True)
class FeatureMapRequest:
    """One map to capture: a layer's output reduced by 'mean', 'max', or a tuple of channel indices."""

    layer: str
    reduction: str | tuple[int, ...] = "mean"

    @property
    def key(self) -> str:
        """`<layer>_<reduction>`: the map's name and file stem (channels as `c0-3-5`)."""
        if isinstance(self.reduction, str):
            return f"{self.layer}_{self.reduction}"
        return f"{self.layer}_c{'-'.join(str(c) for c in self.reduction)}"


def parse_feature_map(text: str) -> FeatureMapRequest:
    """`LAYER`, `LAYER=mean`, `LAYER=max` or `LAYER=0,3,5` -> a request (mean by default)."""
    layer, _, reduction = text.partition("=")
    layer, reduction = layer.strip(), reduction.strip() or "mean"
    if not layer:
        raise InputError(f"--feature-maps {text!r}: expected LAYER[=mean|max|0,3,5] (list the layers with --list-layers).")
    if reduction in REDUCTIONS:
        return FeatureMapRequest(layer, reduction)
    try:
        channels = tuple(int(c) for c in reduction.split(","))
    except ValueError:
        raise InputError(f"--feature-maps {text!r}: after '=' expected mean, max, or channel indices such as 0,3,5.") from None
    if any(c < 0 for c in channels) or len(set(channels)) != len(channels):
        raise InputError(f"--feature-maps {text!r}: channel indices must be distinct and >= 0.")
    return FeatureMapRequest(layer, channels)


def require_hookable(network) -> None:
    """Refuse TorchScript networks: their submodules run compiled code that Python forward hooks do not see."""
    import torch

    if isinstance(network, torch.jit.ScriptModule):
        raise InputError(
            "feature maps need forward hooks on named layers, which a TorchScript model does not support. "
            "Use the model as a MONAI network + state_dict (model.json with format 'monai_network'), "
            "or export the layers you want as extra outputs of the TorchScript model."
        )


def default_layers(network) -> list[str]:
    """Each encoder block's, the bottom block's and each decoder block's last convolution unit (MONAI UNet), in forward order."""
    from monai.networks.blocks import Convolution

    from .dropout_insertion import unet_blocks

    require_hookable(network)
    try:
        blocks = unet_blocks(network)
    except InputError:
        raise InputError(f"no default feature-map layers for {type(network).__name__} (only a MONAI UNet has them): "
                         "name layers with --feature-maps LAYER; --list-layers prints them.") from None
    names = {module: name for name, module in network.named_modules()}
    layers = []
    for block in [*blocks.encoders, blocks.bottom, *reversed(blocks.decoders)]:
        units = [module for module in block.modules() if isinstance(module, Convolution)]
        layers.append(names[units[-1] if units else block])
    return layers


def list_layers(network, spec) -> list[tuple[str, str, int | None]]:
    """[(name, module class, output channels)] of every named layer, from one forward pass on a zero window.

    Channels are None where a layer's output is not one tensor (or the layer does not run).
    """
    import torch

    require_hookable(network)
    channels: dict[str, int] = {}

    def recorder(name):
        def hook(module, args, output):
            if isinstance(output, torch.Tensor) and output.ndim >= 2:
                channels[name] = int(output.shape[1])
        return hook

    modules = [(name, module) for name, module in network.named_modules() if name]
    handles = [module.register_forward_hook(recorder(name)) for name, module in modules]
    try:
        parameter = next(network.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        with torch.inference_mode():
            network(torch.zeros((1, spec.input_channels, *spec.roi_size), device=device))
    finally:
        for handle in handles:
            handle.remove()
    return [(name, type(module).__name__, channels.get(name)) for name, module in modules]


def reduce_channels(output, reduction):
    """`(B, C, *spatial)` -> `(B, k, *spatial)`: channel mean or max (k = 1), or the chosen channels."""
    if reduction == "mean":
        return output.mean(dim=1, keepdim=True)
    if reduction == "max":
        return output.amax(dim=1, keepdim=True)
    if max(reduction) >= output.shape[1]:
        raise InputError(f"channel {max(reduction)} requested, the layer has {output.shape[1]} channels (0 to {output.shape[1] - 1}).")
    return output[:, list(reduction)]


def check_layers(network, requests) -> dict:
    """Refuse TorchScript and layer names the network lacks; returns {name: module}."""
    require_hookable(network)
    modules = dict(network.named_modules())
    missing = sorted({r.layer for r in requests if r.layer not in modules or not r.layer})
    if missing:
        raise InputError(f"layer(s) {', '.join(missing)} not in the model: list its layers with "
                         "`uncertaintyseg predict --model M --list-layers`.")
    return modules


@contextlib.contextmanager
def capture_layers(network, requests):
    """Hook the requested layers; yield a dict {request.key: reduced output `(B, k, *spatial)` of the latest forward}.

    Only the reduced outputs of the requested layers are stored, each replaced by the next
    forward's; every hook is removed when the block ends, also on error.
    """
    import torch

    modules = check_layers(network, requests)
    captured: dict = {}
    by_layer: dict[str, list[FeatureMapRequest]] = {}
    for request in requests:
        by_layer.setdefault(request.layer, []).append(request)

    def hook_for(layer_requests):
        def hook(module, args, output):
            if not isinstance(output, torch.Tensor):
                raise InputError(f"layer '{layer_requests[0].layer}' returns {type(output).__name__}, not a tensor: choose another layer.")
            for request in layer_requests:
                captured[request.key] = reduce_channels(output.detach(), request.reduction).float()
        return hook

    handles = [modules[layer].register_forward_hook(hook_for(group)) for layer, group in by_layer.items()]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def feature_maps(network, spec, image: np.ndarray, requests, device: str = "auto", overlap: float = 0.25,
                 sw_batch_size: int = 1) -> dict[str, np.ndarray]:
    """`(C_in, I, J, K)` voxels -> {request.key: float32 `(k, I, J, K)`} on the input's grid (see the module docstring)."""
    import torch
    from monai.inferers import sliding_window_inference

    from .inference import normalize_intensity, resolve_device

    requests = list(dict.fromkeys(requests))
    if not requests:
        return {}
    target = resolve_device(device)
    network = network.to(target).eval()
    tensor = normalize_intensity(torch.as_tensor(image, dtype=torch.float32), spec.normalization)
    keys = [request.key for request in requests]
    with capture_layers(network, requests) as captured:
        def predictor(window):
            captured.clear()
            logits = network(window)
            size = tuple(window.shape[2:])
            absent = [key for key in keys if key not in captured]
            if absent:
                raise InputError(f"feature map(s) {', '.join(absent)}: the layer did not run in the model's forward; choose another layer.")
            mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(size)]
            maps = [torch.nn.functional.interpolate(captured[key], size=size, mode=mode, align_corners=False)
                    if tuple(captured[key].shape[2:]) != size else captured[key] for key in keys]
            captured.clear()
            return (logits, *maps)

        with torch.inference_mode():
            outputs = sliding_window_inference(tensor.unsqueeze(0).to(target), roi_size=spec.roi_size,
                                               sw_batch_size=sw_batch_size, predictor=predictor, overlap=overlap, mode="gaussian")
    return {key: output[0].float().cpu().numpy() for key, output in zip(keys, outputs[1:])}
