"""The examples in the modules' docstrings run as written, on synthetic data, and none is skipped.

Each module's examples run in a fresh temporary folder (examples write relative paths) with a private
models folder.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import napari_brainseg
from napari_brainseg import registry

MODULES = sorted(name for _, name, _ in pkgutil.walk_packages(napari_brainseg.__path__, "napari_brainseg."))
"""Every module of the plugin, its training package (``napari_brainseg.training``) included."""
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.mark.parametrize("name", MODULES)
def test_the_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(registry.ENV_VAR, str(tmp_path / "models"))
    module = importlib.import_module(name)
    tests = doctest.DocTestFinder().find(module)
    skipped = [t.name for t in tests for example in t.examples if example.options.get(doctest.SKIP)]
    assert not skipped, f"examples marked +SKIP in {', '.join(skipped)}: make them run on synthetic data"
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in tests:
        runner.run(test)
    assert runner.failures == 0, f"{runner.failures} docstring example(s) of {name} failed (output above)"
