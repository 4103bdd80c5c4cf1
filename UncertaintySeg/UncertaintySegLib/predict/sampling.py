"""Draw probability samples from a model and aggregate them as they come.

Methods (combinable, e.g. "ensemble+tta" or "ensemble+mc_dropout"):
- "softmax": one deterministic pass of the first network;
- "mc_dropout": S passes with only the dropout layers in training mode (batch-norm stays in
  eval mode), the n-th sample of the run seeded with seed + n, so a run is reproducible;
- "sample": S draws of a stochastic model: a network with `sample(x) -> logits` (a Probabilistic U-Net
  drawing its latent from the prior), or one whose forward is random by design (`"stochastic": true`
  in model.json); the n-th sample is seeded with seed + n like MC dropout. A network with
  `shared_latent_noise()` (probabilistic_unet.py) gets one draw per pass, shared by all its sliding
  windows; without it every window draws on its own (give it one window, roi_size >= the image);
- "ensemble": every network of the model (its members), each once, or S times with MC dropout / sample;
- "tta": every combination of flips along the chosen (I, J, K) axes, flipped back on the output.

The methods are the sampling axes of `sampling_axes.py` (`AXES`: add one there), plus "softmax"; this file
derives from them what `predict` accepts and runs. Samples are (members x flips x S), nested in that order
(`sampling_axes.LEVELS`); each one is a full sliding-window pass, turned into
probabilities (after an optional logits transform, e.g. a calibrator) and folded into
`StreamingMoments`: peak memory is a few `(C, I, J, K)` arrays, independent of S, and grows
linearly with the number of voxels.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..common.errors import InputError
from .inference import check_finite_logits, predict_logits, probabilities_from_logits
from .models import ModelSpec
from ..common.progress import Progress
from .sampling_axes import AXES, DRAWS, INPUTS, NETWORKS, SINGLE_PASS, method_axes
from .sampling_axes import dropout_layers, mc_dropout_mode  # noqa: F401  (their home is sampling_axes; imported from here too)
from .uncertainty import StreamingMoments

METHODS = (SINGLE_PASS, *AXES)  # ("softmax", "mc_dropout", "sample", "ensemble", "tta"): also the order of a plan's name
STOCHASTIC = frozenset(name for name, axis in AXES.items() if axis.level == DRAWS)  # S seeded passes per network and flip


def parse_method(method: str) -> frozenset[str]:
    """'ensemble+tta' -> {'ensemble', 'tta'}; 'softmax' cannot be combined (it is the single-pass baseline)."""
    parts = frozenset(part.strip() for part in method.replace(",", "+").split("+") if part.strip())
    unknown = sorted(parts - set(METHODS))
    if not parts or unknown:
        raise InputError(f"unknown method {method!r}: expected one of {', '.join(METHODS)} or a combination like 'ensemble+tta'.")
    if "softmax" in parts and len(parts) > 1:
        raise InputError(f"method {method!r}: 'softmax' is the single deterministic pass and combines with nothing; drop it.")
    return parts


@dataclass(frozen=True)
class SamplingPlan:
    """What to sample: `methods` from `parse_method`, `samples` MC dropout passes / stochastic draws per
    network and flip, `seed` of the first such pass, `tta_axes` of the (I, J, K) image to flip."""

    methods: frozenset = frozenset({"softmax"})
    samples: int = 20
    seed: int = 0
    tta_axes: tuple[int, ...] = (0, 1, 2)

    def __post_init__(self):
        if self.samples < 1:
            raise InputError(f"--samples must be at least 1, found {self.samples}.")
        if not set(self.tta_axes) <= {0, 1, 2} or len(set(self.tta_axes)) != len(self.tta_axes):
            raise InputError(f"TTA axes {list(self.tta_axes)}: expected distinct axes among 0, 1, 2 (I, J, K).")

    @property
    def name(self) -> str:
        return "+".join(m for m in METHODS if m in self.methods)

    @property
    def passes_per_flip(self) -> int:
        return self.samples if self.methods & STOCHASTIC else 1

    @property
    def axes(self) -> list:
        """The plan's `SamplingAxis`es in nesting order (none for softmax)."""
        return method_axes(self.methods)

    def input_steps(self) -> list[tuple]:
        """One tuple per transform of the image, a step for each INPUTS axis (TTA: its flip); [()] without one."""
        return list(itertools.product(*(axis.steps(self) for axis in self.axes if axis.level == INPUTS)))

    def count(self, members: int) -> int:
        """Number of samples drawn from a model with `members` networks."""
        every_member = any(axis.level == NETWORKS for axis in self.axes)
        return (members if every_member else 1) * len(self.input_steps()) * self.passes_per_flip

    def to_json(self) -> dict:
        return {"method": self.name, "samples": self.samples, "seed": self.seed, "tta_axes": list(self.tta_axes)}


def default_plan(members: int) -> SamplingPlan:
    """What `predict` does without --method: average an ensemble's members, else one softmax pass."""
    return SamplingPlan(methods=frozenset({"ensemble"} if members > 1 else {"softmax"}))


