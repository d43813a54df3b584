"""Build the simulated ``cupy`` module tree from ``cupy13_api.json`` (CuPy 13's public names and parameters).

Every recorded name exists, and no other public one does: a name that only CuPy 14 has raises AttributeError. A name
is, in order of preference: a simgpu implementation (``asnumpy``, ``RawKernel``, ``cuda.Device``...), the very NumPy
object where CuPy re-exports it (dtypes, ``finfo``...), a constant, a ufunc or function that checks its arguments
against CuPy 13's recorded signature (an unknown keyword raises TypeError) and then runs NumPy's function of the same
name on the unwrapped arrays, or a stub that raises NotImplementedError (it exists in CuPy 13, simgpu does not
simulate it). Results are wrapped: arrays passed in come back as the very wrapper (``out=``, ``asarray(x)``), NumPy
scalars become 0-d arrays as in CuPy.

CuPy 14.0.1 (Colab's) is modelled too: ``cupy14_changes.json`` records what it removes or changes against CuPy 13,
and the simulation keeps only the names both versions have and checks each call against both signatures (fmnist
must run on either). Every device operation is counted as a launch (``_array.record_launch``): a function whose
result is new memory or that was given ``out=``, every ufunc call, ``matmul`` (``matmul(batched)`` when an operand
has more than two dimensions: CuPy runs that as a batched GEMM), array methods likewise; views count nothing.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.machinery
import inspect
import json
import types
from pathlib import Path

import numpy as np

from . import _array, _cuda, _driver, _kernels
from ._array import SCALARS, check_promotion, fresh, ndarray, record_launch, record_sync, unwrap, wrap

API = json.loads(Path(__file__).with_name("cupy13_api.json").read_text())
CUPY14 = json.loads(Path(__file__).with_name("cupy14_changes.json").read_text())
UFUNC_KWARGS = frozenset(API["ufunc_call_kwargs"]) & frozenset(CUPY14["ufunc_call_kwargs"])
GUFUNC_KWARGS = frozenset(API["gufunc_call_kwargs"]) & frozenset(CUPY14["gufunc_call_kwargs"])
NO_LAUNCH = {"empty", "empty_like"}  # allocation only
NO_COMPILE = {"zeros", "zeros_like", "asarray", "array", "asanyarray"}  # a memset, or a copy from the host
HOST_INPUT = {"array", "asarray", "asanyarray", "ascontiguousarray", "asfortranarray"}  # host-to-device copies
ZERO_D = {"count_nonzero", "allclose", "array_equal", "array_equiv"}  # NumPy returns Python scalars, CuPy arrays
SYNCING = {"save", "savez", "savez_compressed", "savetxt", "array_str", "array_repr", "array2string"}
ALIASES = {
    "alltrue": "all",
    "sometrue": "any",
    "product": "prod",
    "cumproduct": "cumprod",
    "round_": "round",
    "trapz": "trapezoid",
    "ranf": "random_sample",
    "sample": "random_sample",
}


class _Default:
    def __repr__(self) -> str:
        return "..."  # the recorded signatures say which parameters have defaults, not what they are


_DEFAULT = _Default()


def signature(tokens: list[str] | None) -> inspect.Signature | None:
    """An ``inspect.Signature`` from the recorded tokens ("a", "axis=", "/", "*", "*args", "**kwargs")."""
    if tokens is None:
        return None
    P = inspect.Parameter
    params, kind = [], P.POSITIONAL_OR_KEYWORD
    for tok in tokens:
        if tok == "/":
            params = [p.replace(kind=P.POSITIONAL_ONLY) for p in params]
        elif tok == "*":
            kind = P.KEYWORD_ONLY
        elif tok.startswith("**"):
            params.append(P(tok[2:], P.VAR_KEYWORD))
        elif tok.startswith("*"):
            params.append(P(tok[1:], P.VAR_POSITIONAL))
            kind = P.KEYWORD_ONLY
        else:
            params.append(P(tok.rstrip("="), kind, default=_DEFAULT if tok.endswith("=") else P.empty))
    try:
        return inspect.Signature(params)
    except ValueError:
        return None


def _cupy14(section: str, owner: str) -> dict:
    return CUPY14[section].get(owner, {"removed": [], "changed": {}})


def removed_in_cupy14(section: str, owner: str) -> set[str]:
    """Names of ``owner`` (a module or class) that CuPy 13 has and CuPy 14 does not."""
    return set(_cupy14(section, owner)["removed"])


def signatures(section: str, owner: str, name: str, tokens) -> list[tuple[str, inspect.Signature | None]]:
    """(CuPy version, signature) of ``owner.name`` in CuPy 13, and in CuPy 14 where it differs."""
    found = [(API["cupy_version"], signature(tokens))]
    newer = _cupy14(section, owner)["changed"].get(name)
    if newer is not None and newer.get("params") != tokens:
        found.append((CUPY14["cupy_version"], signature(newer.get("params"))))
    return found


def _positional(sig: inspect.Signature | None) -> list[str]:
    if sig is None:
        return []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in sig.parameters.values() if p.kind in kinds]


def check(sigs, where: str, args, kwargs) -> None:
    """Bind the call to the signature of each CuPy version (``sigs``: a signature, or (version, signature) pairs):
    it must be valid for every CuPy fmnist supports, and mean the same: from the first position where the versions'
    parameters differ, arguments must be passed by keyword."""
    pairs = sigs if isinstance(sigs, list) else [(API["cupy_version"], sigs)]
    for version, sig in pairs:
        if sig is None:
            continue
        try:
            sig.bind(*args, **kwargs)
        except TypeError as err:
            raise TypeError(f"{where}(): {err} (the signature of CuPy {version}: {where}{sig})") from None
    orders = [_positional(sig) for _, sig in pairs if sig is not None]
    same = next((i for i, names in enumerate(zip(*orders, strict=False)) if len(set(names)) > 1), None)
    if len(orders) > 1 and same is not None and len(args) > same:
        versions = " and ".join(f"CuPy {v}: {where}{sig}" for v, sig in pairs)
        raise TypeError(f"{where}(): pass the arguments from position {same} on by keyword ({versions})")


def unsupported(qualname: str, kind: str = "function"):
    message = f"simgpu: {qualname} exists in CuPy 13 but is not simulated"
    if kind == "module":
        module = types.ModuleType(qualname, message)

        def missing(name: str):
            raise AttributeError(f"{message} ({qualname}.{name})")

        module.__getattr__ = missing
        return module

    def stub(*args, **kwargs):
        raise NotImplementedError(message)

    if kind == "class":
        return type(qualname.rsplit(".", 1)[-1], (), {"__init__": stub, "__module__": qualname.rsplit(".", 1)[0]})
    stub.__name__ = qualname.rsplit(".", 1)[-1]
    return stub


def _unwrap_all(args, kwargs, memo, where, host=None):
    return unwrap(args, memo, where, host), {k: unwrap(v, memo, where, host) for k, v in kwargs.items()}


def _owned(result, hosts: list):
    """Results that share memory with host input are copied: CuPy copies host data to the device."""
    if isinstance(result, np.ndarray) and any(np.may_share_memory(result, h) for h in hosts):
        return result.copy()
    return result


@functools.cache
def _numpy_parameters(np_func) -> dict | None:
    try:
        params = inspect.signature(np_func).parameters
    except (TypeError, ValueError):
        return None
    return None if any(p.kind is p.VAR_KEYWORD for p in params.values()) else params


def _to_numpy_keywords(sig, np_func, where: str, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Pass CuPy's keywords under NumPy's names: a renamed parameter (``reshape(newshape=)`` is NumPy's ``shape``,
    ``concatenate(tup=)`` its ``arrays``) goes by the name NumPy has at that position, or positionally where NumPy's
    is positional-only. A CuPy-only keyword is dropped when it is None (or ``blocking``), else not simulated."""
    np_params = _numpy_parameters(np_func) if sig is not None else None
    if np_params is None or all(k in np_params and np_params[k].kind != np_params[k].POSITIONAL_ONLY for k in kwargs):
        return args, kwargs
    ours = [p.name for p in sig.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    theirs = [p for p in np_params.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    out = {}
    for key in sorted(kwargs, key=lambda k: ours.index(k) if k in ours else len(ours)):
        value, i = kwargs[key], ours.index(key) if key in ours else len(theirs)
        target = theirs[i] if i < len(theirs) and theirs[i].name not in set(ours) - {key} else None
        if key in np_params and np_params[key].kind != np_params[key].POSITIONAL_ONLY:
            out[key] = value
        elif target is not None and target.kind != target.POSITIONAL_ONLY:
            out[target.name] = value
        elif target is not None and len(args) == i:
            args = (*args, value)
        elif value is not None and key != "blocking":
            raise NotImplementedError(f"simgpu: {where}({key}=...) has no NumPy counterpart to simulate it with")
    return args, out


def function(qualname: str, np_func, tokens):
    module, _, name = qualname.rpartition(".")
    sigs = signatures("modules", module, name, tokens)
    sig = sigs[0][1]

    def call(*args, **kwargs):
        check(sigs, qualname, args, kwargs)
        args, kwargs = _to_numpy_keywords(sig, np_func, qualname, args, kwargs)
        memo, hosts = {}, ([] if name in HOST_INPUT else None)
        args, kwargs = _unwrap_all(args, kwargs, memo, qualname, hosts)
        if name in SYNCING:
            record_sync(name)
        result = np_func(*args, **kwargs)
        if hosts:
            result = _owned(result, hosts)
        if name in ZERO_D and isinstance(result, (bool, int)):
            result = np.asarray(result)
        if (fresh(result) and name not in NO_LAUNCH) or kwargs.get("out") is not None:
            record_launch(name, compiles=name not in NO_COMPILE)
        return wrap(result, memo)

    call.__name__ = call.__qualname__ = name
    call.__module__ = qualname.rsplit(".", 1)[0]
    return call


def _device_operand(x, where: str):
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, SCALARS):
        return x
    raise TypeError(f"{where}: Unsupported type {type(x)} (CuPy ufuncs take cupy.ndarray or scalars)")


class ufunc:
    """A CuPy 13 ufunc: positional inputs, optional positional outputs, and only the keywords CuPy 13 accepts."""

    def __init__(self, name: str, np_func, nin: int, nout: int):
        self.name = self.__name__ = f"cupy_{name}"
        self._np, self._public = np_func, f"cupy.{name}"
        self.nin, self.nout, self.nargs = nin, nout, nin + nout

    types = property(lambda self: list(getattr(self._np, "types", [])))

    def __repr__(self) -> str:
        return f"<ufunc '{self.name}'>"

    def __call__(self, *args, **kwargs):
        where = self._public
        if set(kwargs) - UFUNC_KWARGS:
            bad = {k: kwargs[k] for k in set(kwargs) - UFUNC_KWARGS}
            raise TypeError(f"{where}: Wrong arguments {bad} (CuPy 13 ufuncs take only {sorted(UFUNC_KWARGS)})")
        if not self.nin <= len(args) <= self.nargs:
            raise TypeError(
                f"Wrong number of arguments for {self.name!r}: {self.nin} or {self.nargs}, given {len(args)}"
            )
        inputs = [_device_operand(a, where) for a in args[: self.nin]]
        outs = args[self.nin :] or kwargs.pop("out", None)
        if outs is None and kwargs.get("dtype") is None:
            check_promotion([a for a in inputs if isinstance(a, np.ndarray)], inputs, where)
        if "_where" in kwargs:
            kwargs["where"] = _device_operand(kwargs.pop("_where"), where)
        memo = {}
        if outs is not None:
            outs = outs if isinstance(outs, tuple) else (outs,)
            if not all(isinstance(o, ndarray) for o in outs):
                raise TypeError(f"{where}: out must be cupy.ndarray")
            outs = unwrap(outs, memo, where)
            kwargs["out"] = outs if self.nout > 1 else outs[0]
        result = self._np(*inputs, **kwargs)
        record_launch(self._public.rpartition(".")[2])
        return wrap(result, memo)


def _ufunc_method(method: str):
    sig = signature(API["ufunc_methods"][method])

    def call(self, *args, **kwargs):
        check(sig, f"{self._public}.{method}", args, kwargs)
        memo = {}
        args, kwargs = _unwrap_all(args, kwargs, memo, f"{self._public}.{method}")
        result = getattr(self._np, method)(*args, **kwargs)
        record_launch(f"{self._public.rpartition('.')[2]}.{method}")
        return wrap(result, memo)

    call.__name__ = method
    return call


for _m in API["ufunc_methods"]:
    setattr(ufunc, _m, _ufunc_method(_m))


class _GUFunc:
    """``cupy.matmul``: a generalized ufunc taking CuPy 13's gufunc keywords (CuPy raises RuntimeError for others;
    simgpu raises TypeError)."""

    def __init__(self, name: str, np_func, nin: int):
        self.__name__, self._np, self._nin = name, np_func, nin

    def __call__(self, *args, **kwargs):
        where = f"cupy.{self.__name__}"
        if set(kwargs) - GUFUNC_KWARGS:
            raise TypeError(
                f"{where}: Unknown kwargs {sorted(set(kwargs) - GUFUNC_KWARGS)} (CuPy 13 raises RuntimeError)"
            )
        if len(args) != self._nin:
            raise TypeError(f"{where} takes {self._nin} positional arguments, {len(args)} given")
        memo = {}
        inputs = [_device_operand(a, where) for a in args]
        _, kwargs = _unwrap_all((), kwargs, memo, where)
        result = self._np(*inputs, **kwargs)
        batched = max(getattr(a, "ndim", 0) for a in inputs) > 2  # CuPy: a batched GEMM, not one 2-D GEMM
        record_launch(f"{self.__name__}(batched)" if batched else self.__name__)
        _driver.check_cublas()
        return wrap(result, memo)


class _IndexGrid:
    """``cupy.mgrid``, ``ogrid``, ``c_``, ``r_``: NumPy's object, results on the device."""

    def __init__(self, np_obj, qualname: str):
        self._np, self._where = np_obj, qualname

    def __getitem__(self, key):
        memo = {}
        result = self._np[unwrap(key, memo, self._where)]
        if fresh(result):
            record_launch(self._where.rpartition(".")[2])
        return wrap(result, memo)


def array_method(name: str, tokens):
    sigs = signatures("classes", "ndarray", name, tokens)
    where = f"cupy.ndarray.{name}"

    def call(self, *args, **kwargs):
        check(sigs, where, args, kwargs)
        memo = {id(self._a): self}
        args, kwargs = _unwrap_all(args, kwargs, memo, where)
        result = getattr(self._a, name)(*args, **kwargs)
        if fresh(result) or kwargs.get("out") is not None:
            record_launch(f"ndarray.{name}")
        return wrap(result, memo)

    call.__name__ = name
    return call


def _unsupported_attribute(name: str):
    def get(self):
        raise NotImplementedError(f"simgpu: cupy.ndarray.{name} exists in CuPy 13 but is not simulated")

    return property(get)


def _complete_ndarray() -> None:
    """Give ``ndarray`` the recorded members (of CuPy 13 and 14 both) that ``_array`` does not implement by hand."""
    gone = removed_in_cupy14("classes", "ndarray")
    for name, spec in API["classes"]["ndarray"].items():
        if name in ndarray.__dict__ or name in gone:
            continue
        if spec["kind"] == "attribute":
            setattr(ndarray, name, _unsupported_attribute(name))
        elif hasattr(np.ndarray, name) and not name.startswith("_"):
            setattr(ndarray, name, array_method(name, spec["params"]))
        else:
            setattr(ndarray, name, unsupported(f"cupy.ndarray.{name}"))


# ---- cupy.random ---------------------------------------------------------------------------------------------------
def _np_accepts(np_func, name: str) -> bool:
    try:
        return name in inspect.signature(np_func).parameters
    except (TypeError, ValueError):
        return False


def _random_call(where: str, np_func, tokens, method: str, bound: bool):
    """A random function (drawn from the legacy global ``RandomState``) or a ``Generator`` method (``bound``):
    CuPy's signature, NumPy's draw, ``dtype`` applied after when NumPy's function lacks it, scalars as 0-d arrays."""
    sig, cast_after = signature(tokens), not _np_accepts(np_func, "dtype")

    def call(*args, **kwargs):
        source = args[0]._np if bound else _legacy[0]
        args = args[1:] if bound else args
        check(sig, where, args, kwargs)
        dtype = kwargs.pop("dtype", None) if cast_after else None
        memo = {}
        args, kwargs = _unwrap_all(args, kwargs, memo, where)
        result = getattr(source, method)(*args, **kwargs)
        record_launch(f"random.{method}")
        result = wrap(np.asarray(result) if isinstance(result, (int, float, bool)) else result, memo)
        return result.astype(dtype, copy=False) if dtype is not None and isinstance(result, ndarray) else result

    call.__name__ = method
    return call


class Generator:
    """``cupy.random.Generator``: NumPy's PCG64 underneath (the numbers differ from CuPy's XORWOW)."""

    def __init__(self, bit_generator=None):
        self._np = np.random.default_rng(bit_generator if isinstance(bit_generator, (int, type(None))) else None)


for _name, _spec in API["classes"]["random.Generator"].items():
    if _spec["kind"] == "method" and hasattr(np.random.Generator, _name):
        _np_method = getattr(np.random.Generator, _name)
        setattr(
            Generator, _name, _random_call(f"cupy.random.Generator.{_name}", _np_method, _spec["params"], _name, True)
        )
    elif _spec["kind"] == "method":
        setattr(Generator, _name, unsupported(f"cupy.random.Generator.{_name}"))

Generator.__module__ = "cupy.random"
_legacy = [np.random.RandomState()]


def default_rng(seed=None) -> Generator:
    return Generator(seed)


def seed(seed=None) -> None:
    _legacy[0] = np.random.RandomState(seed)


# ---- the cupy module tree ------------------------------------------------------------------------------------------
def asnumpy(a, stream=None, order="C", out=None, *, blocking=True) -> np.ndarray:
    if isinstance(a, ndarray):
        record_sync("asnumpy")
        record_launch("copy (device to host)", compiles=False)
        host = np.array(a._a, order=order, copy=True)
    else:
        host = np.asarray(a, order=order)
    if out is None:
        return host
    out[...] = host
    return out


@contextlib.contextmanager
def count_launches():
    """Yield a ``LaunchLog`` of the device operations launched inside the block (``.count``, ``.kinds``)."""
    log = _array.LaunchLog()
    _array._open_launch_logs.append(log)
    try:
        yield log
    finally:
        _array._open_launch_logs.remove(log)


def fuse(*args, **kwargs):
    """Runs the function op by op (no kernel fusion on the host)."""
    if len(args) == 1 and callable(args[0]) and not kwargs:
        return args[0]
    return lambda f: f


def memoize(for_each_device=False):
    return functools.cache


def _resolve(path: str):
    module, _, attr = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return None


def populate(qualname: str, implemented: dict, np_module=None) -> types.ModuleType:
    """A module holding exactly the names CuPy 13 and CuPy 14 both record for ``qualname``."""
    module = types.ModuleType(qualname)
    gone = removed_in_cupy14("modules", qualname)
    for name, spec in API["modules"][qualname].items():
        if name in gone:
            continue
        full, kind = f"{qualname}.{name}", spec["kind"]
        np_obj = getattr(np_module, ALIASES.get(name, name), None) if np_module is not None else None
        if name in implemented:
            value = implemented[name]
        elif spec.get("numpy_same") and np_obj is not None:
            value = np_obj
        elif "numpy_path" in spec:
            value = _resolve(spec["numpy_path"]) or unsupported(full, "class")
        elif kind == "constant":
            value = float(spec["float"]) if "float" in spec else spec["value"]
        elif kind == "ufunc" and callable(np_obj):
            value = ufunc(name, np_obj, spec["nin"], spec["nout"])
        elif kind == "gufunc" and callable(np_obj):
            value = _GUFunc(name, np_obj, spec["nin"])
        elif kind == "function" and callable(np_obj):
            value = function(full, np_obj, spec["params"])
        elif kind == "object" and np_obj is not None:
            value = _IndexGrid(np_obj, full)
        else:
            value = unsupported(full, kind if kind in ("module", "class") else "function")
        setattr(module, name, value)
    return module


def build() -> dict[str, types.ModuleType]:
    """Every simulated module by its import name."""
    _complete_ndarray()
    cuda_modules = {
        "runtime": populate("cupy.cuda.runtime", _cuda.RUNTIME),
        "memory": populate("cupy.cuda.memory", _cuda.MEMORY),
        "compiler": types.ModuleType("cupy.cuda.compiler"),
    }
    cuda_modules["compiler"].CompileException = _kernels.CompileException
    cuda = populate("cupy.cuda", {**_cuda.CUDA, **cuda_modules})
    random_functions = {"default_rng": default_rng, "seed": seed, "Generator": Generator}
    for name, spec in API["modules"]["cupy.random"].items():
        np_name = ALIASES.get(name, name)
        if spec["kind"] == "function" and name not in random_functions and hasattr(np.random.RandomState, np_name):
            legacy = getattr(np.random.RandomState, np_name)
            random_functions[name] = _random_call(f"cupy.random.{name}", legacy, spec["params"], np_name, False)
    modules = {
        "cupy.linalg": populate("cupy.linalg", {}, np.linalg),
        "cupy.fft": populate("cupy.fft", {}, np.fft),
        "cupy.random": populate("cupy.random", random_functions),
    }
    top = {
        "ndarray": ndarray,
        "ufunc": ufunc,
        "asnumpy": asnumpy,
        "fuse": fuse,
        "memoize": memoize,
        "clear_memo": lambda: None,
        "RawKernel": _kernels.RawKernel,
        "RawModule": _kernels.RawModule,
        "is_available": _cuda.is_available,
        "cuda": cuda,
        "get_default_memory_pool": lambda: _cuda.DEFAULT_POOL,
        "get_default_pinned_memory_pool": lambda: _cuda.DEFAULT_PINNED_POOL,
        **{name.rpartition(".")[2]: module for name, module in modules.items()},
    }
    cupy = populate("cupy", top, np)
    cupy.get_array_module = lambda *args: cupy if any(isinstance(a, ndarray) for a in args) else np
    cupy.__version__ = _driver.state["version"]
    cupy._simulated = True
    cupy._count_launches = count_launches  # simgpu's own, private: fmnist.backend.launches counts with it
    modules.update({"cupy": cupy, "cupy.cuda": cuda})
    modules.update({f"cupy.cuda.{name}": module for name, module in cuda_modules.items()})
    for name, value in vars(cupy).items():
        if isinstance(value, types.ModuleType) and f"cupy.{name}" not in modules:
            modules[f"cupy.{name}"] = value
    for name, module in modules.items():  # importlib.util.find_spec("cupy") reads __spec__
        module.__spec__ = importlib.machinery.ModuleSpec(name, None, origin="simgpu", is_package=True)
    return modules
