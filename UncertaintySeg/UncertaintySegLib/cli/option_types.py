"""argparse `type=` functions for the command line's options: a bad value exits 2 with one line that says what was
expected and what was found ("argument --seed: expected an integer from 0 to 4294967295, found '1e23'"), before
any work starts, instead of a Python error later.

    parser.add_argument("--seed", type=seed, default=0)
    parser.add_argument("--epochs", type=at_least(1), default=50)
    parser.add_argument("--device", type=device, default="auto")
"""

from __future__ import annotations

import argparse
import math

SEED_MAX = 2**32 - 1  # numpy's legacy seeds and most RNGs take 32 bits; torch.manual_seed takes up to 2**64 - 1
DEVICE_FORMS = "auto, cpu, cuda, cuda:N or mps"


def seed(text: str) -> int:
    """A seed numpy and torch both take: an integer in 0..2**32 - 1."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to {SEED_MAX}, found {text!r}")
    return value


def at_least(minimum: int):
    """An integer >= `minimum` (e.g. --epochs, --samples, --members)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer of at least {minimum}, found {text!r}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def probability(text: str) -> float:
    """A finite number in [0, 1) (a dropout probability)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), found {text!r}")
    return value


def flag_threshold(text: str) -> str:
    """--flag-threshold: a finite number >= 0 (mean segment entropy), or the path of a thresholds.json; kept as text
    (`predict.segment_scores.read_thresholds` reads it)."""
    try:
        value = float(text)
    except ValueError:
        return text  # a thresholds.json, read when the run starts
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0 or a thresholds.json, found {text!r}")
    return text


def available_devices() -> list[str]:
    """The devices this machine has, as --device names them."""
    names = ["auto", "cpu"]
    try:
        import torch
    except ImportError:
        return names
    if torch.cuda.is_available():
        names += ["cuda", *(f"cuda:{index}" for index in range(torch.cuda.device_count()))]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    return names


def device(text: str) -> str:
    """auto, cpu, cuda, cuda:N or mps, and present on this machine (auto and cpu are, without importing torch)."""
    name = text.strip().lower()
    if name in ("auto", "cpu"):
        return name
    index = name[len("cuda:"):] if name.startswith("cuda:") else None
    if name not in ("cuda", "mps") and not (index is not None and index.isdigit()):
        raise argparse.ArgumentTypeError(f"expected {DEVICE_FORMS}, found {text!r}; available here: {', '.join(available_devices())}")
    available = available_devices()
    if name not in available:
        if name.startswith("cuda"):
            gpus = [device for device in available if device.startswith("cuda:")]
            why = f"{len(gpus)} CUDA GPU(s): {', '.join(gpus)}" if gpus else "no CUDA GPU"
        else:
            why = "no MPS (Apple GPU) in this PyTorch"
        raise argparse.ArgumentTypeError(f"{text!r} is not available here ({why}); available: {', '.join(available)}")
    return name