def tta_warning(plan: SamplingPlan, spec: ModelSpec) -> str | None:
    """A warning when TTA flips axes the model was not trained to be invariant to (`flip_axes` in model.json).

    Measured: the bundled hippocampus models, trained without flips, drop from Dice 0.86 to 0.20 with
    all 8 flips of axes 0, 1, 2, and to 0.70-0.81 with a single axis, on 6 test cases.
    """
    if "tta" not in plan.methods:
        return None
    safe = set(spec.flip_axes or ())
    unsafe = [axis for axis in plan.tta_axes if axis not in safe]
    if not unsafe:
        return None
    declared = f"declares flip_axes {sorted(safe)}" if spec.flip_axes is not None else "does not declare flip_axes"
    return (f"model '{spec.name}' {declared}, but TTA flips axes {unsafe}: a network not trained with those flips can "
            "segment the flipped image badly and lower Dice; check on labelled cases, or use --tta-axes with safe axes.")


@contextlib.contextmanager
def seeded(seed: int, device):
    """Run with the global torch RNG seeded to `seed`, restoring the caller's RNG state afterwards."""
    import torch

    devices = [device] if getattr(device, "type", str(device)).startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def networks_to_sample(networks: list, plan: SamplingPlan, model_name: str, stochastic: bool = False) -> list:
    """The networks the plan uses (every member with a NETWORKS axis, else the first); checks, axis by axis in
    nesting order, that the model supports the plan's methods. `stochastic`: the spec declares the networks'
    forward random by design."""
    axes = plan.axes
    chosen = networks if any(axis.level == NETWORKS for axis in axes) else networks[:1]
    for axis in axes:
        if axis.check is not None:
            axis.check(chosen, model_name, stochastic)
    return chosen


def sample_probabilities(
    networks: list,
    spec: ModelSpec,
    image: np.ndarray,
    plan: SamplingPlan,
    device: str = "auto",
    logits_transform: Callable | None = None,
    on_sample: Callable | None = None,
    progress: Progress | None = None,
) -> tuple[StreamingMoments, dict]:
    """Draw `plan.count(len(networks))` samples of `(C, I, J, K)` probabilities for a `(C_in, I, J, K)` image.

    `logits_transform(logits) -> logits` is applied to every sample (a calibrator); `on_sample(index, label,
    probabilities)` sees every sample before it is aggregated (to save it). Returns the aggregate and
    timings: forward passes, aggregation, samples.
    """
    from .inference import resolve_device

    progress = progress or Progress("none")
    chosen = networks_to_sample(networks, plan, spec.name, stochastic=spec.stochastic)
    target = resolve_device(device)
    total = plan.count(len(networks))
    moments = StreamingMoments()
    forward_seconds = aggregate_seconds = 0.0
    index = 0
    inputs = [axis for axis in plan.axes if axis.level == INPUTS]
    draws = [axis for axis in plan.axes if axis.level == DRAWS]
    for member, network in enumerate(chosen):  # NETWORKS x INPUTS x DRAWS, outermost first
        with contextlib.ExitStack() as modes:
            for axis in draws:
                if axis.network_mode is not None:
                    modes.enter_context(axis.network_mode(network))
            for steps in plan.input_steps():
                transformed = image
                for axis, step in zip(inputs, steps):
                    transformed = axis.transform(transformed, step)
                for draw in range(plan.passes_per_flip):
                    label = sample_label(plan, member, len(chosen), steps, draw)
                    progress(f"{label} ({index + 1}/{total})", 0.1 + 0.7 * index / total)
                    started = time.perf_counter()
                    with contextlib.ExitStack() as one_pass:
                        if draws:
                            one_pass.enter_context(seeded(plan.seed + index, target))
                        options = {}
                        for axis in draws:
                            if axis.pass_mode is not None:
                                options.update(one_pass.enter_context(axis.pass_mode(network)))
                        logits = predict_logits(network, spec, transformed, device=device, sample=label, **options)
                    for axis, step in reversed(list(zip(inputs, steps))):
                        logits = axis.undo(logits, step)
                    if logits_transform is not None:
                        logits = logits_transform(logits)
                        check_finite_logits(logits, spec.name, label, logits_transform)
                    probabilities = probabilities_from_logits(logits, spec.activation)
                    del logits
                    forward_seconds += time.perf_counter() - started
                    if on_sample is not None:
                        on_sample(index, label, probabilities)
                    started = time.perf_counter()
                    moments.update(probabilities)
                    aggregate_seconds += time.perf_counter() - started
                    index += 1
    timings = {"forward_s": round(forward_seconds, 4), "aggregation_s": round(aggregate_seconds, 4), "samples": index}
    return moments, timings


def sample_label(plan: SamplingPlan, member: int, members: int, steps: tuple, draw: int) -> str:
    """Human-readable name of one sample, e.g. 'member 2/5, flip I+K, MC dropout sample 7/20' or '..., draw 3/10':
    a part per axis in nesting order; several DRAWS axes share their passes, and the first one names them.
    `steps`: one of `plan.input_steps()`, a step per INPUTS axis."""
    given = dict(zip((axis.name for axis in plan.axes if axis.level == INPUTS), steps))
    parts, drawn = [], False
    for axis in plan.axes:
        if axis.level == NETWORKS:
            parts.append(axis.describe(member, plan, members))
        elif axis.level == INPUTS:
            parts.append(axis.describe(given[axis.name], plan, members))
        elif not drawn:
            parts.append(axis.describe(draw, plan, members))
            drawn = True
    return ", ".join(parts) or "inference"
