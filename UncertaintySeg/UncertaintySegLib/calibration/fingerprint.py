"""Which model a calibrator was fitted for: name, class names and a checksum of every network's weights.

The checksum is taken over the loaded networks' state_dicts (names, dtypes, shapes and values),
not over files: it identifies the weights as loaded, whatever file or format they came from,
and changes when any weight changes (e.g. fine-tuning).
"""

from __future__ import annotations

import hashlib

from ..common.errors import InputError


def network_checksum(network) -> str:
    """SHA-256 of a torch network's state_dict, in key order, as float32 CPU values for floating tensors."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(network.state_dict().items()):
        value = tensor.detach().cpu()
        value = value.float() if value.is_floating_point() else value
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)};".encode())
        digest.update(value.contiguous().view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


def model_fingerprint(model) -> dict:
    """JSON-ready identity of a `models.LoadedModel`: name, class names, activation, source, members and
    one weights checksum per network (ensemble members in order)."""
    return {"name": model.spec.name, "class_names": list(model.spec.class_names), "activation": model.spec.activation,
            "source": str(model.source), "members": len(model.networks),
            "weights_sha256": [network_checksum(network) for network in model.networks]}


def check_same_model(fitted_for: dict | None, model: dict, what: str) -> None:
    """Raise InputError unless `model` (a fingerprint) has the class names and weights `fitted_for` records.

    A calibrator fitted without a recorded model (`fitted_for` None) is checked by class count only, when applied.
    """
    if fitted_for is None:
        return
    if list(fitted_for["class_names"]) != list(model["class_names"]):
        raise InputError(f"{what} was fitted for classes {list(fitted_for['class_names'])} (model '{fitted_for['name']}'), "
                         f"model '{model['name']}' has {list(model['class_names'])}: fit a calibrator for this model "
                         "with `uncertaintyseg calibrate --model ...`.")
    if list(fitted_for["weights_sha256"]) != list(model["weights_sha256"]):
        raise InputError(f"{what} was fitted for model '{fitted_for['name']}' ({fitted_for['members']} network(s), weights "
                         f"{', '.join(c[:12] for c in fitted_for['weights_sha256'])}), not for '{model['name']}' "
                         f"({model['members']} network(s), weights {', '.join(c[:12] for c in model['weights_sha256'])}): "
                         "a calibrator only fits the weights it was fitted on; run `uncertaintyseg calibrate` for this model.")
