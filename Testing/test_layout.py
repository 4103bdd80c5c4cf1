"""The tree reads like the data flow, and the README's layout says what is really there.

Stages, lowest first: an import may run to its own stage or a lower one, never up (ARCHITECTURE.md).
Imports are read from the source (every `import`/`from` statement, inside functions too), not run.
"""

import ast
import re
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
MODULE = REPOSITORY / "UncertaintySeg"
CORE_STAGES = ("common", "data", "predict", "evaluation", "training", "calibration", "analysis", "cli")
SLICER_STAGES = ("mrml", "analysis", "panel")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(MODULE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module of this project that `path` imports (absolute dotted names)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{alias.name}" for alias in node.names]
            found.update(name if MODULES.get(name) else target for name in names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] in ("UncertaintySegLib", "UncertaintySegSlicer")}


MODULES = {module_name(p): p for p in MODULE.rglob("*.py") if p.parent != MODULE}
GRAPH = {name: imports_of(path) for name, path in MODULES.items()}


def stage(name: str, root: str, stages: tuple) -> int | None:
    parts = name.split(".")
    return stages.index(parts[1]) if parts[0] == root and len(parts) > 1 and parts[1] in stages else None


def test_no_import_cycles():
    """Depth-first search over the module graph (a package's `__init__` counts as the package)."""
    state, cycles = {}, []

    def visit(name, trail):
        state[name] = "open"
        for target in sorted(GRAPH.get(name, ())):
            if target not in GRAPH or target in name.split("."):  # a package's own face
                continue
            if state.get(target) == "open":
                cycles.append(" -> ".join(trail[trail.index(target):] + [target]))
            elif target not in state:
                visit(target, trail + [target])
        state[name] = "done"

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])
    faces = {name for name, path in MODULES.items() if path.name == "__init__.py"}
    real = [cycle for cycle in cycles if not any(part in faces for part in cycle.split(" -> ")[1:-1])]
    assert real == []


def upward_imports(root: str, stages: tuple) -> list[str]:
    """`a -> b` for every import from a module of stage `root.<stage>` into a higher stage of `root`."""
    found = []
    for name, targets in GRAPH.items():
        own = stage(name, root, stages)
        for target in targets:
            theirs = stage(target, root, stages)
            if own is not None and theirs is not None and theirs > own:
                found.append(f"{name} -> {target}")
    return sorted(found)


def test_imports_never_run_up_the_stages():
    assert upward_imports("UncertaintySegLib", CORE_STAGES) == []
    assert upward_imports("UncertaintySegSlicer", SLICER_STAGES) == []


def test_nothing_outside_cli_imports_cli():
    """Command files are glue: the core's other stages, the Slicer layer and the module file never import them."""
    outside = {name: targets for name, targets in GRAPH.items() if not name.startswith("UncertaintySegLib.cli")}
    outside["UncertaintySeg"] = imports_of(MODULE / "UncertaintySeg.py")
    assert sorted(f"{name} -> {target}" for name, targets in outside.items() for target in targets
                  if target.startswith("UncertaintySegLib.cli")) == []


def readme_layout() -> dict[str, set[str]]:
    """The README's Development block: `  folder/  what it holds: module, module, ...` -> {folder: {modules}}."""
    text = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    block = text.split("## Development", 1)[1].split("```", 2)[1]
    listed, folder, current = {}, None, None
    for line in block.splitlines():
        match = re.match(r"^(UncertaintySeg/\S+/)\s", line)
        if match:
            folder = match.group(1)
            continue
        match = re.match(r"^  (\S+/)\s+[^:]*:\s*(.*)$", line)
        if match and folder:
            current = folder + match.group(1)
            listed[current] = {name.strip() for name in match.group(2).split(",") if name.strip()}
        elif listed and line.startswith(" " * 6) and current:
            listed[current] |= {name.strip() for name in line.split(",") if name.strip()}
        else:
            current = None
    return listed


def test_the_readme_layout_names_every_package_and_module_of_the_tree():
    listed = readme_layout()
    actual = {}
    for root in ("UncertaintySegLib", "UncertaintySegSlicer"):
        for path in sorted((MODULE / root).rglob("*.py")):
            if path.parent != MODULE / root:
                folder = str(path.parent.relative_to(REPOSITORY)) + "/"
                top = folder if path.parent.parent == MODULE / root else str(path.parent.parent.relative_to(REPOSITORY)) + "/"
                name = path.stem if top == folder else f"{path.parent.name}/{path.stem}"
                if path.name != "__init__.py":
                    actual.setdefault(top, set()).add(name)
    assert listed == actual


def test_the_public_api_resolves_every_name_without_importing_torch():
    import subprocess
    import sys

    code = ("import sys, UncertaintySegLib as api; assert 'torch' not in sys.modules, 'import pulled torch'; "
            "missing = [n for n in api.__all__ if getattr(api, n, None) is None]; assert not missing, missing; "
            "undocumented = [n for n in api.__all__[1:] if not getattr(api, n).__doc__]; assert not undocumented, undocumented")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=MODULE)
    assert result.returncode == 0, result.stderr
