"""Czolbe et al.'s active-learning experiment: are the most uncertain cases the best ones to annotate next?

For each seed, a first labelled pool of `sizes[0]` cases is drawn at random from the unlabelled
pool. Each round a network is trained from scratch (same seed, same number of optimiser steps
whatever the pool size, so a bigger pool gets more data and not more training) on the labelled
cases, and scored on the test cases (mean foreground Dice of its single-pass prediction). The
pool then grows to the next size by one of two strategies:

- "random": cases drawn uniformly from the unlabelled ones;
- "uncertainty": the unlabelled cases the current network is least sure of, ranked by
  `ranking.rank_volumes` with the settings' score and sampling (the `uncertaintyseg rank` core).

Both strategies start from the same first pool and share its network, so their curves start at
one point and differ only by the cases picked. Cost: `seeds x (1 + 2 x (rounds - 1))` trainings of
`steps` steps (independent of the volume size, as the training crop is fixed), plus one inference
per unlabelled case and round (uncertainty) and per test case and training; inference grows
linearly with the voxels of a case.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..common.errors import InputError
from ..predict.io import Volume
from ..predict.sampling_axes import DROPOUT, SINGLE_PASS, methods_for

STRATEGIES = ("random", "uncertainty")
SCORING_METHODS = frozenset({SINGLE_PASS, *methods_for({DROPOUT})})  # what the one U-Net with dropout each round trains can draw


@dataclass(frozen=True)
class ExperimentSettings:
    sizes: tuple[int, ...] = (3, 6, 12, 24, 48)  # labelled cases at each round
    seeds: tuple[int, ...] = (0, 1, 2, 3)
    steps: int = 300  # optimiser steps per training
    batch_size: int = 4
    channels: tuple[int, ...] = (8, 16, 32, 64)  # a small MONAI UNet (150k parameters)
    loss: str = "dice_ce"
    score: str = "mean_entropy"  # a `ranking.RANK_SCORES` entry
    method: str = "softmax"  # sampling used to score the unlabelled cases (`sampling.parse_method`)
    samples: int = 10  # MC dropout passes when `method` samples
    device: str = "cpu"


@dataclass(frozen=True)
class LabelledCase:
    """A pool or test case: its image and its reference label map `(I, J, K)` on the image's grid."""

    name: str
    image: Volume
    label: np.ndarray


@dataclass
class RoundResult:
    """One training of one strategy and seed; round 0 (the first pool) is shared by both strategies."""

    seed: int
    strategy: str
    round: int
    labelled: int
    added: list[str]  # the cases picked before this round's training ([] in round 0)
    added_scores: list[float]  # their uncertainty scores (uncertainty strategy only)
    test_dice: float  # mean over test cases of the mean foreground Dice
    test_dice_per_case: list[float] = field(repr=False)
    best_validation_dice: float = 0.0
    epochs: int = 0
    train_seconds: float = 0.0


def check_settings(settings: ExperimentSettings, pool_size: int, test_size: int) -> None:
    """Refuse sizes that cannot be grown from the pool, and a score or sampling the round's network cannot give."""
    from .ranking import check_score

    sizes = list(settings.sizes)
    if len(sizes) < 2 or sizes[0] < 2 or any(b <= a for a, b in zip(sizes, sizes[1:])):
        raise InputError(f"labelled pool sizes {sizes}: expected at least two strictly increasing sizes, the first at least 2 "
                         "(one case to train on and one to validate).")
    if sizes[-1] > pool_size:
        raise InputError(f"the last pool size {sizes[-1]} exceeds the {pool_size} cases of the pool: lower it or give more cases.")
    if not settings.seeds or len(set(settings.seeds)) != len(settings.seeds):
        raise InputError(f"seeds {list(settings.seeds)}: expected at least one seed, each once.")
    if settings.steps < 1 or settings.batch_size < 1:
        raise InputError(f"steps {settings.steps} and batch size {settings.batch_size}: expected both at least 1.")
    if test_size < 1:
        raise InputError("no test cases: the learning curve needs at least one labelled test case.")
    check_score(settings.score, scoring_plan(settings).count(members=1))


