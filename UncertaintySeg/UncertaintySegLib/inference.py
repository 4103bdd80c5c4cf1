"""Pre-processing from the model spec and sliding-window inference -> per-class logits.

Cost grows linearly with the number of voxels: the sliding window visits each voxel a
bounded number of times and holds one `(C, I, J, K)` float32 output plus a count map.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError
from .io import Volume
from .models import ModelSpec


def resolve_device(device: str = "auto"):
    """'auto' -> CUDA when present, else CPU."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device '{device}' requested but no CUDA GPU is available; use --device cpu.")
    return torch.device(device)


def check_image(volume: Volume, spec: ModelSpec) -> np.ndarray:
    """Validate an input volume for `spec`; return its voxels as `(C, I, J, K)`."""
    array = volume.array if volume.array.ndim == 4 else volume.array[np.newaxis]
    channels = array.shape[0]
    if channels != spec.input_channels:
        raise InputError(
            f"image has {channels} channel(s), model '{spec.name}' expects {spec.input_channels}. "
            "Give a volume with the channels the model was trained on."
        )
    if array.size == 0:
        raise InputError(f"image is empty (shape {tuple(volume.array.shape)}): expected a 3-D volume with voxels.")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise InputError(f"image voxels are of type {array.dtype}: expected real numbers.")
    if np.issubdtype(array.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        if bad:
            raise InputError(f"image has {bad} NaN or infinite voxel(s) of {array.size}: expected finite intensities. Fix or mask them first.")
    if array.min() == array.max():
        raise InputError(f"image has no contrast (all {array.size} voxels equal {array.flat[0]}): expected a scan; check the input file.")
    return array


def normalize_intensity(image, normalization: dict):
    """`(C, *spatial)` float tensor -> normalised copy, per channel, as `normalization` says."""
    import torch

    kind = normalization.get("kind", "none")
    if kind == "none":
        return image
    if kind == "range":
        a_min, a_max = float(normalization["a_min"]), float(normalization["a_max"])
        b_min, b_max = float(normalization.get("b_min", 0.0)), float(normalization.get("b_max", 1.0))
        scaled = (image - a_min) / (a_max - a_min) * (b_max - b_min) + b_min
        return scaled.clamp(min(b_min, b_max), max(b_min, b_max)) if normalization.get("clip", False) else scaled
    # zscore, per channel, over all voxels or the non-zero ones
    out = torch.empty_like(image)
    for c in range(image.shape[0]):
        channel = image[c]
        values = channel[channel != 0] if normalization.get("nonzero", False) else channel
        mean, std = (values.mean(), values.std()) if values.numel() > 1 else (channel.mean(), channel.std())
        out[c] = (channel - mean) / std.clamp_min(1e-8)
        if normalization.get("nonzero", False):
            out[c][channel == 0] = 0
    return out


def predict_logits(network, spec: ModelSpec, image: np.ndarray, device: str = "auto", overlap: float = 0.25,
                   sw_batch_size: int = 1, draw: bool = False):
    """`(C_in, I, J, K)` voxels -> logits `(C_out, I, J, K)` float32 on the CPU, on the input's grid.

    `network` is one network of a `LoadedModel` (moved to `device`); with `draw`, every window is
    predicted by `network.sample` (a stochastic model's draw) instead of its forward. A model whose spec says it
    outputs probabilities is converted to logits (log for softmax, logit for sigmoid) so that
    the activation gives them back.
    """
    import torch
    from monai.inferers import sliding_window_inference

    target = resolve_device(device)
    network = network.to(target)
    tensor = normalize_intensity(torch.as_tensor(image, dtype=torch.float32), spec.normalization)
    with torch.inference_mode():
        output = sliding_window_inference(
            tensor.unsqueeze(0).to(target), roi_size=spec.roi_size, sw_batch_size=sw_batch_size,
            predictor=network.sample if draw else network, overlap=overlap, mode="gaussian",
        )[0].float().cpu()
    if output.shape[0] != spec.output_channels:
        raise InputError(
            f"model '{spec.name}' returned {output.shape[0]} channels but its spec lists {spec.num_classes} classes "
            f"({', '.join(spec.class_names)}); fix 'class_names' in model.json."
        )
    if spec.output == "probabilities":
        probabilities = output.clamp(1e-7, 1 - 1e-7)
        output = torch.logit(probabilities) if spec.activation == "sigmoid" else probabilities.log()
    return output


def probabilities_from_logits(logits, activation: str = "softmax"):
    """Logits `(C_out, *spatial)` -> class probabilities `(num_classes, *spatial)` summing to 1."""
    import torch

    if activation == "sigmoid":
        foreground = torch.sigmoid(logits[:1])
        return torch.cat([1 - foreground, foreground])
    return torch.softmax(logits, dim=0)
