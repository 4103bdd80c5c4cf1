"""common/csv_tables.py writes what Python's csv module writes, common/plots.py selects Agg, and no other module does either by hand."""

import ast
import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from UncertaintySegLib.common.csv_tables import write_csv
from UncertaintySegLib.common.plots import pyplot

MODULE = Path(__file__).resolve().parents[1] / "UncertaintySeg"
LIB = MODULE / "UncertaintySegLib"
COLUMNS = ["name", "value", "count", "flag", "note"]
TRICKY = [  # quoting, separators, line breaks, non-ASCII, None, NaN, numpy floats, bools
    {"name": "plain", "value": 0.1 + 0.2, "count": 3, "flag": True, "note": None},
    {"name": 'comma, "quote"', "value": math.nan, "count": 0, "flag": False, "note": "line\nbreak"},
    {"name": "caf\u00e9 \u2013 r\u00e9gion", "value": np.float64(1 / 3), "count": np.int64(7), "flag": None, "note": ""},
    {"name": "tiny", "value": 1e-20, "count": -1, "flag": True, "note": " spaced "},
]


def oracle(path: Path, rows: list[dict], convert=lambda value: value) -> bytes:
    """What the project's hand-written writers did: csv.DictWriter on open(path, "w", newline="")."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({key: "" if value is None else convert(value) for key, value in row.items()} for row in rows)
    return path.read_bytes()


@dataclass
class Record:
    name: str
    value: float | None
    count: int
    flag: bool | None
    note: str | None


def test_dict_rows_are_byte_identical_to_csv_dictwriter(tmp_path):
    written = write_csv(tmp_path / "helper.csv", TRICKY, COLUMNS)
    assert written == tmp_path / "helper.csv"
    assert written.read_bytes() == oracle(tmp_path / "oracle.csv", TRICKY)
    assert written.read_bytes().count(b"\r\n") >= len(TRICKY) + 1  # csv's default line ending


def test_list_and_dataclass_rows_are_byte_identical_too(tmp_path):
    expected = oracle(tmp_path / "oracle.csv", TRICKY)
    lists = write_csv(tmp_path / "lists.csv", ([row[c] for c in COLUMNS] for row in TRICKY), COLUMNS)
    records = write_csv(tmp_path / "records.csv", [Record(**row) for row in TRICKY], Record.__dataclass_fields__)
    assert lists.read_bytes() == expected
    assert records.read_bytes() == expected


@pytest.mark.parametrize("float_format, convert", [(".6g", lambda v: f"{v:.6g}" if isinstance(v, float) else v),
                                                   (repr, lambda v: repr(v) if isinstance(v, float) else v)])
def test_float_format_matches_formatting_by_hand(tmp_path, float_format, convert):
    written = write_csv(tmp_path / "helper.csv", TRICKY, COLUMNS, float_format=float_format)
    assert written.read_bytes() == oracle(tmp_path / "oracle.csv", TRICKY, convert)


def test_missing_keys_are_empty_and_unknown_keys_are_refused_as_dictwriter_does(tmp_path):
    rows = [{"name": "only a name"}]
    assert write_csv(tmp_path / "helper.csv", rows, COLUMNS).read_bytes() == oracle(tmp_path / "oracle.csv", rows)
    with pytest.raises(ValueError, match="not in fieldnames"):
        write_csv(tmp_path / "extra.csv", [{"name": "x", "surprise": 1}], COLUMNS)


def test_no_rows_writes_the_header_only(tmp_path):
    assert write_csv(tmp_path / "empty.csv", [], COLUMNS).read_bytes() == b"name,value,count,flag,note\r\n"


def test_pyplot_selects_the_agg_backend():
    plt = pyplot()
    import matplotlib
    import matplotlib.pyplot

    assert plt is matplotlib.pyplot
    assert matplotlib.get_backend().lower() == "agg"


def _library_modules():
    files = sorted(MODULE.rglob("*.py"))
    assert LIB / "common" / "csv_tables.py" in files and LIB / "common" / "plots.py" in files
    return files


def _hand_written(path: Path) -> tuple[list[str], list[str]]:
    """(csv.writer/csv.DictWriter uses, matplotlib.use calls) in one file, as 'line: what'."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    writers, backends = [], []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "csv" and node.attr in ("writer", "DictWriter"):
                writers.append(f"{node.lineno}: csv.{node.attr}")
            if node.value.id == "matplotlib" and node.attr == "use":
                backends.append(f"{node.lineno}: matplotlib.use")
        if isinstance(node, ast.ImportFrom) and node.module in ("csv", "matplotlib"):
            for alias in node.names:
                if (node.module, alias.name) in (("csv", "writer"), ("csv", "DictWriter")):
                    writers.append(f"{node.lineno}: from csv import {alias.name}")
                if (node.module, alias.name) == ("matplotlib", "use"):
                    backends.append(f"{node.lineno}: from matplotlib import use")
    by_line = lambda found: sorted(found, key=lambda entry: int(entry.split(":")[0]))
    return by_line(writers), by_line(backends)


def test_csv_files_are_written_only_by_common_csv_tables():
    found = {str(path.relative_to(MODULE)): writers for path in _library_modules()
             if path != LIB / "common" / "csv_tables.py" and (writers := _hand_written(path)[0])}
    assert not found, f"write CSV with UncertaintySegLib.common.csv_tables.write_csv instead: {found}"


def test_the_matplotlib_backend_is_chosen_only_by_common_plots():
    found = {str(path.relative_to(MODULE)): backends for path in _library_modules()
             if path != LIB / "common" / "plots.py" and (backends := _hand_written(path)[1])}
    assert not found, f"get pyplot from UncertaintySegLib.common.plots.pyplot() instead: {found}"


def test_the_static_check_sees_a_hand_written_writer(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import csv\nimport matplotlib\nmatplotlib.use('Agg')\nw = csv.writer(open('x', 'w'))\n"
                      "from csv import DictWriter\n", encoding="utf-8")
    assert _hand_written(sample) == (["4: csv.writer", "5: from csv import DictWriter"], ["3: matplotlib.use"])
