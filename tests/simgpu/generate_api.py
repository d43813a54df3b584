"""Record the public API of the installed (real) CuPy, for the simulation to enforce: CuPy 13 into
``cupy13_api.json``, CuPy 14 into ``cupy14_changes.json`` (what differs from the CuPy 13 record).

Run it with the Python of an environment that has CuPy 13 installed, then with one that has CuPy 14.0.1 (Colab's;
no GPU is needed)::

    /tmp/cupy13/bin/python tests/simgpu/generate_api.py
    /tmp/cupy14/bin/python tests/simgpu/generate_api.py

fmnist must run on both, so simgpu offers the names both have and checks each call against both signatures. CuPy
14.0.1 measured against 13.6 (2026-12): 14 is a superset but for ``cupy.sparse`` and
``cupy.cuda.memory.LockAndNoGc`` (gone), ``histogram``'s ``weights``/``density`` (swapped positions), and keywords
only 14 accepts (``asarray(copy=)``, ``argsort(kind=)``...). A full second record would repeat the first, so the
CuPy 14 file keeps only the differences.

What it records, per module (``cupy``, ``cupy.linalg``, ``cupy.random``, ``cupy.fft``, ``cupy.cuda``,
``cupy.cuda.runtime``, ``cupy.cuda.memory``): every public name, its kind (function / ufunc / gufunc / class /
dtype / constant / object / module), whether it is the very NumPy object (``numpy_same``: dtypes, ``finfo``...)
or a NumPy class under another name (``numpy_path``, e.g. ``numpy.exceptions.AxisError``), and for callables the
accepted parameters as tokens (``"a"``, ``"axis="`` with a default, ``"/"``, ``"*"``, ``"*args"``, ``"**kwargs"``).
Parameters come from ``inspect.signature`` where it works, else from the first
line of the docstring (Cython's embedded signature). The same is recorded for the public members of
``cupy.ndarray``, ``cupy.random.Generator`` and a few ``cupy.cuda`` classes.

Ufunc keywords are *probed*, not guessed: CuPy 13's ``ufunc.__call__`` (``cupy/_core/_kernel.pyx``) pops its known
keywords and raises ``TypeError('Wrong arguments ...')`` for any other one *before* it touches the device, so calling
a ufunc with one candidate keyword at a time tells which are accepted even without a GPU (an accepted one fails
later, on the missing device, with a different error). The generalized ufunc ``matmul`` is probed the same way (it
raises ``RuntimeError('Unknown kwargs ...')``).
"""

from __future__ import annotations

import inspect
import json
import re
import sys
import types
from pathlib import Path

import cupy
import cupy.cuda.memory
import cupy.cuda.runtime
import numpy

MODULES = ("cupy", "cupy.linalg", "cupy.random", "cupy.fft", "cupy.cuda", "cupy.cuda.runtime", "cupy.cuda.memory")
CLASSES = {
    "ndarray": cupy.ndarray,
    "random.Generator": cupy.random.Generator,
    "cuda.Device": cupy.cuda.Device,
    "cuda.Stream": cupy.cuda.Stream,
    "cuda.MemoryPool": cupy.cuda.MemoryPool,
}
# Every keyword NumPy's ufuncs take, plus CuPy's private one: the candidates to probe.
UFUNC_CANDIDATES = ("out", "where", "_where", "casting", "order", "dtype", "subok", "signature", "axes", "axis")
UFUNC_CANDIDATES += ("keepdims",)
OUT = Path(__file__).with_name("cupy13_api.json")
CHANGES = Path(__file__).with_name("cupy14_changes.json")


def _split_top(text: str) -> list[str]:
    """Split a parameter list on the commas that are not inside brackets or quotes."""
    parts, depth, quote, cur = [], 0, None, ""
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        cur += ch
    return [p.strip() for p in [*parts, cur] if p.strip()]


def _tokens_from_doc(obj) -> list[str] | None:
    first = (getattr(obj, "__doc__", None) or "").lstrip().split("\n", 1)[0].replace("\\*", "*")
    match = re.match(r"^[\w.]+\((.*)\)", first)
    if not match:
        return None
    tokens = []
    for part in _split_top(match.group(1)):
        head = part.split("=", 1)[0].strip()
        if head in ("/", "*"):
            tokens.append(head)
            continue
        stars = "**" if head.startswith("**") else "*" if head.startswith("*") else ""
        name = head.lstrip("*").split()[-1]  # drop a Cython type such as `_ndarray_base a`
        if name != "self":
            tokens.append(stars + name + ("=" if "=" in part else ""))
    return tokens


