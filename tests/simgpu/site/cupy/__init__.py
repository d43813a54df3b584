"""A ``cupy`` that is simgpu: with ``tests/simgpu/site`` on ``PYTHONPATH``, ``import cupy`` loads the simulation.

For subprocess runs in CPU-only CI, e.g. ``PYTHONPATH=tests/simgpu/site fmnist train --device gpu``. This module
loads ``tests/simgpu`` as the package ``simgpu`` (unless it is already imported) and installs it, which replaces
``sys.modules["cupy"]`` (this module) with the simulated one; the import statement then returns that.
"""

import importlib.util
import sys
from pathlib import Path

if "simgpu" not in sys.modules:
    _package = Path(__file__).resolve().parents[2]
    _spec = importlib.util.spec_from_file_location("simgpu", _package / "__init__.py")
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["simgpu"] = _module
    _spec.loader.exec_module(_module)
sys.modules["simgpu"].install()
