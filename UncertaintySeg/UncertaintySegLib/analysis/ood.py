"""Out-of-distribution detection from segmentation uncertainty (Mehrtash et al., IEEE TMI 2020).

A scan's score is the mean predictive entropy over its predicted foreground: a model that meets
data unlike its training data is less sure of the structures it finds, so a high score flags an
out-of-distribution (OOD) scan. `auroc` measures how well a score separates in-distribution
scans from OOD ones; `corrupt` makes OOD versions of in-distribution scans with MONAI transforms.

Corruptions, severities 1 (mild) to 3 (strong), values in `SEVERITIES`:
- "noise": additive Gaussian noise, std = 0.25, 0.5, 1.0 x the image's intensity std (weaker noise
  leaves the bundled hippocampus model's Dice unchanged);
- "bias": multiplicative bias field exp(f), f a degree-3 Legendre polynomial whose 20 coefficients
  are drawn uniformly in [-c, c], c = 0.05, 0.15, 0.3 (std of f over the volume about c: a
  5 %, 15 %, 30 % intensity inhomogeneity);
- "blur": Gaussian smoothing, sigma = 0.5, 1.0, 2.0 voxels;
- "contrast": gamma curve on the intensity range (MONAI `AdjustContrast`), gamma = 1.5, 2.5, 4.0.
The random parts (noise, bias coefficients) come from a `numpy` generator seeded with `seed`, and
scale with the severity with the same draw, so a stronger severity is the same corruption, larger.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..common.errors import InputError

SEVERITIES = {
    "noise": (0.25, 0.5, 1.0),  # noise std / image intensity std
    "bias": (0.05, 0.15, 0.3),  # bound c of the bias field's polynomial coefficients
    "blur": (0.5, 1.0, 2.0),  # Gaussian sigma, voxels
    "contrast": (1.5, 2.5, 4.0),  # gamma
}
CORRUPTIONS = tuple(SEVERITIES)
BIAS_DEGREE = 3


@dataclass(frozen=True)
class CaseScore:
    """OOD scores of one scan: mean entropy (nats) and, with several samples, mean mutual information (nats)
    over `voxels` voxels of `region`: "foreground" (every voxel predicted as a class > 0), or "whole volume"
    when nothing was predicted as foreground."""

    mean_entropy: float
    mean_mutual_information: float | None
    voxels: int
    region: str


def case_score(labels: np.ndarray, entropy: np.ndarray, mutual_information: np.ndarray | None = None) -> CaseScore:
    """Scores of one prediction from its labels `(I, J, K)`, entropy `(I, J, K)` and optional MI `(I, J, K)`."""
    if labels.shape != entropy.shape or (mutual_information is not None and mutual_information.shape != labels.shape):
        found = f"labels {labels.shape}, entropy {entropy.shape}" + ("" if mutual_information is None else f", MI {mutual_information.shape}")
        raise InputError(f"{found}: expected one (I, J, K) shape for labels, entropy and mutual information.")
    foreground = labels > 0
    region = "foreground" if foreground.any() else "whole volume"
    mask = foreground if foreground.any() else np.ones(labels.shape, dtype=bool)
    return CaseScore(
        mean_entropy=float(entropy[mask].mean(dtype=np.float64)),
        mean_mutual_information=None if mutual_information is None else float(mutual_information[mask].mean(dtype=np.float64)),
        voxels=int(mask.sum()), region=region,
    )


def auroc(scores, is_ood) -> float:
    """Area under the ROC curve of `scores` `(N,)` (higher = more OOD) for `is_ood` `(N,)` (1 OOD, 0 in-distribution).

    The Mann-Whitney U statistic over its maximum: the probability that an OOD scan scores higher than an
    in-distribution one, ties counted one half (average ranks).
    """
    from scipy.stats import rankdata

    scores, is_ood = np.asarray(scores, dtype=np.float64), np.asarray(is_ood)
    if scores.shape != is_ood.shape or scores.ndim != 1:
        raise InputError(f"scores {scores.shape} and OOD labels {is_ood.shape}: expected two arrays of the same length (N,).")
    if not np.all(np.isfinite(scores)):
        raise InputError(f"{int(np.count_nonzero(~np.isfinite(scores)))} score(s) are NaN or infinite: expected finite scores.")
    if not np.isin(is_ood, (0, 1)).all():
        raise InputError(f"OOD labels hold {sorted(set(np.unique(is_ood).tolist()) - {0, 1})}: expected 0 (in-distribution) or 1 (OOD).")
    positives, negatives = int(np.count_nonzero(is_ood == 1)), int(np.count_nonzero(is_ood == 0))
    if not positives or not negatives:
        raise InputError(f"AUROC needs both kinds of scan: found {negatives} in-distribution and {positives} OOD.")
    ranks = rankdata(scores)  # ties get their average rank
    u = ranks[is_ood == 1].sum() - positives * (positives + 1) / 2
    return float(u / (positives * negatives))


def corrupt(image: np.ndarray, kind: str, severity: int, seed: int = 0) -> np.ndarray:
    """A corrupted copy of an `(I, J, K)` image, same shape and dtype (integer types rounded and clipped to
    their range); `kind` one of `CORRUPTIONS`, `severity` 1, 2 or 3. The input is not modified."""
    if kind not in SEVERITIES:
        raise InputError(f"unknown corruption {kind!r}: expected one of {', '.join(CORRUPTIONS)}.")
    if severity not in (1, 2, 3):
        raise InputError(f"corruption severity {severity!r}: expected 1 (mild), 2 or 3 (strong).")
    if image.ndim != 3:
        raise InputError(f"image of shape {image.shape}: expected one channel (I, J, K).")
    value = SEVERITIES[kind][severity - 1]
    channel_first = np.asarray(image, dtype=np.float32)[np.newaxis]
    corrupted = {"noise": add_noise, "bias": apply_bias_field, "blur": blur, "contrast": adjust_contrast}[kind](channel_first, value, seed)
    return to_dtype(np.asarray(corrupted, dtype=np.float32)[0], image.dtype)


def add_noise(image: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """`(1, I, J, K)` + Gaussian noise of std `fraction` x the image's std (MONAI `RandGaussianNoise`)."""
    from monai.transforms import RandGaussianNoise

    noise = RandGaussianNoise(prob=1.0, mean=0.0, std=fraction * float(image.std()), sample_std=False)
    noise.set_random_state(seed=seed)
    return noise(image)


