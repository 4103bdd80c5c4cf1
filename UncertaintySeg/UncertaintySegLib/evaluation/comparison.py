"""Comparing methods over the same subjects: paired Wilcoxon tests, bootstrap CIs, "best" flags.

As in Rousseau et al.'s tables: a method is flagged (bold) when it is the best by mean, or
when a paired Wilcoxon signed-rank test against the best finds no significant difference.
"""

from __future__ import annotations

import numpy as np

BOOTSTRAP_SAMPLES = 2000


def paired_wilcoxon(first: np.ndarray, second: np.ndarray) -> float:
    """Two-sided p-value of SciPy's Wilcoxon signed-rank test on paired values `(S,)`; 1.0 if all pairs are equal."""
    from scipy.stats import wilcoxon

    first, second = np.asarray(first, float), np.asarray(second, float)
    if first.shape != second.shape:
        raise ValueError(f"paired values differ in shape: {first.shape} vs {second.shape}")
    if np.all(first == second):
        return 1.0
    return float(wilcoxon(first, second).pvalue)


def bootstrap_interval(values: np.ndarray, level: float = 0.95, samples: int = BOOTSTRAP_SAMPLES,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of `values (S,)` (subjects resampled with replacement)."""
    values = np.asarray(values, float)
    if values.size == 0:
        raise ValueError("no values to bootstrap")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(samples, values.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    return float(np.quantile(means, tail)), float(np.quantile(means, 1.0 - tail))


def best_or_equivalent(per_method: dict[str, np.ndarray], lower_is_better: bool = True,
                       alpha: float = 0.05) -> dict[str, dict]:
    """Per method: mean, p-value against the best (by mean) and whether it is best or not significantly worse.

    `per_method` maps a method name to its per-subject values `(S,)`, subjects in the same order.
    """
    means = {name: float(np.mean(values)) for name, values in per_method.items()}
    best = (min if lower_is_better else max)(means, key=means.get)
    result = {}
    for name, values in per_method.items():
        p_value = 1.0 if name == best else paired_wilcoxon(per_method[best], values)
        result[name] = {"mean": means[name], "p_value_vs_best": p_value, "best": name == best,
                        "best_or_equivalent": name == best or p_value >= alpha}
    return result