def scoring_plan(settings: ExperimentSettings, seed: int = 0):
    """The `SamplingPlan` that scores the unlabelled cases: `settings.method` on the round's one network."""
    from ..predict.sampling import SamplingPlan, parse_method

    methods = parse_method(settings.method)
    if not methods <= SCORING_METHODS:
        raise InputError(f"method {settings.method!r} cannot score the pool: each round trains one U-Net, so use "
                         f"{', '.join(sorted(SCORING_METHODS))} or a combination of "
                         f"{' and '.join(sorted(SCORING_METHODS - {SINGLE_PASS}))}.")
    return SamplingPlan(methods=methods, samples=settings.samples, seed=seed)


def train_settings(settings: ExperimentSettings, labelled: int, seed: int):
    """`TrainSettings` for a pool of `labelled` cases: epochs chosen so training takes `settings.steps`
    steps, no early stopping (the best validation epoch is still the one kept)."""
    from ..training.train import TrainSettings, validation_count

    defaults = TrainSettings()
    training = labelled - validation_count(labelled, defaults.validation_fraction)
    epochs = math.ceil(settings.steps / math.ceil(training / settings.batch_size))
    return TrainSettings(loss=settings.loss, seed=seed, epochs=epochs, patience=epochs, batch_size=settings.batch_size,
                         channels=tuple(settings.channels), device=settings.device, name="active-learning")


def train_model(arrays: list, labelled: list[int], settings: ExperimentSettings, seed: int):
    """(LoadedModel of a network trained on the `labelled` entries of `arrays` ((image, label) as
    `train.prepare_case` gives them), train_network's summary)."""
    from ..predict.models import LoadedModel, build_monai_network
    from ..training.train import model_spec, network_config, train_network

    trainer = train_settings(settings, len(labelled), seed)
    state, _, summary = train_network([arrays[i] for i in labelled], trainer)
    network = build_monai_network(network_config(trainer), Path("active-learning"))
    network.load_state_dict(state)
    return LoadedModel(spec=model_spec(trainer, [seed]), networks=[network.eval()], source=Path("active-learning")), summary


def case_dice(model, cases: list[LabelledCase], device: str) -> list[float]:
    """Mean foreground Dice `(N,)` of the model's single-pass label map on each case."""
    from ..evaluation.metrics import dice_per_class
    from ..predict.pipeline import predict_volume

    classes = len(model.spec.class_names)
    return [float(np.mean(dice_per_class(predict_volume(case.image, model, device=device).labels, case.label, classes)))
            for case in cases]


def pick_random(unlabelled: list[int], count: int, rng: np.random.Generator) -> tuple[list[int], list[float]]:
    """`count` of the `unlabelled` pool indices, uniformly without replacement (no scores)."""
    return [unlabelled[i] for i in rng.choice(len(unlabelled), count, replace=False)], []


def pick_most_uncertain(model, pool: list[LabelledCase], unlabelled: list[int], count: int,
                        settings: ExperimentSettings, seed: int) -> tuple[list[int], list[float]]:
    """The `count` unlabelled pool indices ranked most uncertain by `model` (`rank_volumes`), and their scores."""
    from .ranking import rank_volumes

    cases = [(pool[i].name, lambda case=pool[i]: case.image) for i in unlabelled]
    ranked = rank_volumes(cases, model, scoring_plan(settings, seed), settings.score, settings.device)[:count]
    return [unlabelled[case.index] for case in ranked], [case.score for case in ranked]


