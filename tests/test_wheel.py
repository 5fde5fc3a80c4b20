"""The wheel: ``training`` installs inside the package (no generic top-level name), and the plugin manifest, the
``napari-brainseg`` command and the training code all work from a wheel install, away from the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CLEAN_ENV = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}  # no checkout on the path

CHECK_INSTALL = """
import importlib.metadata, importlib.util, sys
from pathlib import Path

import napari_brainseg, napari_brainseg.training.train
from npe2 import PluginManager

site = Path(sys.argv[1]).resolve()
for module in (napari_brainseg, napari_brainseg.training.train):
    assert site in Path(module.__file__).resolve().parents, f"{module.__name__} imported from {module.__file__}"
assert importlib.util.find_spec("training") is None, "a top-level 'training' package is importable"
scripts = [e for e in importlib.metadata.distribution("napari-brainseg").entry_points if e.group == "console_scripts"]
assert [(e.name, e.value) for e in scripts] == [("napari-brainseg", "napari_brainseg.__main__:main")], scripts
manager = PluginManager()
manager.discover()
manifest = manager.get_manifest("napari-brainseg")
print(len(manifest.contributions.widgets), "widgets")
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel pip builds from the checkout (hatchling, without build isolation: no network needed)."""
    pytest.importorskip("hatchling", reason="building the wheel needs hatchling (the testing extra installs it)")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(REPO_ROOT)], check=True, capture_output=True, timeout=600)
    return next(out.glob("napari_brainseg-*.whl"))


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh virtual environment holding only the wheel; its dependencies come from this environment."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                        text=True, encoding="utf-8").strip())
    # A plain path line: this environment's packages, without running its .pth files (the editable install's).
    (site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    return venv


def test_the_wheel_installs_training_inside_the_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"napari_brainseg", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    assert {"napari_brainseg/training/cli.py", "napari_brainseg/training/train.py",
            "napari_brainseg/training/splits/brats2018.json"} <= set(names)
    assert "napari_brainseg/napari.yaml" in names and "napari_brainseg/weights/brainseg_unet3d.pt" in names
    assert "napari_brainseg/weights/brainseg_unet3d.onnx" in names
    assert "napari_brainseg/weights/brainseg_unet3d.context.onnx" in names


def test_the_plugin_the_command_and_training_work_from_a_wheel_install(installed, tmp_path):
    python = installed / "bin" / "python"
    site = subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                   text=True, encoding="utf-8").strip()
    done = subprocess.run([str(python), "-c", CHECK_INSTALL, site], cwd=tmp_path, env=CLEAN_ENV,
                          capture_output=True, text=True, encoding="utf-8", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "8 widgets" in done.stdout
    command = subprocess.run([str(installed / "bin" / "napari-brainseg"), "--help"], cwd=tmp_path, env=CLEAN_ENV,
                             capture_output=True, text=True, encoding="utf-8", timeout=120)
    assert command.returncode == 0, command.stderr
    assert all(step in command.stdout for step in ("predict", "train", "finetune", "evaluate", "register"))
    models = subprocess.run([str(installed / "bin" / "napari-brainseg"), "models"], cwd=tmp_path, env=CLEAN_ENV,
                            capture_output=True, text=True, encoding="utf-8", timeout=300)
    assert models.returncode == 0 and models.stdout.startswith("bundled: "), models.stderr
