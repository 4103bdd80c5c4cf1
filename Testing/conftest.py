"""Shared fixtures: real data (skipped where absent), a small MONAI model, a real MRML scene."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
SHARED_DATA = REPOSITORY.parent / "shared" / "data"
TASK = SHARED_DATA / "Task04_Hippocampus"
sys.path.insert(0, str(REPOSITORY / "UncertaintySeg"))  # UncertaintySegSlicer (not pip-installed: it needs Slicer)


@pytest.fixture(scope="session")
def data_root():
    if not (TASK / "dataset.json").is_file():
        pytest.skip(f"real data absent: expected MSD Task04 at {TASK} (../shared/data beside the repository)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def test_case(data_root):
    """(image path, label path) of the first case of the test split."""
    from UncertaintySegLib.data.hippocampus import load_split

    case = load_split(data_root, "test")[0]
    return case.image, case.label


@pytest.fixture(scope="session")
def small_model_dir(tmp_path_factory):
    """A tiny untrained MONAI UNet (seeded) with its model.json: fast, for loader and pipeline tests."""
    import torch
    from monai.networks.nets import UNet

    folder = tmp_path_factory.mktemp("small_model")
    args = {"spatial_dims": 3, "in_channels": 1, "out_channels": 3, "channels": [4, 8], "strides": [2], "num_res_units": 0}
    torch.manual_seed(0)
    torch.save(UNet(**args).state_dict(), folder / "model.pt")
    spec = {"name": "small", "class_names": ["background", "a", "b"], "roi_size": [16, 16, 16],
            "normalization": {"kind": "zscore"}, "network": {"name": "UNet", "args": args}, "weights": "model.pt"}
    (folder / "model.json").write_text(json.dumps(spec))
    return folder


@pytest.fixture
def hippocampus_copy(tmp_path):
    """A private copy of the bundled `hippocampus` model (the bundled files may be retrained meanwhile)."""
    import shutil

    from UncertaintySegLib.predict.model_loading import BUNDLED_MODELS_DIR

    folder = tmp_path / "hippocampus"
    folder.mkdir()
    for name in ("model.json", "model.pt"):
        shutil.copy(BUNDLED_MODELS_DIR / "hippocampus" / name, folder / name)
    return folder


def write_image(path, array, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None):
    """Write an (I, J, K) array with SimpleITK (independently of the project's writer)."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(array).transpose(2, 1, 0)))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    sitk.WriteImage(image, str(path))
    return Path(path)


@pytest.fixture
def mrml_scene(tmp_path):
    """(scene, application logic) of a fresh real MRML scene; slicer.mrmlScene points to it."""
    from slicer_scene import createScene

    scene, appLogic = createScene(tmp_path / "slicer-home")
    yield scene, appLogic
    scene.Clear(1)
