"""The panel's dependency check (what is missing or too old, what to install, asking first), without Slicer."""

import re
import tomllib
from pathlib import Path

import pytest

from UncertaintySegSlicer.panel.dependencies import (REQUIREMENTS, InstallPlan, MissingPackage, installMissing, installPlan,
                                               missingPackages, versionTuple)

REPOSITORY = Path(__file__).resolve().parents[1]


def test_version_tuples_compare_release_numbers():
    assert versionTuple("2.13.0+cpu") == (2, 13, 0)
    assert versionTuple("1.4rc1") == (1, 4)
    assert versionTuple("0.60.0") > versionTuple("0.59") > versionTuple("0.58.1")
    assert versionTuple("2.10") > versionTuple("2.9.9")
    assert versionTuple("") == ()


def test_missing_and_outdated_packages_are_found():
    installed = {"torch": "2.0.1", "monai": "1.6.1", "SimpleITK": None, "scipy": "1.16.0"}
    missing = missingPackages(findSpec=lambda name: None if name == "numba" else object(), version=installed.get)
    assert missing == [MissingPackage("torch", "torch>=2.1", "2.0.1"), MissingPackage("numba", "numba>=0.59")]
    # a package importable without metadata (Slicer's own SimpleITK) counts as present
    assert all(package.importName != "SimpleITK" for package in missing)


def test_plan_installs_torch_through_pytorch_and_the_rest_with_pip():
    plan = installPlan([MissingPackage("monai", "monai>=1.4"), MissingPackage("torch", "torch>=2.1"),
                        MissingPackage("scipy", "scipy>=1.10", "1.9.3")])
    assert plan and plan.torch.importName == "torch" and plan.torchVersionRequirement == ">=2.1"
    assert plan.pipRequirements == ["monai>=1.4", "scipy>=1.10"]
    question = plan.question()
    assert "PyTorch: torch>=2.1, installed through the PyTorch extension" in question
    assert "monai>=1.4, installed with pip" in question and "scipy>=1.10 (installed: 1.9.3)" in question
    assert "Restart Slicer" in question  # an upgrade of an imported package needs a restart
    assert not installPlan([]) and "Restart" not in installPlan([MissingPackage("monai", "monai>=1.4")]).question()


def test_installing_asks_once_then_installs_torch_first_and_the_rest_with_pip():
    calls = []
    plan = installPlan([MissingPackage("torch", "torch>=2.1"), MissingPackage("monai", "monai>=1.4"),
                        MissingPackage("numba", "numba>=0.59")])
    done = installMissing(plan, confirm=lambda text: calls.append(("ask", text)) or True,
                          installTorch=lambda requirement: calls.append(("torch", requirement)) or "torch module",
                          pipInstall=lambda requirements: calls.append(("pip", requirements)))
    assert done and [call[0] for call in calls] == ["ask", "torch", "pip"]
    assert calls[1:] == [("torch", ">=2.1"), ("pip", "monai>=1.4 numba>=0.59")]


def test_nothing_is_installed_when_the_user_declines_or_nothing_is_missing():
    def refuse(*args):
        raise AssertionError("must not install")

    plan = installPlan([MissingPackage("monai", "monai>=1.4")])
    assert installMissing(plan, confirm=lambda text: False, installTorch=refuse, pipInstall=refuse) is False
    assert installMissing(InstallPlan(), confirm=refuse, installTorch=refuse, pipInstall=refuse) is True


def test_a_failed_pytorch_install_says_where_to_install_it():
    plan = installPlan([MissingPackage("torch", "torch>=2.1"), MissingPackage("monai", "monai>=1.4")])
    pipCalls = []
    with pytest.raises(RuntimeError, match="PyTorch Util module"):
        installMissing(plan, confirm=lambda text: True, installTorch=lambda requirement: None, pipInstall=pipCalls.append)
    assert pipCalls == []


def test_requirements_are_the_core_librarys():
    """The panel asks for what pyproject.toml declares, at the same minimum versions."""
    declared = {}
    for line in tomllib.loads((REPOSITORY / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]:
        name, minimum = re.match(r"([A-Za-z0-9_.-]+)>=([\d.]+)", line).groups()
        declared[name.lower()] = minimum
    for importName, (distribution, minimum) in REQUIREMENTS.items():
        assert declared[distribution.lower()] == minimum, distribution
    assert {"torch", "monai", "simpleitk", "numba", "scipy", "pydantic"} == {d.lower() for d, _ in REQUIREMENTS.values()}


def test_this_environment_has_everything_the_panel_needs():
    assert not installPlan(), installPlan().question()
