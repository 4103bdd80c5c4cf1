"""Pre-processing from the model spec and sliding-window inference -> per-class logits.

Cost grows linearly with the number of voxels: the sliding window visits each voxel a
bounded number of times and holds one `(C, I, J, K)` float32 output plus a count map.
"""

from __future__ import annotations

import numpy as np

from ..common.errors import InputError, NonFiniteOutputError
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
                   sw_batch_size: int = 1, draw: bool = False, sample: str | None = None):
    """`(C_in, I, J, K)` voxels -> logits `(C_out, I, J, K)` float32 on the CPU, on the input's grid.

    `network` is one network of a `LoadedModel` (moved to `device`); with `draw`, every window is
    predicted by `network.sample` (a stochastic model's draw) instead of its forward. A model whose spec says it
    outputs probabilities is converted to logits (log for softmax, logit for sigmoid) so that
    the activation gives them back. NaN/Inf outputs raise `NonFiniteOutputError` naming the network
    (and `sample`, a label for the message).
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
            f"model '{spec.name}' returned {output.shape[0]} channels, but its spec (activation '{spec.activation}', "
            f"{spec.num_classes} classes: {', '.join(spec.class_names)}) expects {spec.output_channels}: 'sigmoid' takes one "
            "foreground channel and 'softmax' one channel per class (two or more); fix 'activation' or 'class_names' in model.json."
        )
    check_finite_logits(output, spec.name, sample)  # before the clamp below, which would hide inf probabilities
    if spec.output == "probabilities":
        probabilities = output.clamp(1e-7, 1 - 1e-7)
        output = torch.logit(probabilities) if spec.activation == "sigmoid" else probabilities.log()
    return output


def count_non_finite(tensor) -> int:
    """NaN/Inf entries of a tensor: one sum (no temporary; any NaN/Inf makes it non-finite), counted only then."""
    import torch

    if bool(torch.isfinite(tensor.sum())):
        return 0
    return int(tensor.numel() - torch.isfinite(tensor).sum())


def check_finite_logits(logits, model_name: str, label: str | None = None, calibrator=None) -> None:
    """Refuse (NonFiniteOutputError) NaN/Inf logits `(C, *spatial)` of one sample (`label`), naming the stage that
    made them: the network (`calibrator` None) or the calibrator given (a callable, e.g. `Calibrator.transform`),
    whose input was checked finite. Costs one read of the logits, already in memory, per sample and stage."""
    bad = count_non_finite(logits)
    if not bad:
        return
    where = f"{bad} of {logits.numel()}" + (f", sample '{label}'" if label and label != "inference" else "")
    if calibrator is None:
        raise NonFiniteOutputError(
            f"the network '{model_name}' produced {bad} non-finite logits (NaN/Inf) on this image ({where}): its weights "
            "may be damaged (NaN/Inf in the weights file) or it overflows on this input; check or restore the model's "
            "weights. Nothing was written.")
    owner = getattr(calibrator, "__self__", calibrator)
    method = getattr(owner, "method", type(owner).__name__)
    try:
        parameters = f" ({owner._parameters_text()})"
    except Exception:  # not a Calibrator, or not fitted: name it only
        parameters = ""
    raise NonFiniteOutputError(
        f"the calibrator '{method}'{parameters} turned finite logits into {bad} non-finite ones (NaN/Inf; model "
        f"'{model_name}', {where}): its parameters are damaged or extreme; fit it again with `uncertaintyseg calibrate`. "
        "Nothing was written.")


def probabilities_from_logits(logits, activation: str = "softmax"):
    """Logits `(C_out, *spatial)` -> class probabilities `(num_classes, *spatial)` summing to 1."""
    import torch

    if activation == "sigmoid":
        foreground = torch.sigmoid(logits[:1])
        return torch.cat([1 - foreground, foreground])
    return torch.softmax(logits, dim=0)