def run_experiment(pool: list[LabelledCase], test: list[LabelledCase], settings: ExperimentSettings,
                   progress=None) -> list[RoundResult]:
    """Every round of every seed and strategy (module docstring), in the order they ran."""
    from ..training.train import NORMALIZATION, prepare_case

    check_settings(settings, len(pool), len(test))
    progress = progress or (lambda message: None)
    arrays = [prepare_case(case.image.array, case.label, NORMALIZATION) for case in pool]
    results = []

    def train_and_test(seed, strategy, round_index, labelled, added, scores):
        started = time.perf_counter()
        model, summary = train_model(arrays, labelled, settings, seed)
        seconds = time.perf_counter() - started
        dice = case_dice(model, test, settings.device)
        result = RoundResult(seed, strategy, round_index, len(labelled), [pool[i].name for i in added], scores,
                             float(np.mean(dice)), dice, summary["best_validation_dice"], summary["epochs_run"], round(seconds, 1))
        progress(f"seed {seed} {strategy:<11} {len(labelled):>3} labelled: test Dice {result.test_dice:.4f} "
                 f"(trained {seconds:.0f} s)")
        return model, result

    for seed in settings.seeds:
        first = sorted(int(i) for i in np.random.default_rng(seed).choice(len(pool), settings.sizes[0], replace=False))
        first_model, first_result = train_and_test(seed, "shared", 0, first, [], [])
        for strategy in STRATEGIES:
            results.append(replace(first_result, strategy=strategy))
            labelled, model, rng = list(first), first_model, np.random.default_rng((seed, 1))
            for round_index, size in enumerate(settings.sizes[1:], start=1):
                taken = set(labelled)
                unlabelled = [i for i in range(len(pool)) if i not in taken]
                if strategy == "random":
                    added, scores = pick_random(unlabelled, size - len(labelled), rng)
                else:
                    added, scores = pick_most_uncertain(model, pool, unlabelled, size - len(labelled), settings, seed)
                labelled = labelled + added
                model, result = train_and_test(seed, strategy, round_index, labelled, added, scores)
                results.append(result)
    return results


def learning_curves(results: list[RoundResult]) -> list[dict]:
    """Per strategy and pool size: mean, standard deviation (ddof 1), min and max test Dice over seeds."""
    rows = []
    for strategy in STRATEGIES:
        for labelled in sorted({r.labelled for r in results}):
            dice = [r.test_dice for r in results if r.strategy == strategy and r.labelled == labelled]
            if dice:
                rows.append({"strategy": strategy, "labelled": labelled, "seeds": len(dice), "mean_dice": float(np.mean(dice)),
                             "sd_dice": float(np.std(dice, ddof=1)) if len(dice) > 1 else 0.0,
                             "min_dice": float(min(dice)), "max_dice": float(max(dice))})
    return rows


def paired_differences(results: list[RoundResult]) -> list[dict]:
    """Per pool size after the first: uncertainty minus random test Dice for each seed, their mean, and
    how many seeds uncertainty won; plus the area under the curve (mean Dice over every round) per seed."""
    by_key = {(r.strategy, r.seed, r.labelled): r.test_dice for r in results}
    seeds = sorted({r.seed for r in results})
    sizes = sorted({r.labelled for r in results})
    rows = []
    for labelled in sizes[1:] + ["all rounds"]:
        chosen = sizes if labelled == "all rounds" else [labelled]
        differences = [float(np.mean([by_key[("uncertainty", s, n)] for n in chosen]) - np.mean([by_key[("random", s, n)] for n in chosen]))
                       for s in seeds]
        rows.append({"labelled": labelled, "mean_difference": float(np.mean(differences)),
                     "uncertainty_wins": sum(d > 0 for d in differences), "seeds": len(seeds),
                     "per_seed": differences})
    return rows


def pick_overlap(results: list[RoundResult]) -> list[dict]:
    """Per strategy: cases picked over all seeds and rounds, how many distinct, and how many every seed picked
    (a strategy that keeps picking the same cases adds less variety to the pool than its count says)."""
    seeds = sorted({r.seed for r in results})
    rows = []
    for strategy in STRATEGIES:
        per_seed = [{name for r in results if r.strategy == strategy and r.seed == seed for name in r.added} for seed in seeds]
        rows.append({"strategy": strategy, "picks": sum(len(r.added) for r in results if r.strategy == strategy),
                     "distinct": len(set().union(*per_seed)), "picked_by_every_seed": len(set.intersection(*per_seed)),
                     "seeds": len(seeds)})
    return rows
