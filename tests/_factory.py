"""``load_dicom_factory()``: tests/io/dicom_factory.py as a module, for tests in any folder.

``tests/io`` is not a package (it must not be imported as ``io``), so the factory is loaded by path, once.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def load_dicom_factory() -> ModuleType:
    if "dicom_factory" in sys.modules:
        return sys.modules["dicom_factory"]
    spec = importlib.util.spec_from_file_location("dicom_factory", Path(__file__).resolve().parent / "io" / "dicom_factory.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["dicom_factory"] = module
    spec.loader.exec_module(module)
    return module
