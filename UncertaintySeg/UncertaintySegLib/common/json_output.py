"""The JSON UncertaintySeg writes is always valid JSON: NaN and infinities become null (a bare NaN,
which Python's json writes by default, is refused by every other JSON reader).

    write_json(folder / "metrics.json", document)   # indented, one trailing newline
    print(json_text(summary), end="")
"""

from __future__ import annotations

import json
import math
import numbers
from pathlib import Path

import numpy as np


def without_nan(value):
    """`value` with every non-finite float (NaN, inf; numpy's too) replaced by None, numpy scalars as Python's."""
    if isinstance(value, dict):
        return {key: without_nan(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_nan(item) for item in value]
    if isinstance(value, np.generic):  # numpy scalars (np.float32, np.int64, np.bool_) as Python numbers
        value = value.item()
    if isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else None
    return value


def json_text(value, default=None, indent: int | None = 2) -> str:
    """`value` as JSON text (indented, with a trailing newline when indented), non-finite floats as null."""
    text = json.dumps(without_nan(value), indent=indent, allow_nan=False, default=default)
    return text + "\n" if indent is not None else text


def write_json(path: Path, value, default=None) -> Path:
    """Write `value` to `path` as indented, valid JSON (see `json_text`)."""
    path.write_text(json_text(value, default=default))
    return path
