"""Which Python packages the panel still needs, and installing them after asking; free of Qt and of slicer.

Slicer loads the module without these (nothing here or in the module imports them at import time);
the first Apply (or Fit) checks them:

    plan = installPlan()                                   # what is missing or too old
    installMissing(plan, confirm=slicer.util.confirmOkCancelDisplay, installTorch=..., pipInstall=slicer.util.pip_install)

PyTorch comes through the PyTorch extension's `PyTorchUtils` (it picks the build for the GPU and
driver it finds); the rest with pip. The minimum versions are the core library's (pyproject.toml).
"""

import importlib.metadata
import importlib.util
import re
from dataclasses import dataclass, field

# import name -> (distribution name, minimum version); torch is installed by PyTorchUtils, the rest by pip
REQUIREMENTS = {
    "torch": ("torch", "2.1"),
    "monai": ("monai", "1.4"),
    "SimpleITK": ("SimpleITK", "2.3"),
    "numba": ("numba", "0.59"),
    "scipy": ("scipy", "1.10"),
    "pydantic": ("pydantic", "2.5"),
}
TORCH = "torch"


@dataclass(frozen=True)
class MissingPackage:
    importName: str
    requirement: str  # e.g. "monai>=1.4"
    installed: str = None  # the installed version when it is too old; None when absent

    def describe(self):
        return f"{self.requirement} (installed: {self.installed})" if self.installed else self.requirement


@dataclass
class InstallPlan:
    """`torch`: the missing or outdated PyTorch (None when fine); `pip`: the rest."""

    torch: MissingPackage = None
    pip: list = field(default_factory=list)

    def __bool__(self):
        return self.torch is not None or bool(self.pip)

    @property
    def pipRequirements(self):
        return [package.requirement for package in self.pip]

    @property
    def torchVersionRequirement(self):
        return self.torch.requirement[len(TORCH):] if self.torch is not None else None

    def question(self):
        """What the user is asked before anything is installed."""
        lines = ["UncertaintySeg needs Python packages that are missing or too old in this Slicer:"]
        if self.torch is not None:
            lines.append(f"- PyTorch: {self.torch.describe()}, installed through the PyTorch extension")
        lines += [f"- {package.describe()}, installed with pip" for package in self.pip]
        lines.append("Install them now? This downloads up to a few GB (PyTorch is the large one) and may take several minutes.")
        if any(package.installed for package in [self.torch, *self.pip] if package is not None):
            lines.append("Restart Slicer afterwards, so that the upgraded packages are the ones loaded.")
        return "\n".join(lines)


def versionTuple(text):
    """'2.13.0+cpu' -> (2, 13, 0); the leading numbers of a version, for comparing with a minimum."""
    numbers = []
    for part in str(text).split("."):
        match = re.match(r"\d+", part)
        if not match:
            break
        numbers.append(int(match.group()))
        if match.end() < len(part):
            break
    return tuple(numbers)


def installedVersion(distribution):
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def missingPackages(requirements=None, findSpec=importlib.util.find_spec, version=installedVersion):
    """The requirements that are not importable, or whose installed version is below the minimum."""
    missing = []
    for importName, (distribution, minimum) in (requirements or REQUIREMENTS).items():
        requirement = f"{distribution}>={minimum}"
        if findSpec(importName) is None:
            missing.append(MissingPackage(importName, requirement))
            continue
        installed = version(distribution)
        if installed is not None and versionTuple(installed) < versionTuple(minimum):
            missing.append(MissingPackage(importName, requirement, installed))
    return missing


def installPlan(missing=None):
    """An `InstallPlan` for `missing` (default: `missingPackages()`)."""
    missing = missingPackages() if missing is None else missing
    torch = next((package for package in missing if package.importName == TORCH), None)
    return InstallPlan(torch, [package for package in missing if package.importName != TORCH])


def installMissing(plan, confirm, installTorch, pipInstall):
    """Ask once (`confirm(question) -> bool`), then install: `installTorch(versionRequirement)` must return the torch
    module or None (PyTorchUtils' convention), `pipInstall(requirements)` takes them as one space-separated string (Slicer's pip_install).

    True when everything is in place (or nothing was missing); False when the user declined. Raises RuntimeError
    when PyTorch could not be installed.
    """
    if not plan:
        return True
    if not confirm(plan.question()):
        return False
    if plan.torch is not None and installTorch(plan.torchVersionRequirement) is None:
        raise RuntimeError("PyTorch was not installed: install it from the PyTorch Util module (PyTorch extension), then "
                           "click Apply again.")
    if plan.pip:
        pipInstall(" ".join(plan.pipRequirements))  # no quotes: pip gets them as arguments, no shell between
    return True
