"""The README's Python section runs as written, on a real hippocampus case, using only the public API."""

import ast
import re
from pathlib import Path

import pytest

import UncertaintySegLib

REPOSITORY = Path(__file__).resolve().parents[1]


def readme_python_block() -> str:
    section = (REPOSITORY / "README.md").read_text(encoding="utf-8").split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


def test_the_readme_python_section_imports_only_public_names():
    imported = [alias.name for node in ast.walk(ast.parse(readme_python_block())) if isinstance(node, ast.ImportFrom)
                for alias in node.names if node.module == "UncertaintySegLib"]
    others = [node for node in ast.walk(ast.parse(readme_python_block())) if isinstance(node, (ast.Import, ast.ImportFrom))
              and getattr(node, "module", None) != "UncertaintySegLib"]
    assert imported and set(imported) <= set(UncertaintySegLib.__all__) and not others


def test_the_readme_python_section_runs_on_a_real_case(data_root, tmp_path, monkeypatch, capsys):
    task = Path(data_root) / "Task04_Hippocampus"
    if not (task / "imagesTr" / "hippocampus_003.nii.gz").is_file():
        pytest.skip(f"hippocampus_003 not in {task}: the README's example reads it")
    monkeypatch.chdir(tmp_path)
    code = readme_python_block().replace('"imagesTr/', f'"{task}/imagesTr/').replace('"labelsTr/', f'"{task}/labelsTr/')
    names = {}
    exec(compile(code, "README.md ## Python", "exec"), names)
    dice, ece = map(float, capsys.readouterr().out.split())
    assert 0.5 < dice <= 1 and 0 <= ece < 0.5
    assert names["prediction"].mutual_information is not None and (tmp_path / "hippocampus-ts" / "calibrator.json").is_file()
    assert names["calibrated"].probabilities.shape == names["prediction"].probabilities.shape
