"""Every post-hoc calibration method by its `--method` name, in one registry: the logit calibrators (`Calibrator`
subclasses, which register themselves in `base.CALIBRATORS`) and last-layer fine-tuning (which retrains the
network instead of mapping its logits).

`calibrate`'s choices, `compare`'s methods, the panel's menu and loading a saved calibrator all read
`calibration_methods()`. A new calibrator is one new file in this package, a `Calibrator` subclass setting `method`,
`title`, `order` and (to be offered in the panel) `panel_label`, and its test. Importing the families is cheap:
they import torch only to fit or apply.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from ..common.errors import InputError
from .base import CALIBRATORS, Calibrator


def calibration_methods() -> dict[str, type]:
    """name -> estimator class of every method, in `order` (temperature first)."""
    from .finetune import LastLayerFineTuning

    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):  # a family registers its classes when imported
        importlib.import_module(f"{__package__}.{module.name}")
    everything = {**CALIBRATORS, LastLayerFineTuning.method: LastLayerFineTuning}
    return dict(sorted(everything.items(), key=lambda item: item[1].order))


def logit_calibrators() -> dict[str, type]:
    """The methods that map logits to calibrated logits (every one but fine-tuning)."""
    return {name: cls for name, cls in calibration_methods().items() if issubclass(cls, Calibrator)}


def make_calibrator(method: str, settings: dict | None = None, ignore_others: bool = False):
    """The unfitted estimator `method` names, built with `settings` (its constructor's argument names).

    `ignore_others`: drop the settings its constructor does not take (one set of command options serves
    every method); else such a setting is an InputError naming what the method takes.
    """
    import inspect

    methods = calibration_methods()
    if method not in methods:
        raise InputError(f"unknown calibration method {method!r}: expected one of {', '.join(methods)}.")
    cls = methods[method]
    accepted = [name for name in inspect.signature(cls.__init__).parameters if name != "self"]
    settings = dict(settings or {})
    unknown = sorted(set(settings) - set(accepted))
    if unknown and not ignore_others:
        raise InputError(f"calibration method '{method}' has no setting {', '.join(unknown)}: expected some of {', '.join(accepted)}.")
    return cls(**{name: value for name, value in settings.items() if name in accepted})
