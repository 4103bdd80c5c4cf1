"""The one CSV writer: a header row, then one row per record, through Python's `csv` module.

Every CSV the project writes goes through `write_csv`, so they all share one format: `csv`'s
default dialect (comma-separated, minimal quoting, "\\r\\n" line endings), the platform's default
text encoding (as `open` without `encoding=` gives), empty cells for None, and floats as `csv`
writes them (`repr`) unless `float_format` says otherwise.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path


def _cells(row, columns: list[str]) -> list:
    """A record as a list of values in `columns` order: a mapping (missing keys: empty cells;
    keys not in `columns`: ValueError, as `csv.DictWriter` does), a dataclass instance (its
    fields), or a sequence of values already in column order."""
    if dataclasses.is_dataclass(row) and not isinstance(row, type):
        row = dataclasses.asdict(row)
    if isinstance(row, Mapping):
        extra = [key for key in row if key not in columns]
        if extra:
            raise ValueError(f"dict contains fields not in fieldnames: {', '.join(repr(key) for key in extra)}")
        return [row.get(column, "") for column in columns]
    return list(row)


def _cell(value, float_format):
    if value is None:
        return ""
    if float_format is not None and isinstance(value, float):
        return float_format(value) if callable(float_format) else format(value, float_format)
    return value


def write_csv(path: Path, rows: Iterable, columns: Iterable[str], *,
              float_format: str | Callable[[float], str] | None = None) -> Path:
    """Write `columns` as the header and then every record of `rows` (mappings, dataclass instances,
    or sequences in column order); None is an empty cell. Floats (numpy's float64 too) are written
    as `format(value, float_format)` when it is a format spec (e.g. ".6g"), as `float_format(value)`
    when it is a function (e.g. `repr`), else as `csv` writes them. Returns `path`."""
    columns = list(columns)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows([_cell(value, float_format) for value in _cells(row, columns)] for row in rows)
    return Path(path)
