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

Samples are (members x flips x S); each one is a full sliding-window pass, turned into
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
from .uncertainty import StreamingMoments

METHODS = ("softmax", "mc_dropout", "sample", "ensemble", "tta")
STOCHASTIC = frozenset({"mc_dropout", "sample"})  # methods drawing S seeded passes per network and flip


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

    def flips(self) -> list[tuple[int, ...]]:
        """Axis subsets to flip: [()] without TTA, else all 2^k subsets of `tta_axes` (identity first)."""
        if "tta" not in self.methods:
            return [()]
        return [subset for size in range(len(self.tta_axes) + 1) for subset in itertools.combinations(self.tta_axes, size)]

    def count(self, members: int) -> int:
        """Number of samples drawn from a model with `members` networks."""
        return (members if "ensemble" in self.methods else 1) * len(self.flips()) * self.passes_per_flip

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


def dropout_layers(network) -> list[str]:
    """Names of the dropout modules with p > 0 of a torch network (MONAI builds p = 0 ones when dropout is off)."""
    import torch

    return [name for name, module in network.named_modules()
            if isinstance(module, torch.nn.modules.dropout._DropoutNd) and module.p > 0]


@contextlib.contextmanager
def mc_dropout_mode(network):
    """Network in eval mode except its dropout layers; every module's mode is restored on exit."""
    import torch

    modes = {module: module.training for module in network.modules()}
    network.eval()
    for module in network.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd):
            module.train()
    try:
        yield network
    finally:
        for module, training in modes.items():
            module.train(training)


@contextlib.contextmanager
def seeded(seed: int, device):
    """Run with the global torch RNG seeded to `seed`, restoring the caller's RNG state afterwards."""
    import torch

    devices = [device] if getattr(device, "type", str(device)).startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def networks_to_sample(networks: list, plan: SamplingPlan, model_name: str, stochastic: bool = False) -> list:
    """The networks the plan uses; checks that the model supports the plan's methods.
    `stochastic`: the spec declares the networks' forward random by design."""
    if "ensemble" in plan.methods and len(networks) < 2:
        raise InputError(
            f"method 'ensemble' needs a model with several members; '{model_name}' has 1 network. "
            "Use an ensemble model (e.g. hippocampus-dice, hippocampus-ce) or give several models to --model."
        )
    chosen = networks if "ensemble" in plan.methods else networks[:1]
    if "mc_dropout" in plan.methods:
        for network in chosen:
            if not hasattr(network, "named_modules") or not dropout_layers(network):
                raise InputError(
                    f"method 'mc_dropout' needs dropout layers, and model '{model_name}' has none. Insert some with "
                    "--insert-dropout decoder|center (or `uncertaintyseg insert-dropout ... --retrain`), or use ensemble/tta."
                )
    if "sample" in plan.methods and not stochastic:
        for network in chosen:
            if not callable(getattr(network, "sample", None)):
                raise InputError(
                    f"method 'sample' needs a stochastic model, and model '{model_name}' ({type(network).__name__}) has no "
                    "sample(x) method and is not declared \"stochastic\": true in model.json. Use a model that draws "
                    "samples (e.g. a ProbabilisticUNet), mark a random-by-design network stochastic, or use mc_dropout/ensemble/tta."
                )
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
    import torch

    from .inference import resolve_device

    progress = progress or Progress("none")
    chosen = networks_to_sample(networks, plan, spec.name, stochastic=spec.stochastic)
    target = resolve_device(device)
    total = plan.count(len(networks))
    moments = StreamingMoments()
    forward_seconds = aggregate_seconds = 0.0
    index = 0
    for member, network in enumerate(chosen):
        mode = mc_dropout_mode(network) if "mc_dropout" in plan.methods else contextlib.nullcontext()
        draws = "sample" in plan.methods and callable(getattr(network, "sample", None))
        with mode:
            for flip in plan.flips():
                flipped = np.ascontiguousarray(np.flip(image, axis=[a + 1 for a in flip])) if flip else image
                for draw in range(plan.passes_per_flip):
                    label = sample_label(plan, member, len(chosen), flip, draw)
                    progress(f"{label} ({index + 1}/{total})", 0.1 + 0.7 * index / total)
                    started = time.perf_counter()
                    rng = seeded(plan.seed + index, target) if plan.methods & STOCHASTIC else contextlib.nullcontext()
                    shared = network.shared_latent_noise() if draws and hasattr(network, "shared_latent_noise") else contextlib.nullcontext()
                    with rng, shared:
                        logits = predict_logits(network, spec, flipped, device=device, draw=draws, sample=label)
                    if flip:
                        logits = torch.flip(logits, dims=[a + 1 for a in flip])
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


def sample_label(plan: SamplingPlan, member: int, members: int, flip: tuple[int, ...], draw: int) -> str:
    """Human-readable name of one sample, e.g. 'member 2/5, flip I+K, MC dropout sample 7/20' or '..., draw 3/10'."""
    parts = []
    if "ensemble" in plan.methods:
        parts.append(f"member {member + 1}/{members}")
    if "tta" in plan.methods:
        parts.append("flip " + ("+".join("IJK"[a] for a in flip) if flip else "none"))
    if "mc_dropout" in plan.methods:
        parts.append(f"MC dropout sample {draw + 1}/{plan.samples}")
    elif "sample" in plan.methods:
        parts.append(f"draw {draw + 1}/{plan.samples}")
    return ", ".join(parts) or "inference"
