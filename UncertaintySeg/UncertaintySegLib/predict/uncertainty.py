"""Voxel-wise uncertainty from class probabilities `(C, *spatial)` (torch tensors).

Over S samples (MC dropout, ensemble members, TTA flips) of probabilities p_s:
- predictive entropy H[E p] (total uncertainty), from the mean probabilities;
- expected entropy E[H p] (aleatoric), the mean of the per-sample entropies;
- mutual information H[E p] - E[H p] (epistemic, BALD), >= 0;
- per-class variance of p_s.
`StreamingMoments` keeps running sums so that memory is O(C x V) whatever S is; its `maps()` is the one
routine that turns them into maps (`pipeline.summarize` uses it). `normalize_entropy` is the one place
entropies become fractions of log C (`predict --normalize-uncertainty`).
"""

from __future__ import annotations

import math


def predictive_entropy(probabilities):
    """Entropy -sum_c p_c log p_c in nats, `(C, *spatial) -> (*spatial)`."""
    import torch

    return torch.special.entr(probabilities).sum(dim=0)


def normalize_entropy(entropy, classes: int):
    """An entropy or MI map in nats (numpy array or tensor) divided by log `classes` in place (range [0, 1]); returns it."""
    entropy *= 1.0 / math.log(classes)
    return entropy


def mutual_information(total_entropy, expected_entropy):
    """H[E p] - E[H p] `(*spatial)`, clamped at 0 (float rounding can make it slightly negative)."""
    return (total_entropy - expected_entropy).clamp_min_(0)


def label_map(probabilities):
    """Predicted class index per voxel, `(C, *spatial) -> (*spatial)` uint8 (up to 256 classes)."""
    import torch

    return probabilities.argmax(dim=0).to(torch.uint8)


class StreamingMoments:
    """Running mean and second moment (Welford) of probability samples, and the running mean of their entropies.

    `update(p)` takes one sample `(C, *spatial)`; state is the mean `(C, *spatial)`, M2 `(C, *spatial)` and
    the mean entropy `(*spatial)`: three arrays whatever the number of samples.
    """

    def __init__(self):
        self.count = 0
        self.mean = None
        self.second_moment = None
        self.expected_entropy = None

    def update(self, probabilities) -> None:
        """Add one sample `(C, *spatial)` float tensor. The tensor is used as scratch space and overwritten."""
        import torch

        self.count += 1
        entropy = torch.special.entr(probabilities).sum(dim=0)
        if self.count == 1:
            self.mean = probabilities.clone()
            self.second_moment = torch.zeros_like(probabilities)
            self.expected_entropy = entropy
            return
        self.expected_entropy.add_(entropy.sub_(self.expected_entropy), alpha=1.0 / self.count)
        delta = probabilities - self.mean
        self.mean.add_(delta, alpha=1.0 / self.count)
        self.second_moment.addcmul_(delta, probabilities.sub_(self.mean))

    @property
    def variance(self):
        """Per-class population variance of the samples `(C, *spatial)` (0 for one sample)."""
        return self.second_moment / self.count

    def maps(self) -> dict:
        """{"probabilities", "entropy", "expected_entropy", "mutual_information", "variance"} as tensors."""
        if self.count == 0:
            raise ValueError("no samples were added")
        total = predictive_entropy(self.mean)
        return {"probabilities": self.mean, "entropy": total, "expected_entropy": self.expected_entropy,
                "mutual_information": mutual_information(total.clone(), self.expected_entropy), "variance": self.variance}
