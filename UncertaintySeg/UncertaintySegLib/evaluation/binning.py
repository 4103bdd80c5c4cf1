"""Per-bin calibration statistics in one pass: count, sum of confidence, count of hits.

With B equal-width bins, bin b is `[b/B, (b+1)/B)` and the last bin is closed, so a confidence
of exactly 1.0 falls in the last bin (scikit-learn's `calibration_curve` convention; torchmetrics
opens an extra bin for 1.0 instead, see `calibration_metrics`). The bin is `floor(p * B)` in
float64, which is exact for float32 probabilities: no edge is off by a rounding.

Variants (what is binned, per voxel):
- `class_wise`: every class's probability `p[c]`, hit when the reference is `c`; rows `(C, B)`.
- `top_label`: the largest probability, hit when its class is the reference; one row `(1, B)`.
- `foreground`: `1 - p[0]`, hit when the reference is not background; one row `(1, B)`.

NumPy (and CPU torch) inputs go through a fused Numba kernel that also checks the input
(NaN, values outside [0, 1], sums not 1, labels out of range) on the way, so a call reads
each voxel once and allocates nothing of the voxels' size. Large inputs are split into one
block of voxels per thread (Numba's thread count), each binned into its own sums. CUDA tensors are binned on their
device with torch, in chunks, and only the `(rows, B)` sums come back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

VARIANTS = ("class_wise", "top_label", "foreground")
RANGE_TOLERANCE = 1e-6
CHUNK_VOXELS = 4096
LANES = 4
VECTORIZABLE = {"reassoc", "nsz", "contract", "arcp"}  # fast-math without assuming no NaN
TORCH_CHUNK_VOXELS = 1 << 22
MIN_VOXELS_PER_THREAD = 1 << 16  # below this, one thread: starting threads costs more than it saves


@dataclass
class BinSums:
    """Per-bin sums `(rows, B)`: counts and hits are int64, confidence sums float64."""

    counts: np.ndarray
    confidence_sums: np.ndarray
    hits: np.ndarray


@dataclass
class InputFaults:
    """What an input got wrong, counted over the voxels inside the mask."""

    out_of_range: int = 0  # NaN or outside [0, 1]
    bad_labels: int = 0  # outside [0, C)
    worst_sum_error: float = 0.0  # max over voxels of |sum_c p[c] - 1|


def rows_for(variant: str, num_classes: int) -> int:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, found '{variant}'")
    return num_classes if variant == "class_wise" else 1


def empty_sums(rows: int, bins: int) -> BinSums:
    return BinSums(np.zeros((rows, bins), np.int64), np.zeros((rows, bins), np.float64), np.zeros((rows, bins), np.int64))


@numba.njit(cache=True, nogil=True, fastmath=VECTORIZABLE)
def _check_chunk(probabilities, labels, mask, use_mask, start, stop, totals):
    """Faults among voxels `start:stop` inside the mask: (out of range or NaN, bad labels, worst |sum - 1|).

    Class by class over contiguous rows so that the loops vectorize; `totals` is scratch space.
    """
    num_classes = probabilities.shape[0]
    count = stop - start
    lowest, highest = 1.0, 0.0
    totals[:count] = 0.0
    for c in range(num_classes):
        for i in range(count):
            p = float(probabilities[c, start + i])
            totals[i] += p
            lowest = min(lowest, p)
            highest = max(highest, p)
    worst_sum_error, bad_labels, not_a_number = 0.0, 0, 0
    for i in range(count):
        inside = (not use_mask) or mask[start + i]
        not_a_number += totals[i] != totals[i]
        worst_sum_error = max(worst_sum_error, abs(totals[i] - 1.0) if inside else 0.0)
        label = labels[start + i]
        bad_labels += inside and (label < 0 or label >= num_classes)
    out_of_range = 0
    if not (lowest >= -RANGE_TOLERANCE and highest <= 1.0 + RANGE_TOLERANCE and not_a_number == 0):
        out_of_range = _count_out_of_range(probabilities, mask, use_mask, start, stop)
    return out_of_range, bad_labels, worst_sum_error


@numba.njit(cache=True, nogil=True)
def _count_out_of_range(probabilities, mask, use_mask, start, stop):
    """Voxels `start:stop` inside the mask with a NaN or a probability outside [0, 1] (the rare, slow path)."""
    count = 0
    for v in range(start, stop):
        if use_mask and not mask[v]:
            continue
        for c in range(probabilities.shape[0]):
            p = float(probabilities[c, v])
            if not (p >= -RANGE_TOLERANCE and p <= 1.0 + RANGE_TOLERANCE):  # NaN compares false
                count += 1
                break
    return count


@numba.njit(cache=True, nogil=True)
def _scatter(values, keys, count, pair_counts, confidence_sums):
    """Add `values[:count]` at `keys[:count]` (2 * bin + hit) into `LANES` interleaved copies of the sums.

    Reading eight keys before writing, and spreading neighbours over lanes, keeps the loop from
    waiting on its own stores (runs of equal bins are the common case in segmentations).
    """
    whole = count - count % 8
    for i in range(0, whole, 8):
        k0, k1, k2, k3 = keys[i], keys[i + 1], keys[i + 2], keys[i + 3]
        k4, k5, k6, k7 = keys[i + 4], keys[i + 5], keys[i + 6], keys[i + 7]
        v0, v1, v2, v3 = values[i], values[i + 1], values[i + 2], values[i + 3]
        v4, v5, v6, v7 = values[i + 4], values[i + 5], values[i + 6], values[i + 7]
        pair_counts[0, k0] += 1
        confidence_sums[0, k0 >> 1] += v0
        pair_counts[1, k1] += 1
        confidence_sums[1, k1 >> 1] += v1
        pair_counts[2, k2] += 1
        confidence_sums[2, k2 >> 1] += v2
        pair_counts[3, k3] += 1
        confidence_sums[3, k3 >> 1] += v3
        pair_counts[0, k4] += 1
        confidence_sums[0, k4 >> 1] += v4
        pair_counts[1, k5] += 1
        confidence_sums[1, k5 >> 1] += v5
        pair_counts[2, k6] += 1
        confidence_sums[2, k6 >> 1] += v6
        pair_counts[3, k7] += 1
        confidence_sums[3, k7 >> 1] += v7
    for i in range(whole, count):
        pair_counts[0, keys[i]] += 1
        confidence_sums[0, keys[i] >> 1] += values[i]


@numba.njit(cache=True, nogil=True)
def _key(p, hit, bins):
    return 2 * min(int(p * bins), bins - 1) + hit


@numba.njit(cache=True, nogil=True, fastmath=VECTORIZABLE)
def _class_keys(probabilities, labels, row, start, stop, bins, values, keys):
    for i in range(stop - start):
        p = min(max(float(probabilities[row, start + i]), 0.0), 1.0)
        values[i] = p
        keys[i] = _key(p, labels[start + i] == row, bins)


@numba.njit(cache=True, nogil=True, fastmath=VECTORIZABLE)
def _top_label_keys(probabilities, labels, start, stop, bins, values, keys):
    for i in range(stop - start):
        best = float(probabilities[0, start + i])
        best_class = 0
        for c in range(1, probabilities.shape[0]):
            p = float(probabilities[c, start + i])
            best_class = c if p > best else best_class
            best = max(p, best)
        best = min(max(best, 0.0), 1.0)
        values[i] = best
        keys[i] = _key(best, labels[start + i] == best_class, bins)


@numba.njit(cache=True, nogil=True, fastmath=VECTORIZABLE)
def _foreground_keys(probabilities, labels, start, stop, bins, values, keys):
    for i in range(stop - start):
        p = min(max(1.0 - float(probabilities[0, start + i]), 0.0), 1.0)
        values[i] = p
        keys[i] = _key(p, labels[start + i] != 0, bins)


@numba.njit(cache=True, nogil=True)
def _accumulate(probabilities, labels, mask, use_mask, variant, bins, pair_counts, confidence_sums, first, last):
    """Bin voxels `first:last` of `probabilities (C, N)`, `labels (N,)` inside `mask (N,)`, chunk by chunk.

    `variant`: 0 class-wise, 1 top-label, 2 foreground. `pair_counts (rows, LANES, 2B + 2)` counts
    misses at `2b` and hits at `2b + 1`; `confidence_sums (rows, LANES, B + 1)`; the last bin of
    each takes voxels outside the mask. A chunk with a fault is checked but not binned.
    Returns (out of range, bad labels, worst |sum - 1|).
    """
    rows = pair_counts.shape[0]
    values = np.empty(CHUNK_VOXELS, np.float64)
    keys = np.empty(CHUNK_VOXELS, np.int64)
    out_of_range = 0
    bad_labels = 0
    worst_sum_error = 0.0
    for start in range(first, last, CHUNK_VOXELS):
        stop = min(last, start + CHUNK_VOXELS)
        chunk_out_of_range, chunk_bad_labels, chunk_worst = _check_chunk(probabilities, labels, mask, use_mask, start, stop, values)
        out_of_range += chunk_out_of_range
        bad_labels += chunk_bad_labels
        worst_sum_error = max(worst_sum_error, chunk_worst)
        if chunk_out_of_range or chunk_bad_labels:
            continue
        for row in range(rows):
            if variant == 0:
                _class_keys(probabilities, labels, row, start, stop, bins, values, keys)
            elif variant == 1:
                _top_label_keys(probabilities, labels, start, stop, bins, values, keys)
            else:
                _foreground_keys(probabilities, labels, start, stop, bins, values, keys)
            if use_mask:
                for i in range(stop - start):
                    if not mask[start + i]:
                        keys[i] = 2 * bins
            _scatter(values, keys, stop - start, pair_counts[row], confidence_sums[row])
    return out_of_range, bad_labels, worst_sum_error


@numba.njit(cache=True, parallel=True)
def _accumulate_in_parallel(probabilities, labels, mask, use_mask, variant, bins, pair_counts, confidence_sums, faults):
    """`_accumulate` over `T` contiguous blocks of voxels, one per thread, each into its own sums.

    `pair_counts (T, rows, LANES, 2B + 2)`, `confidence_sums (T, rows, LANES, B + 1)`, `faults (T, 3)`.
    """
    blocks = pair_counts.shape[0]
    voxels = labels.shape[0]
    per_block = (voxels + blocks - 1) // blocks
    for block in numba.prange(blocks):
        first = min(voxels, block * per_block)
        last = min(voxels, first + per_block)
        out_of_range, bad_labels, worst = _accumulate(probabilities, labels, mask, use_mask, variant, bins,
                                                      pair_counts[block], confidence_sums[block], first, last)
        faults[block, 0] = out_of_range
        faults[block, 1] = bad_labels
        faults[block, 2] = worst


def accumulate_numpy(probabilities: np.ndarray, labels: np.ndarray, mask: np.ndarray | None, variant: str,
                     bins: int) -> tuple[BinSums, InputFaults]:
    """Bin `probabilities (C, N)` float32/64 against integer `labels (N,)` where `mask (N,)` is true, in one pass."""
    rows = rows_for(variant, probabilities.shape[0])
    blocks = max(1, min(numba.get_num_threads(), labels.shape[0] // MIN_VOXELS_PER_THREAD))
    pair_counts = np.zeros((blocks, rows, LANES, 2 * bins + 2), np.int64)
    confidence_sums = np.zeros((blocks, rows, LANES, bins + 1), np.float64)
    faults = np.zeros((blocks, 3), np.float64)
    use_mask = mask is not None
    mask_array = mask if use_mask else np.ones(1, dtype=bool)
    _accumulate_in_parallel(probabilities, labels, mask_array, use_mask, VARIANTS.index(variant), bins, pair_counts,
                            confidence_sums, faults)
    pairs = pair_counts.sum(axis=(0, 2))[:, :2 * bins].reshape(rows, bins, 2)
    sums = BinSums(pairs.sum(axis=2), confidence_sums.sum(axis=(0, 2))[:, :bins], np.ascontiguousarray(pairs[..., 1]))
    return sums, InputFaults(int(faults[:, 0].sum()), int(faults[:, 1].sum()), float(faults[:, 2].max()))


def accumulate_torch(probabilities, labels, mask, variant: str, bins: int) -> tuple[BinSums, InputFaults]:
    """Same as `accumulate_numpy` for torch tensors on any device (CUDA: no voxel leaves the GPU)."""
    import torch

    device = probabilities.device
    num_classes, voxels = probabilities.shape
    rows = rows_for(variant, num_classes)
    totals = [torch.zeros(rows * bins, dtype=dtype, device=device) for dtype in (torch.int64, torch.float64, torch.int64)]
    faults = InputFaults()
    for start in range(0, voxels, TORCH_CHUNK_VOXELS):
        p = probabilities[:, start:start + TORCH_CHUNK_VOXELS].to(torch.float64)
        y = labels[start:start + TORCH_CHUNK_VOXELS].to(torch.int64)
        if mask is not None:
            inside = mask[start:start + TORCH_CHUNK_VOXELS].to(torch.bool)
            p, y = p[:, inside], y[inside]
        good_label = (y >= 0) & (y < num_classes)
        good_range = ((p >= -RANGE_TOLERANCE) & (p <= 1 + RANGE_TOLERANCE)).all(dim=0)  # NaN compares false
        faults.bad_labels += int((~good_label).sum())
        faults.out_of_range += int((~good_range).sum())
        p, y = p[:, good_label & good_range], y[good_label & good_range]
        if y.numel() == 0:
            continue
        faults.worst_sum_error = max(faults.worst_sum_error, float((p.sum(dim=0) - 1).abs().max()))
        if variant == "class_wise":
            values = p
            hit = y[None, :] == torch.arange(num_classes, device=device)[:, None]
        elif variant == "top_label":
            best, best_class = p.max(dim=0)
            values, hit = best[None], (best_class == y)[None]
        else:
            values, hit = (1 - p[0])[None], (y != 0)[None]
        values = values.clamp(0, 1)
        flat = ((values * bins).floor().to(torch.int64).clamp(max=bins - 1)
                + bins * torch.arange(rows, device=device)[:, None]).reshape(-1)
        totals[0] += torch.bincount(flat, minlength=rows * bins)
        totals[1] += torch.bincount(flat, weights=values.reshape(-1), minlength=rows * bins)
        totals[2] += torch.bincount(flat, weights=hit.reshape(-1).to(torch.float64), minlength=rows * bins).round().to(torch.int64)
    counts, confidence_sums, hits = (t.reshape(rows, bins).cpu().numpy() for t in totals)
    return BinSums(counts, confidence_sums, hits), faults