def params(obj) -> list[str] | None:
    """The parameter tokens of a callable, or None when they cannot be found."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return _tokens_from_doc(obj)
    tokens, saw_kwonly, saw_posonly = [], False, False
    for p in sig.parameters.values():
        if p.name == "self":
            continue
        if p.kind is p.POSITIONAL_ONLY:
            saw_posonly = True
        elif saw_posonly:
            tokens.append("/")
            saw_posonly = False
        if p.kind is p.KEYWORD_ONLY and not saw_kwonly:
            saw_kwonly = True
            tokens.append("*")
        if p.kind is p.VAR_POSITIONAL:
            saw_kwonly = True
            tokens.append("*" + p.name)
        elif p.kind is p.VAR_KEYWORD:
            tokens.append("**" + p.name)
        else:
            tokens.append(p.name + ("" if p.default is p.empty else "="))
    if saw_posonly:
        tokens.append("/")
    return tokens


def _probe(fn, nargs: int, candidates, rejection: type[Exception], marker: str) -> list[str]:
    """The keywords ``fn`` accepts: those whose call does not fail with the argument-check error."""
    accepted = []
    for name in candidates:
        try:
            fn(*([1] * nargs), **{name: None})
        except rejection as err:
            if marker in str(err):
                continue
        except Exception:  # got past the keyword check, failed on the missing device: accepted
            pass
        accepted.append(name)
    return accepted


def describe(name: str, obj, numpy_twin) -> dict:
    entry: dict = {}
    if numpy_twin is not None and numpy_twin is obj:
        entry["numpy_same"] = True
    elif isinstance(obj, type) and obj.__module__.startswith("numpy"):  # e.g. AxisError, float_ (NumPy 2 lacks)
        entry["numpy_path"] = f"{obj.__module__}.{obj.__qualname__}"
    if isinstance(obj, types.ModuleType):
        entry["kind"] = "module"
    elif isinstance(obj, cupy.ufunc):
        entry.update(kind="ufunc", nin=obj.nin, nout=obj.nout)
    elif type(obj).__name__ == "_GUFunc":
        entry.update(kind="gufunc", nin=obj._nin, nout=obj._nout)
    elif isinstance(obj, type) and issubclass(obj, numpy.generic):
        entry["kind"] = "dtype"
    elif isinstance(obj, type):
        entry["kind"] = "class"
    elif callable(obj):
        entry.update(kind="function", params=params(obj))
    elif isinstance(obj, float):
        entry.update(kind="constant", float=repr(obj))  # repr: JSON has no inf/nan
    elif obj is None or isinstance(obj, (bool, int, str)):
        entry.update(kind="constant", value=obj)
    else:
        entry.update(kind="object", type=type(obj).__name__)
    return entry


def module_names(modname: str) -> dict:
    module = sys.modules[modname]
    twin_name = {"cupy": "numpy", "cupy.linalg": "numpy.linalg", "cupy.fft": "numpy.fft", "cupy.random": "numpy.random"}
    twin = sys.modules.get(twin_name.get(modname, ""), None)
    out = {}
    for name in sorted(dir(module)):
        if name.startswith("_"):
            continue
        obj = getattr(module, name)
        if isinstance(obj, types.ModuleType) and not obj.__name__.startswith("cupy"):
            continue  # a stdlib module the package imported (cupy.cuda.memory.gc...): not API
        out[name] = describe(name, obj, getattr(twin, name, None) if twin else None)
    return out


def class_members(cls) -> dict:
    out = {}
    for name in sorted(dir(cls)):
        if name.startswith("_") and name not in ("__dlpack__", "__dlpack_device__", "__cuda_array_interface__"):
            continue
        attr = inspect.getattr_static(cls, name)
        if isinstance(attr, (property, types.GetSetDescriptorType, types.MemberDescriptorType)):
            out[name] = {"kind": "attribute"}
        elif callable(getattr(cls, name)):
            out[name] = {"kind": "method", "params": params(getattr(cls, name))}
        else:
            out[name] = {"kind": "attribute"}
    return out


def changes(api: dict, base: dict) -> dict:
    """What ``api`` (a newer CuPy) removes or changes against ``base`` (the CuPy 13 record): removed names per module
    and class, the new parameter tokens of changed callables, and the ufunc keywords."""

    def diff(new: dict, old: dict) -> tuple[list[str], dict]:
        removed = sorted(set(old) - set(new))
        changed = {n: new[n] for n in sorted(set(old) & set(new)) if new[n] != old[n]}
        return removed, changed

    out: dict = {"cupy_version": api["cupy_version"], "numpy_version": api["numpy_version"]}
    for section in ("modules", "classes"):
        out[section] = {}
        for name, members in base[section].items():
            removed, changed = diff(api[section].get(name, {}), members)
            if removed or changed:
                out[section][name] = {"removed": removed, "changed": changed}
    for key in ("ufunc_call_kwargs", "gufunc_call_kwargs", "ufunc_methods"):
        out[key] = api[key]
    return out


def main() -> None:
    add = cupy.add
    api = {
        "generated_by": "tests/simgpu/generate_api.py",
        "cupy_version": cupy.__version__,
        "numpy_version": numpy.__version__,
        "modules": {m: module_names(m) for m in MODULES},
        "classes": {name: class_members(cls) for name, cls in CLASSES.items()},
        "ufunc_call_kwargs": _probe(add, add.nin, UFUNC_CANDIDATES, TypeError, "Wrong arguments"),
        "gufunc_call_kwargs": _probe(cupy.matmul, 2, UFUNC_CANDIDATES, RuntimeError, "Unknown kwargs"),
        "ufunc_methods": {m: params(getattr(add, m)) for m in ("reduce", "accumulate", "reduceat", "outer", "at")},
    }
    target = OUT
    if int(cupy.__version__.split(".")[0]) >= 14:
        api, target = changes(api, json.loads(OUT.read_text())), CHANGES
    target.write_text(json.dumps(api, indent=1, sort_keys=True) + "\n")
    counts = {m: len(v) for m, v in api["modules"].items()}
    print(f"wrote {target} (CuPy {cupy.__version__}): {counts}; ufunc kwargs {api['ufunc_call_kwargs']}")


if __name__ == "__main__":
    main()