def apply_bias_field(image: np.ndarray, bound: float, seed: int) -> np.ndarray:
    """`(1, I, J, K)` x exp(degree-3 polynomial field, coefficients uniform in [-bound, bound]) (MONAI `RandBiasField`)."""
    from monai.transforms import RandBiasField

    field = RandBiasField(degree=BIAS_DEGREE, coeff_range=(-bound, bound), prob=1.0)
    field.set_random_state(seed=seed)
    return field(image)


def blur(image: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """`(1, I, J, K)` smoothed with a Gaussian of `sigma` voxels (MONAI `GaussianSmooth`; `seed` unused: deterministic)."""
    from monai.transforms import GaussianSmooth

    return GaussianSmooth(sigma=sigma)(image)


def adjust_contrast(image: np.ndarray, gamma: float, seed: int) -> np.ndarray:
    """`(1, I, J, K)` through a gamma curve on its intensity range (MONAI `AdjustContrast`; `seed` unused)."""
    from monai.transforms import AdjustContrast

    return AdjustContrast(gamma=gamma)(image)


def to_dtype(array: np.ndarray, dtype) -> np.ndarray:
    """`array` as `dtype`; integer types are rounded and clipped to their range, as a scanner would store them."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(array), info.min, info.max).astype(dtype)
    return array.astype(dtype, copy=False)


def auroc_by_group(groups, scores, in_distribution: str) -> list[dict]:
    """AUROC of `scores` `(N,)` for each group of `groups` `(N,)` other than `in_distribution`, against the
    `in_distribution` scans, in order of first appearance: [{"group", "auroc", "n_in_distribution", "n_ood"}]."""
    groups, scores = np.asarray(groups), np.asarray(scores, dtype=np.float64)
    inside = groups == in_distribution
    if not inside.any():
        raise InputError(f"no scan of group {in_distribution!r} among {sorted(set(groups.tolist()))}: AUROC needs in-distribution scans.")
    rows = []
    for group in dict.fromkeys(groups.tolist()):
        if group == in_distribution:
            continue
        chosen = inside | (groups == group)
        rows.append({"group": group, "auroc": auroc(scores[chosen], (groups[chosen] == group).astype(int)),
                     "n_in_distribution": int(inside.sum()), "n_ood": int((groups == group).sum())})
    return rows
