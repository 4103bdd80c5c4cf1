"""Calibration cases: checking them, streaming them, and drawing a bounded sample of their voxels.

A case is `logits (C, I, J, K)` float, `labels (I, J, K)` class indices and an optional ROI
`mask (I, J, K)` bool (None: every voxel). `C == 1` is a sigmoid model's foreground logit;
calibrators see it lifted to the two softmax logits `(0, z)` (`lift_binary`), which give the
same probabilities, and hand it back as one channel.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..common.errors import InputError


@dataclass
class Case:
    """One checked case: `logits (C, I, J, K)` float32 (softmax logits, C >= 2), `labels (I, J, K)` int64,
    `mask (I, J, K)` bool (never empty)."""

    logits: object  # torch.Tensor
    labels: object  # torch.Tensor
    mask: object  # torch.Tensor


def as_tensor(array, dtype=None):
    import torch

    tensor = array if isinstance(array, torch.Tensor) else torch.as_tensor(np.asarray(array))
    return tensor if dtype is None else tensor.to(dtype)


def lift_binary(logits, channel_dim: int):
    """A sigmoid model's one-channel logit z -> softmax logits (0, z) along `channel_dim`; C >= 2 unchanged."""
    import torch

    if logits.shape[channel_dim] != 1:
        return logits
    return torch.cat([torch.zeros_like(logits), logits], dim=channel_dim)


def lower_binary(logits, channel_dim: int):
    """Inverse of `lift_binary`: two softmax logits -> the one sigmoid logit z1 - z0."""
    return logits.narrow(channel_dim, 1, 1) - logits.narrow(channel_dim, 0, 1)


def is_single_case(logits) -> bool:
    """True for one `(C, I, J, K)` array or tensor; False for a sequence (or iterator) of them."""
    return hasattr(logits, "ndim") and hasattr(logits, "shape")


def iter_cases(logits, labels, mask=None) -> Iterator[tuple[object, object, object]]:
    """(logits, labels, mask) of each case, whether one case or sequences/iterables of cases were given.

    Iterables are consumed lazily, one case at a time, so a generator that runs a network case by
    case keeps one case's logits in memory.
    """
    if is_single_case(logits):
        yield logits, labels, mask
        return
    if is_single_case(labels):
        raise InputError("logits are a sequence of cases but labels are one array: give one label map per case.")
    if mask is not None and is_single_case(mask):
        raise InputError("logits are a sequence of cases but the mask is one array: give one mask per case (or None).")
    label_iter, mask_iter = iter(labels), (iter(mask) if mask is not None else None)
    for index, case_logits in enumerate(logits):
        try:
            case_labels = next(label_iter)
            case_mask = next(mask_iter) if mask_iter is not None else None
        except StopIteration:
            raise InputError(f"{index + 1} or more logit volumes but fewer label maps (or masks): give one per case.") from None
        yield case_logits, case_labels, case_mask
    if next(label_iter, None) is not None:
        raise InputError("more label maps than logit volumes: give exactly one per case.")


