"""`load_model`: a model by bundled name, folder, model.json, weights file or MONAI bundle folder.

    model = load_model("hippocampus")                       # a bundled model (Resources/Models/<name>)
    model = load_model("my_model/model.json")               # a spec with its weights beside it
    model = load_model("bundle_folder", trust_bundle=False) # a MONAI bundle, read as data

Above both `models.py` (specs and networks) and `bundle.py` (MONAI bundles), which it dispatches to.
"""

from __future__ import annotations

from pathlib import Path

from ..common.errors import ModelError
from .bundle import load_bundle
from .models import LoadedModel, load_network, read_spec

BUNDLED_MODELS_DIR = Path(__file__).resolve().parents[2] / "Resources" / "Models"


def bundled_model_names() -> list[str]:
    """Names of the models shipped in Resources/Models (folders with a model.json), sorted."""
    if not BUNDLED_MODELS_DIR.is_dir():
        return []
    return sorted(p.name for p in BUNDLED_MODELS_DIR.iterdir() if (p / "model.json").is_file())


def load_model(model: str | Path, trust_bundle: bool = False) -> LoadedModel:
    """Load a bundled model by name, a folder with `model.json`, a `model.json` file, a MONAI
    bundle folder, or a weights file (TorchScript or state_dict) with a `model.json` beside it.

    A MONAI bundle's config is read as data unless `trust_bundle` (`--trust-bundle`): then MONAI's
    ConfigParser runs it, `$` expressions and any `_target_` included (see `bundle.py`)."""
    path = Path(model)
    if not path.exists():
        if path.name == str(model) and model in bundled_model_names():
            path = BUNDLED_MODELS_DIR / str(model)
        else:
            names = ", ".join(bundled_model_names()) or "none installed"
            raise ModelError(
                f"model '{model}' not found: expected a bundled model name ({names}), a folder with model.json, "
                "a model.json file, a MONAI bundle folder, or a TorchScript file."
            )
    if path.is_dir() and (path / "configs").is_dir() and not (path / "model.json").exists():
        return load_bundle(path, trust_bundle=trust_bundle)
    if path.is_dir():
        spec_path = path / "model.json"
    elif path.suffix == ".json":
        spec_path = path
    else:
        spec_path = path.parent / "model.json"
        if not spec_path.exists():
            raise ModelError(
                f"'{path}' has no model.json beside it: a TorchScript file needs a spec that names its classes, "
                "input channels, ROI size and normalization. Write one (see the README) next to the file."
            )
    if not spec_path.exists():
        raise ModelError(f"folder '{path}' has no model.json: expected a model folder or a MONAI bundle (configs/inference.json).")
    spec = read_spec(spec_path)
    files = [path] if path.is_file() and path.suffix != ".json" else [spec_path.parent / name for name in spec.weight_files]
    networks = [load_network(spec, spec_path, weights) for weights in files]
    return LoadedModel(spec=spec, networks=networks, source=files[0] if len(files) == 1 else spec_path.parent)
