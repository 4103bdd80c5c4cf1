"""Annotation ranking (active learning): which unlabelled cases to annotate next, most uncertain first.

Each case is run through the model once (with the sampling plan given) and scored:
- "mean_entropy": mean predictive entropy over the predicted foreground (`ood.case_score`, the
  score `uncertaintyseg ood` uses);
- "mean_mi": mean mutual information over the same voxels (needs several samples: MC dropout,
  an ensemble, or TTA);
- "segment_entropy": the largest per-class mean entropy of the predicted segments
  (`segment_scores.segment_scores`, whole classes): the least trusted structure decides.
When nothing is predicted as foreground, every score is a mean over the whole volume (column
"region"). Cases are ordered by the chosen score, highest first; equal scores by case name,
then by the order given, so a ranking is reproducible. The CLI (`rank_command.py`) and the
Slicer layer (`UncertaintySegSlicer/ranking.py`) both call `rank_volumes`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..common.errors import InputError
from ..predict.sampling_axes import several_samples_hint

RANK_SCORES = ("mean_entropy", "mean_mi", "segment_entropy")
MULTI_SAMPLE_METHODS = several_samples_hint()  # "--method mc_dropout (with --samples 2 or more), ..., or tta (...)"


@dataclass(frozen=True)
class CaseUncertainty:
    """Scores of one case (nats) and its predicted foreground (classes > 0)."""

    mean_entropy: float
    mean_mi: float | None  # None: a single sample was drawn
    segment_entropy: float
    foreground_voxels: int
    foreground_ml: float
    region: str  # "foreground", or "whole volume" when nothing was predicted as foreground


@dataclass(frozen=True)
class RankedCase:
    rank: int  # 1: the most uncertain
    case: str
    score: float
    scores: CaseUncertainty
    index: int  # position in the input

    def to_row(self) -> dict:
        return {"rank": self.rank, "case": self.case, "score": self.score, **asdict(self.scores)}


def case_uncertainty(labels: np.ndarray, entropy: np.ndarray, spacing, class_names,
                     mutual_information: np.ndarray | None = None) -> CaseUncertainty:
    """Scores of one prediction: labels, entropy and optional MI `(I, J, K)`, voxel `spacing` (mm)."""
    from .ood import case_score
    from ..predict.segment_scores import segment_scores

    whole = case_score(labels, entropy, mutual_information)
    segments = segment_scores(labels, entropy, spacing, class_names, components=False)
    found = [s.mean_entropy for s in segments if s.voxels]
    foreground = int(np.count_nonzero(labels > 0))
    return CaseUncertainty(
        mean_entropy=whole.mean_entropy, mean_mi=whole.mean_mutual_information,
        segment_entropy=max(found) if found else whole.mean_entropy,
        foreground_voxels=foreground, foreground_ml=round(foreground * float(np.prod(spacing)) / 1000.0, 6), region=whole.region,
    )


def check_score(score: str, samples_drawn: int | None = None) -> None:
    """Refuse an unknown score, and "mean_mi" when a single sample is (or was) drawn."""
    if score not in RANK_SCORES:
        raise InputError(f"unknown ranking score {score!r}: expected one of {', '.join(RANK_SCORES)}.")
    if score == "mean_mi" and samples_drawn is not None and samples_drawn < 2:
        raise InputError(f"score 'mean_mi' needs several samples per case, but this sampling draws {samples_drawn}: "
                         f"use {MULTI_SAMPLE_METHODS}; or rank by mean_entropy.")


def rank_cases(names, scores: list[CaseUncertainty], score: str = "mean_entropy") -> list[RankedCase]:
    """`names` `(N,)` and their scores -> ranked cases, highest `score` first; ties by name, then input order."""
    check_score(score)
    names = list(names)
    if len(names) != len(scores):
        raise InputError(f"{len(names)} case names for {len(scores)} scores: expected one name per case.")
    values = [getattr(s, score) for s in scores]
    missing = [name for name, value in zip(names, values) if value is None]
    if missing:
        raise InputError(f"no {score} for {len(missing)} case(s) ({', '.join(missing[:3])}): mean_mi needs several samples; "
                         f"use {MULTI_SAMPLE_METHODS}.")
    invalid = [name for name, value in zip(names, values) if not math.isfinite(value)]
    if invalid:
        raise InputError(f"{score} is NaN or infinite for {', '.join(invalid[:3])}: the model's probabilities are not finite there.")
    order = sorted(range(len(names)), key=lambda i: (-values[i], names[i], i))
    return [RankedCase(rank, names[i], float(values[i]), scores[i], i) for rank, i in enumerate(order, start=1)]


def rank_volumes(cases, model, plan=None, score: str = "mean_entropy", device: str = "auto", progress=None) -> list[RankedCase]:
    """Run `model` on each case and rank them: `cases` is a list of (name, load) with `load()` -> `io.Volume`,
    called one case at a time (one volume in memory). `plan`: a `SamplingPlan` (default: as `predict`)."""
    from ..predict.pipeline import predict_volume
    from ..predict.sampling import default_plan

    cases = list(cases)
    if not cases:
        raise InputError("no cases to rank: expected at least one volume.")
    plan = plan or default_plan(len(model.networks))
    check_score(score, plan.count(len(model.networks)))
    progress = progress or (lambda stage, fraction: None)
    scores = []
    for index, (name, load) in enumerate(cases):
        progress(f"case {name} ({index + 1}/{len(cases)})", 0.05 + 0.9 * index / len(cases))
        try:
            volume = load()
            prediction = predict_volume(volume, model, device=device, plan=plan)
        except InputError as error:
            raise InputError(f"case '{name}': {error}") from None
        scores.append(case_uncertainty(prediction.labels, prediction.entropy, volume.geometry.spacing,
                                       prediction.class_names, prediction.mutual_information))
    return rank_cases([name for name, _ in cases], scores, score)