def check_case(logits, labels, mask, index: int, num_classes: int | None = None) -> Case:
    """Validate one case and return it as tensors; every problem says what was expected and what to do.

    `num_classes`: softmax classes expected (from earlier cases or the calibrator), or None.
    """
    import torch

    where = f"case {index + 1}"
    logits = as_tensor(logits)
    if logits.ndim != 4:
        raise InputError(f"{where}: logits have shape {tuple(logits.shape)}: expected (C, I, J, K) per-class logits of one volume.")
    if not logits.is_floating_point():
        raise InputError(f"{where}: logits are of type {logits.dtype}: expected floating-point logits (not labels or probabilities as integers).")
    logits = lift_binary(logits.float(), 0)
    classes = logits.shape[0]
    if num_classes is not None and classes != num_classes:
        raise InputError(f"{where}: logits have {classes} classes, earlier cases or the calibrator {num_classes}: "
                         "every case must come from the same model.")
    labels = as_tensor(labels)
    if tuple(labels.shape) != tuple(logits.shape[1:]):
        raise InputError(f"{where}: labels have shape {tuple(labels.shape)}, logits {tuple(logits.shape)}: expected labels (I, J, K) "
                         "on the logits' grid; resample the label map onto the image the model ran on.")
    if labels.is_floating_point():
        if not torch.equal(labels, labels.round()):
            raise InputError(f"{where}: labels hold non-integer values: expected class indices 0..{classes - 1}.")
    elif labels.dtype == torch.bool:
        labels = labels.long()
    labels = labels.long()
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise InputError(f"{where}: labels hold values {int(labels.min())}..{int(labels.max())}, the model has {classes} classes: "
                         f"expected class indices 0..{classes - 1}; check that the label map uses the model's classes.")
    if mask is None:
        mask = torch.ones(labels.shape, dtype=torch.bool)
    else:
        mask = as_tensor(mask)
        if tuple(mask.shape) != tuple(labels.shape):
            raise InputError(f"{where}: ROI mask has shape {tuple(mask.shape)}, labels {tuple(labels.shape)}: expected the same grid.")
        mask = mask != 0
    if not bool(mask.any()):
        raise InputError(f"{where}: the ROI is empty (no voxel to fit on). Check the mask, or use the whole volume "
                         "(--roi none); a bounding-box ROI is empty when the reference has no foreground.")
    if not bool(torch.isfinite(logits[:, mask]).all()):
        raise InputError(f"{where}: logits hold NaN or infinite values inside the ROI: expected finite network outputs.")
    return Case(logits, labels, mask)


def sample_index(mask, max_voxels: int | None, rng: np.random.Generator):
    """Flat indices `(M,)`, sorted, of at most `max_voxels` voxels of `mask` drawn without replacement
    (all of them when there are fewer, or when `max_voxels` is None)."""
    import torch

    index = torch.nonzero(mask.reshape(-1)).squeeze(1)
    if max_voxels is not None and index.numel() > max_voxels:
        index = index[torch.from_numpy(np.sort(rng.choice(index.numel(), size=max_voxels, replace=False)))]
    return index


def voxels_at(logits, index):
    """`(C, I, J, K)` logits -> `(M, C)` at flat voxel indices `(M,)`."""
    return logits.reshape(logits.shape[0], -1)[:, index].T.contiguous()


def sample_voxels(case: Case, max_voxels: int | None, rng: np.random.Generator):
    """(logits `(N, C)`, labels `(N,)`) of at most `max_voxels` voxels drawn from the case's ROI (`sample_index`)."""
    index = sample_index(case.mask, max_voxels, rng)
    return voxels_at(case.logits, index), case.labels.reshape(-1)[index]


def roi_box(mask, margin: int) -> tuple[slice, slice, slice]:
    """Index box of a non-empty `mask (I, J, K)` grown by `margin` voxels on every side, clipped to the volume."""
    import torch

    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        present = torch.nonzero(mask.any(dim=other[1]).any(dim=other[0])).squeeze(1)
        low, high = int(present.min()), int(present.max())
        box.append(slice(max(low - margin, 0), min(high + margin + 1, mask.shape[axis])))
    return tuple(box)


def mean_nll(logits, labels) -> float:
    """Mean negative log-likelihood (nats) of softmax `logits (N, C)` for `labels (N,)`."""
    import torch

    if labels.numel() == 0:
        return float("nan")
    chunk, total = 1 << 19, 0.0  # in chunks: no (N, C) float64 temporary
    with torch.no_grad():
        for start in range(0, labels.numel(), chunk):
            part = logits[start:start + chunk].double()
            total += float(torch.nn.functional.cross_entropy(part, labels[start:start + chunk], reduction="sum"))
    return total / labels.numel()
