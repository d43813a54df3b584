"""The simulated GPU (tests/simgpu): the API CuPy 13 and 14 share and no more, arrays NumPy cannot touch, counted
host syncs and launches, a machine that cannot compile on request, and CUDA C kernels run on the host with the
results a GPU computes. Plain CPU tests (no GPU, no fmnist)."""

from __future__ import annotations

import inspect
import json
import operator
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import simgpu
from simgpu import _kernels, _namespace

cp = simgpu.cupy

# `dir()` of CuPy 14.2 minus CuPy 13.6 (numpy 2.4 underneath), per module: each must be absent from the simulation.
# fmt: off
ONLY_IN_CUPY14 = {
    "cupy": [
        "acos", "acosh", "apply_over_axes", "asin", "asinh", "astype", "atan", "atan2", "atanh", "bitwise_count",
        "bitwise_invert", "bitwise_left_shift", "bitwise_right_shift", "bool", "concat", "cumulative_prod",
        "cumulative_sum", "isdtype", "long", "make_aligned_dtype", "matrix_transpose", "permute_dims", "pow",
        "put_along_axis", "trapezoid", "ulong", "unique_all", "unique_counts", "unique_inverse", "unique_values",
    ],
    "cupy.linalg": ["cond", "cross", "eig", "eigvals", "matmul", "matrix_transpose"],
}
# fmt: on
NDARRAY_ONLY_IN_CUPY14 = ["byteswap", "mT", "mdspan"]
SITE = Path(simgpu.__file__).parent / "site"


# ---- CuPy 13's names and keywords ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("module", "name"), [(m, n) for m, names in ONLY_IN_CUPY14.items() for n in names])
def test_names_only_cupy14_has_are_absent(module, name):
    namespace = simgpu.MODULES[module]
    assert name not in _namespace.API["modules"][module]
    with pytest.raises(AttributeError):
        getattr(namespace, name)


def test_ndarray_members_only_cupy14_has_are_absent():
    x = cp.zeros(3)
    for name in NDARRAY_ONLY_IN_CUPY14:
        assert not hasattr(x, name), name
    assert not hasattr(x, "__array_namespace__")  # CuPy 13 arrays have none
    with pytest.raises(TypeError):
        operator.index(cp.asarray(1))  # CuPy 13's ndarray has no __index__


@pytest.mark.parametrize("module", ["cupy", "cupy.linalg", "cupy.fft", "cupy.random", "cupy.cuda", "cupy.cuda.memory"])
def test_public_names_are_those_cupy13_and_cupy14_share(module):
    public = {n for n in vars(simgpu.MODULES[module]) if not n.startswith("_")}
    assert public == set(_namespace.API["modules"][module]) - _namespace.removed_in_cupy14("modules", module)


def test_names_cupy14_removed_are_absent_and_calls_must_suit_both_versions():
    assert _namespace.CUPY14["cupy_version"] == "14.0.1"  # Colab's, recorded from the real package
    assert not hasattr(cp, "sparse")
    assert not hasattr(cp.cuda.memory, "LockAndNoGc")
    x = cp.arange(10, dtype=cp.float32)
    with pytest.raises(TypeError, match="by keyword"):  # CuPy 14 swapped density and weights
        cp.histogram(x, 4, (0.0, 10.0), x)
    cp.histogram(x, 4, range=(0.0, 10.0), weights=x)
    with pytest.raises(TypeError, match="CuPy 13"):  # a keyword only CuPy 14 has
        cp.asarray(x, copy=False)


def test_ndarray_public_members_are_cupy13s_and_hand_written_ones_match_its_signatures():
    recorded = _namespace.API["classes"]["ndarray"]
    public = {n for n in dir(cp.ndarray) if not n.startswith("_")}
    assert public == {n for n in recorded if not n.startswith("_")}
    for name, spec in recorded.items():
        hand_written = getattr(vars(cp.ndarray).get(name), "__module__", None) == "simgpu._array"
        if spec["kind"] == "method" and hand_written and spec["params"] is not None:
            params = list(inspect.signature(getattr(cp.ndarray, name)).parameters)[1:]
            assert params == [t.strip("*=") for t in spec["params"] if t not in ("/", "*")], name


@pytest.mark.parametrize("name", ["cuda.Device", "cuda.Stream", "cuda.MemoryPool", "random.Generator"])
def test_simulated_classes_have_only_cupy13_members(name):
    module, _, cls = name.rpartition(".")
    public = {n for n in dir(getattr(simgpu.MODULES[f"cupy.{module}"], cls)) if not n.startswith("_")}
    assert public <= set(_namespace.API["classes"][name])


def test_random_linalg_and_fft_return_device_arrays():
    cp.random.seed(0)
    draws = [cp.random.rand(3, dtype=np.float32), cp.random.standard_normal((2, 2)), cp.random.randint(0, 5, 4)]
    assert [(d.shape, d.dtype.kind) for d in draws] == [((3,), "f"), ((2, 2), "f"), ((4,), "i")]
    assert draws[0].dtype == np.float32
    x = cp.asarray(np.eye(3))
    assert isinstance(cp.linalg.norm(x), cp.ndarray)
    assert cp.linalg.norm(x).shape == ()
    assert cp.fft.fft(cp.ones(4)).dtype == np.complex128


def test_the_api_records_are_cupy_13_and_14():
    api = json.loads((Path(simgpu.__file__).parent / "cupy13_api.json").read_text())
    changes = json.loads((Path(simgpu.__file__).parent / "cupy14_changes.json").read_text())
    assert api["cupy_version"].startswith("13.")
    assert cp.__version__ == api["cupy_version"] == "13.6.0"
    assert changes["cupy_version"] == "14.0.1"
    assert set(api["ufunc_call_kwargs"]) == {"out", "dtype", "casting", "_where"}  # probed from CuPy 13 itself
    assert set(changes["ufunc_call_kwargs"]) == set(api["ufunc_call_kwargs"])  # and from CuPy 14
    assert simgpu.SIMULATED
    with simgpu.cupy_version("14.0.1"):
        assert cp.__version__ == "14.0.1"
    assert cp.__version__ == "13.6.0"


@pytest.mark.parametrize(
    "call",
    [
        lambda x: cp.take(x, cp.asarray([0]), mode="clip"),
        lambda x: cp.sum(x, where=x > 0),
        lambda x: cp.add(x, 1, where=x > 0),  # CuPy 13 ufuncs: out, dtype, casting only
        lambda x: cp.exp(x, order="C"),
        lambda x: cp.matmul(x, x, bogus=1),
        lambda x: x.sum(initial=0),
        lambda x: x.max(where=x > 0),
        lambda x: x.argsort(kind="stable"),
        lambda x: cp.clip(x, min=0.0, max=1.0),  # CuPy 13: clip(a, a_min, a_max, out=None)
        lambda x: cp.zeros(3, device="cpu"),
        lambda x: cp.random.default_rng(0).random(3, np.float32, None, 4),
    ],
)
def test_keywords_cupy13_lacks_raise_type_error(call):
    with pytest.raises(TypeError):
        call(cp.ones(3, dtype=cp.float32))


def test_cupy13_generator_has_no_normal_or_permutation():
    rng = cp.random.default_rng(0)
    for name in ("normal", "permutation", "shuffle", "choice"):
        assert not hasattr(rng, name)
    draw = rng.random((4, 2), dtype=np.float32)
    assert isinstance(draw, cp.ndarray)
    assert draw.dtype == np.float32
    assert draw.shape == (4, 2)


# ---- arrays that are not NumPy arrays ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "call",
    [
        np.asarray,
        np.array,
        np.sum,
        np.exp,
        lambda x: np.add(x, 1),
        lambda x: np.concatenate([x, x]),
        lambda x: x + np.ones(3),
        lambda x: np.ones(3) + x,
        lambda x: x[np.array([0, 1])],
        lambda x: x.__setitem__(slice(None), np.ones(3)),
        lambda x: x[[0, 1]],
        lambda x: cp.take(x, np.array([0]), axis=0),
        lambda x: cp.exp([1.0, 2.0]),
    ],
)
def test_numpy_and_host_data_refuse_simulated_arrays(call):
    with pytest.raises(TypeError):
        call(cp.arange(3, dtype=cp.float32))


def test_numpy_scalars_work_on_either_side():
    x = cp.arange(3, dtype=cp.float32)
    assert isinstance(np.float32(2) * x, cp.ndarray)
    assert isinstance(x * np.float32(2), cp.ndarray)
    assert isinstance(2.0 - x, cp.ndarray)
    assert cp.asnumpy(np.float32(2) * x).tolist() == [0.0, 2.0, 4.0]


def test_numpy_scalars_that_cupy13_and_cupy14_promote_differently_are_refused():
    x = cp.ones(3, dtype=cp.float32)
    for call in (lambda: x * np.float64(2), lambda: cp.add(x, np.float64(2)), lambda: x + np.int64(1)):
        with pytest.raises(TypeError, match="NEP 50"):
            call()
    assert (x * 2.0).dtype == (x * np.float32(2)).dtype == np.float32
    assert (cp.ones(3) * np.float32(2)).dtype == np.float64  # float64 array: the same in both
    x *= np.float64(2)  # in place: float32 either way
    assert cp.add(x, np.float64(2), out=x).dtype == np.float32


def test_views_and_out_share_device_memory():
    a = cp.zeros((4, 3), dtype=cp.float32)
    a[1:3] += 1
    a.T[0] = 5  # column 0 through the transpose
    a.reshape(12)[-1] = 7
    a[3, ...] = cp.full(3, 2, dtype=cp.float32)
    view = a[0]
    result = cp.multiply(view, np.float32(10), out=view)
    assert result is view
    b = cp.empty(3, dtype=cp.float32)
    assert cp.add(a[1], a[2], out=b) is b
    assert cp.sum(a, axis=0, out=b) is b
    assert cp.asarray(a) is a
    expected = [[50, 0, 0], [5, 1, 1], [5, 1, 1], [2, 2, 2]]
    assert cp.asnumpy(a).tolist() == expected
    assert cp.asnumpy(b).tolist() == [62, 4, 4]


def test_indexing():
    x = cp.arange(12, dtype=cp.int64).reshape(3, 4)
    assert x[1, 2].shape == ()
    zero_d = x[1, 2]
    x[1, 2] = 99
    assert int(zero_d) == 99  # a 0-d view, as in CuPy
    assert x[None, ..., 1:3].shape == (1, 3, 2)
    assert cp.asnumpy(x[cp.asarray([2, 0])][:, 0]).tolist() == [8, 0]
    assert cp.asnumpy(x[x > 9]).tolist() == [99, 10, 11]
    assert len(x) == 3
    assert [r.shape for r in x] == [(4,)] * 3
    assert x.flags.c_contiguous
    assert not x.T.flags.c_contiguous
    assert x.device.id == 0


def test_host_copies_are_copies():
    host = np.arange(4, dtype=np.float32)
    dev = cp.asarray(host)
    host[0] = 100
    assert float(dev[0]) == 0
    back = cp.asnumpy(dev)
    back[1] = 100
    assert float(dev[1]) == 1


# ---- host synchronisations -----------------------------------------------------------------------------------------
SYNCING = {
    "bool": lambda x: bool(x[0] > 0),
    "int": lambda x: int(x[1]),
    "float": lambda x: float(x.sum()),
    "complex": lambda x: complex(x[0]),
    "item": lambda x: x[0].item(),
    "get": lambda x: x.get(),
    "tolist": lambda x: x.tolist(),
    "tobytes": lambda x: x.tobytes(),
    "repr": repr,
    "str": str,
    "format": lambda x: f"{x[0]:.3f}",
    "asnumpy": cp.asnumpy,
    "Stream.synchronize": lambda x: cp.cuda.get_current_stream().synchronize(),
    "Device.synchronize": lambda x: cp.cuda.Device().synchronize(),
    "runtime.deviceSynchronize": lambda x: cp.cuda.runtime.deviceSynchronize(),
}


@pytest.mark.parametrize("kind", sorted(SYNCING))
def test_each_host_synchronisation_is_counted(kind):
    x = cp.arange(1, 4, dtype=cp.float32)
    before = simgpu.sync_count()
    with simgpu.count_syncs() as syncs:
        SYNCING[kind](x)
    assert syncs.count == 1, str(syncs)
    assert syncs.kinds == {kind: 1}
    assert simgpu.sync_count() == before + 1
    assert syncs.events[0][1].startswith(__file__), "the sync is attributed to the caller's line"


def test_device_work_does_not_sync():
    host = np.random.default_rng(0).random((64, 10)).astype(np.float32)
    with simgpu.count_syncs() as syncs:
        x = cp.asarray(host)  # host-to-device copy: not a sync
        total = cp.sum(x)
        peak = x.max(axis=1, keepdims=True)
        mean = x.mean()
        hits = cp.count_nonzero(x > 0.5)
        same = cp.allclose(x, x)
        shifted = cp.exp(x - peak)
        y = cp.where(x > 0.5, x, 0.0)
        n, shape = len(x), x.shape
        rows = [r for r in x[:3]]
        draw = cp.random.default_rng(1).random((3,), dtype=np.float32)
    assert syncs.count == 0, str(syncs)
    for value in (total, mean, hits, same):
        assert isinstance(value, cp.ndarray)
        assert value.shape == ()  # reductions return 0-d device arrays, as CuPy does
    assert (n, shape, len(rows), shifted.shape, y.shape, draw.shape) == (64, (64, 10), 3, (64, 10), (64, 10), (3,))
    assert float(total) == pytest.approx(float(host.sum()), rel=1e-5)


def test_reset_and_nested_counts():
    x = cp.ones(2)
    simgpu.reset_sync_count()
    assert simgpu.sync_count() == 0
    with simgpu.count_syncs() as outer:
        bool(x[0])
        with simgpu.count_syncs() as inner:
            x.get()
    assert (outer.count, inner.count, simgpu.sync_count()) == (2, 1, 2)
    assert "get at" in str(outer)


# ---- installing as `cupy` ------------------------------------------------------------------------------------------
def test_install_and_uninstall():
    previous = sys.modules.get("cupy")
    simgpu.install()
    try:
        import cupy
        import cupy.cuda.runtime
        from cupy.cuda import memory

        assert cupy is cp
        assert cupy.cuda.runtime is cp.cuda.runtime
        assert memory.OutOfMemoryError is cp.cuda.memory.OutOfMemoryError
        assert cupy.get_array_module(cupy.zeros(1)) is cupy
        assert cupy.get_array_module(np.zeros(1)) is np
        assert type(cupy.zeros(1)).__module__ == "cupy"
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        assert props["name"] == b"Simulated GPU (NumPy host)"
        assert {"totalGlobalMem", "major", "minor", "multiProcessorCount"} <= set(props)
        free, total = cupy.cuda.runtime.memGetInfo()
        assert 0 < free <= total
        assert cupy.cuda.runtime.getDeviceCount() == 1
        assert cupy.cuda.Device().compute_capability == "80"
    finally:
        simgpu.uninstall()
    assert sys.modules.get("cupy") is previous


def test_site_directory_makes_import_cupy_load_the_simulation_in_a_subprocess():
    code = (
        "import cupy, cupy.cuda.runtime as rt, numpy as np\n"
        "x = cupy.asarray(np.arange(4.0)) * 2\n"
        "print(cupy.__version__, rt.getDeviceProperties(0)['name'].decode(), float(x.sum()))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SITE)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "13.6.0 Simulated GPU (NumPy host) 12.0"


def test_memory_pool_and_out_of_memory():
    pool = cp.get_default_memory_pool()
    before = pool.used_bytes()
    x = cp.zeros(1 << 20, dtype=cp.float32)
    assert pool.used_bytes() == before + x.nbytes
    assert pool.total_bytes() >= pool.used_bytes()
    pool.set_limit(size=pool.used_bytes() + 1024)
    try:
        with pytest.raises(cp.cuda.memory.OutOfMemoryError):
            cp.empty(1 << 20, dtype=cp.float32)
    finally:
        pool.set_limit(size=0)
    del x
    assert pool.used_bytes() <= before
    pool.free_all_blocks()


# ---- CUDA C kernels on the host ------------------------------------------------------------------------------------
needs_compiler = pytest.mark.skipif(
    shutil.which(_kernels.compiler()) is None, reason=f"no host C++ compiler ({_kernels.compiler()}) to build kernels"
)
ELEMENTWISE = r"""
__device__ __forceinline__ float scaled(float v, const float a) { return a * v; }

extern "C" __global__ void axpy_relu(const long long n, const float a, const float* __restrict__ x,
                                     float* __restrict__ y)
{
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x)
        y[i] = fmaxf(scaled(x[i], a) + y[i], 0.0f);
}

extern "C" __global__ void bits(const float* x, unsigned int* out, const int n)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = __float_as_uint(x[i]) ^ (unsigned int)min(i, 3);
}
"""

REDUCTIONS = r"""
#define THREADS 256

extern "C" __global__ void block_sum(const float* __restrict__ x, float* __restrict__ out, const long long n)
{
    __shared__ float buf[THREADS];
    const unsigned int tid = threadIdx.x;
    float acc = 0.0f;
    for (long long i = blockIdx.x * (long long)blockDim.x + tid; i < n; i += (long long)blockDim.x * gridDim.x)
        acc += x[i];
    buf[tid] = acc;
    __syncthreads();
    for (unsigned int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (tid < s) buf[tid] += buf[tid + s];
        __syncthreads();
    }
    if (tid == 0) atomicAdd(out, buf[0]);
}

extern "C" __global__ void warp_sums(const float* x, float* per_warp, float* total, int* count, const int n)
{
    extern __shared__ float partial[];
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    float v = i < n ? x[i] : 0.0f;
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffff, v, offset);
    const float everyone = __shfl_xor_sync(0xffffffff, v, 0) ;
    if ((threadIdx.x & 31) == 0) {
        per_warp[i / 32] = everyone;
        partial[threadIdx.x / 32] = v;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        float s = 0.0f;
        for (unsigned int w = 0; w < blockDim.x / 32; ++w) s += partial[w];
        atomicAdd(total, s);
        atomicAdd(count, 1);
    }
}

extern "C" __global__ void butterfly_max(const float* x, float* out)
{
    float v = x[blockIdx.x * blockDim.x + threadIdx.x];
    for (int mask = 16; mask > 0; mask >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, mask));
    out[blockIdx.x * blockDim.x + threadIdx.x] = v;  // every lane holds its warp's maximum
}

extern "C" __global__ void transpose(const float* in, float* out, const int rows, const int cols)
{
    __shared__ float tile[16][17];
    int c = blockIdx.x * 16 + threadIdx.x, r = blockIdx.y * 16 + threadIdx.y;
    if (r < rows && c < cols) tile[threadIdx.y][threadIdx.x] = in[r * cols + c];
    __syncthreads();
    c = blockIdx.y * 16 + threadIdx.x;
    r = blockIdx.x * 16 + threadIdx.y;
    if (r < cols && c < rows) out[r * rows + c] = tile[threadIdx.x][threadIdx.y];
}

extern "C" __global__ void divergent(float* x)
{
    if (threadIdx.x < 8) __syncthreads();
    else x[threadIdx.x] = __shfl_down_sync(0xffffffff, x[threadIdx.x], 1);
}

extern "C" __global__ void early_exit(float* x, const int n)
{
    if ((int)threadIdx.x >= n) return;  // the classic bug: the lanes past n no longer take part in the shuffle
    x[threadIdx.x] += __shfl_down_sync(0xffffffff, x[threadIdx.x], 1);
}
"""


@pytest.fixture(scope="module")
def elementwise():
    return cp.RawModule(code=ELEMENTWISE, options=("-std=c++17", "--use_fast_math"))


@pytest.fixture(scope="module")
def reductions():
    return cp.RawModule(code=REDUCTIONS)


@needs_compiler
def test_grid_stride_kernel_matches_numpy(elementwise):
    rng = np.random.default_rng(0)
    hx, hy = rng.standard_normal(10_000).astype(np.float32), rng.standard_normal(10_000).astype(np.float32)
    x, y = cp.asarray(hx), cp.asarray(hy)
    kernel = elementwise.get_function("axpy_relu")
    with simgpu.count_syncs() as syncs:
        kernel((8,), (128,), (np.int64(x.size), np.float32(0.5), x, y))  # 1024 threads stride over 10,000
    assert syncs.count == 0  # a launch is asynchronous
    np.testing.assert_array_equal(cp.asnumpy(y), np.maximum(np.float32(0.5) * hx + hy, 0))
    raw = cp.RawKernel(ELEMENTWISE, "bits")
    out = cp.zeros(5, dtype=cp.uint32)
    raw((1,), (32,), (x, out, np.int32(5)))
    expected = hx[:5].view(np.uint32) ^ np.minimum(np.arange(5), 3).astype(np.uint32)
    np.testing.assert_array_equal(cp.asnumpy(out), expected)


@needs_compiler
def test_shared_memory_block_reduction_with_barriers(reductions):
    host = np.random.default_rng(1).random(10_000).astype(np.float32)
    out = cp.zeros(1, dtype=cp.float32)
    blocks = (host.size + 255) // 256
    reductions.get_function("block_sum")((blocks,), (256,), (cp.asarray(host), out, np.int64(host.size)))
    assert float(out[0]) == pytest.approx(float(host.sum(dtype=np.float64)), rel=1e-5)


@needs_compiler
def test_warp_shuffle_reductions(reductions):
    host = np.random.default_rng(2).random(1000).astype(np.float32)
    x = cp.asarray(host)
    per_warp, total, count = cp.zeros(32, dtype=cp.float32), cp.zeros(1, dtype=cp.float32), cp.zeros(1, cp.int32)
    kernel = reductions.get_function("warp_sums")
    kernel((4,), (256,), (x, per_warp, total, count, np.int32(host.size)), shared_mem=8 * 4)  # extern __shared__
    padded = np.zeros(1024, dtype=np.float32)
    padded[:1000] = host
    np.testing.assert_allclose(cp.asnumpy(per_warp), padded.reshape(32, 32).sum(axis=1), rtol=1e-5)
    assert float(total[0]) == pytest.approx(float(host.sum()), rel=1e-5)
    assert int(count[0]) == 4
    values = cp.asarray(np.random.default_rng(3).random(128).astype(np.float32))
    out = cp.empty_like(values)
    reductions.get_function("butterfly_max")((2,), (64,), (values, out))
    expected = np.repeat(cp.asnumpy(values).reshape(4, 32).max(axis=1), 32)
    np.testing.assert_array_equal(cp.asnumpy(out), expected)


@needs_compiler
def test_two_dimensional_blocks_and_grids(reductions):
    host = np.arange(40 * 50, dtype=np.float32).reshape(40, 50)
    out = cp.zeros((50, 40), dtype=cp.float32)
    grid = ((50 + 15) // 16, (40 + 15) // 16)
    reductions.get_function("transpose")(grid, (16, 16), (cp.asarray(host), out, np.int32(40), np.int32(50)))
    np.testing.assert_array_equal(cp.asnumpy(out), host.T)


@needs_compiler
def test_threads_waiting_at_different_barriers_are_a_deadlock(reductions):
    with pytest.raises(RuntimeError, match="deadlock"):
        reductions.get_function("divergent")((1,), (32,), (cp.zeros(32, dtype=cp.float32),))


@needs_compiler
def test_undefined_warp_shuffles_are_errors(reductions):
    x = cp.zeros(64, dtype=cp.float32)
    with pytest.raises(RuntimeError, match="exited"):
        reductions.get_function("early_exit")((1,), (32,), (x, np.int32(20)))
    reductions.get_function("early_exit")((1,), (32,), (x, np.int32(32)))  # every lane present: fine
    with pytest.raises(RuntimeError, match="partial warp"):
        reductions.get_function("butterfly_max")((1,), (48,), (x, x))


@needs_compiler
def test_compile_errors_carry_the_compiler_message():
    kernel = cp.RawKernel('extern "C" __global__ void broken(float* x) { x[0] = undeclared; }', "broken")
    with pytest.raises(cp.cuda.compiler.CompileException, match="undeclared"):
        kernel((1,), (1,), (cp.zeros(1, dtype=cp.float32),))


@needs_compiler
def test_unknown_kernel_name(elementwise):
    with pytest.raises(RuntimeError, match="no kernel named"):
        elementwise.get_function("missing")


@needs_compiler
@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((10_000, np.float32(1), "x", "y"), TypeError, "Python int"),
        ((np.int64(4), 0.5, "x", "y"), TypeError, "Python float"),
        ((np.int32(4), np.float32(1), "x", "y"), TypeError, "i8 scalar"),  # CuPy would pass 4 bytes for 8
        ((np.int64(4), np.float64(1), "x", "y"), TypeError, "f4 scalar"),
        ((np.int64(4), np.float32(1), "x", "strided"), ValueError, "C-contiguous"),
        ((np.int64(4), np.float32(1), "x", "ints"), TypeError, "dtype int32"),
        ((np.int64(4), np.float32(1), "x", "host"), TypeError, "pointer"),
        ((np.int64(4), np.float32(1), "x"), TypeError, "takes 4 arguments"),
    ],
)
def test_kernel_arguments_are_checked_against_the_parameter_types(elementwise, args, error, match):
    arrays = {
        "x": cp.ones(8, dtype=cp.float32),
        "y": cp.ones(8, dtype=cp.float32),
        "strided": cp.ones(16, dtype=cp.float32)[::2],
        "ints": cp.ones(8, dtype=cp.int32),
        "host": np.ones(8, dtype=np.float32),
    }
    args = tuple(arrays.get(a, a) if isinstance(a, str) else a for a in args)
    with pytest.raises(error, match=match):
        elementwise.get_function("axpy_relu")((1,), (32,), args)


@needs_compiler
def test_launch_configuration_is_checked(elementwise):
    kernel = elementwise.get_function("axpy_relu")
    args = (np.int64(1), np.float32(1), cp.ones(1, dtype=cp.float32), cp.ones(1, dtype=cp.float32))
    with pytest.raises(TypeError, match="tuple"):
        kernel(1, (32,), args)  # CuPy 13: `tuple grid`
    with pytest.raises(ValueError, match="1024 threads"):
        kernel((1,), (2048,), args)
    with pytest.raises(TypeError):
        kernel((1,), (32,), args, shared=0)


@needs_compiler
def test_compiled_kernels_are_cached_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMGPU_CACHE_DIR", str(tmp_path))
    source = 'extern "C" __global__ void one(int* x) { x[threadIdx.x] = 1; }'
    cp.RawModule(code=source).compile()
    assert len(list(tmp_path.glob("*.so"))) == 1


# ---- launches ------------------------------------------------------------------------------------------------------
def test_launches_are_counted_by_the_rule_and_views_are_free():
    x = cp.arange(12, dtype=cp.float32).reshape(3, 4)
    out = cp.empty((3, 4), dtype=cp.float32)
    with simgpu.count_launches() as log:
        cp.empty((5,), dtype=cp.float32), x.reshape(4, 3), x.T, x[1:], x[:, ::2], cp.transpose(x), x[0, 1]
        assert log.count == 0, str(log)  # allocation and views
        y = x * 2.0  # elementwise
        cp.add(x, y, out=out)  # elementwise into out=
        out += 1  # in place
        cp.sum(x, axis=0)  # reduction
        x.sum()  # reduction (a method)
        cp.zeros((2,), dtype=cp.float32)  # fill
        x[cp.asarray(np.array([0, 2]))]  # advanced indexing (and the host-to-device copy of the index)
        out[...] = x  # copy
        cp.matmul(x, x.T)  # GEMM
        x.astype(cp.float64)  # copy with a cast
    assert log.count == 11, str(log)
    assert log.kinds["matmul"] == 1
    assert all(where.startswith(__file__) for _, where in log.events)


def test_a_broadcast_matmul_is_a_batched_gemm():
    a, b = cp.ones((4, 3, 5), dtype=cp.float32), cp.ones((5, 2), dtype=cp.float32)
    with simgpu.count_launches() as log:
        cp.matmul(a, b)
        a @ b
        cp.matmul(a[0], b)
    assert log.kinds == {"matmul(batched)": 2, "matmul": 1}


@needs_compiler
def test_a_raw_kernel_launch_counts_one(elementwise):
    x, y = cp.ones(8, dtype=cp.float32), cp.ones(8, dtype=cp.float32)
    kernel = elementwise.get_function("axpy_relu")
    with simgpu.count_launches() as log:
        kernel((1,), (32,), (np.int64(8), np.float32(1), x, y))
    assert log.kinds == {"kernel:axpy_relu": 1}


# ---- what a launch may pass, and how a kernel runs -------------------------------------------------------------------
@needs_compiler
def test_none_for_a_pointer_is_refused(elementwise):
    with pytest.raises(TypeError, match="NULL"):
        elementwise.get_function("axpy_relu")((1,), (32,), (np.int64(8), np.float32(1), None, cp.ones(8, cp.float32)))


MIXED = r"""
#define SYNC_BOTH() __syncthreads()
__device__ float helper(float v) { __syncthreads(); return v; }
__device__ float plain(float v) { return v + 1.0f; }
extern "C" __global__ void through_helper(float* x) { x[threadIdx.x] = helper(x[threadIdx.x]); }
extern "C" __global__ void through_macro(float* x) { SYNC_BOTH(); x[threadIdx.x] += 1.0f; }
extern "C" __global__ void __launch_bounds__(64) elementwise_only(float* x) { x[threadIdx.x] = plain(x[threadIdx.x]); }
extern "C" __global__ void own_barrier(float* x) { __shared__ float s[32]; s[threadIdx.x] = x[threadIdx.x];
    __syncthreads(); x[threadIdx.x] = s[31 - threadIdx.x]; }
"""


def test_fibers_are_decided_per_kernel_through_helpers_and_macros():
    assert _kernels.cooperative_kernels(MIXED) == {"through_helper", "through_macro", "own_barrier"}


@needs_compiler
def test_kernels_of_one_module_run_with_or_without_fibers():
    module = cp.RawModule(code=MIXED)
    x = cp.asarray(np.arange(32, dtype=np.float32))
    module.get_function("own_barrier")((1,), (32,), (x,))
    module.get_function("elementwise_only")((1,), (32,), (x,))
    np.testing.assert_array_equal(cp.asnumpy(x), np.arange(31, -1, -1, dtype=np.float32) + 1)
    assert module.get_function("own_barrier")._cooperative
    assert not module.get_function("elementwise_only")._cooperative


@needs_compiler
def test_a_module_compiles_once():
    before = simgpu.compilations()
    module = cp.RawModule(code=MIXED)
    for name in ("own_barrier", "elementwise_only", "through_macro"):
        module.get_function(name)
    assert simgpu.compilations() == before + 1


# ---- a machine with the NVIDIA driver only -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("version", "missing", "error", "match"),
    [
        ("13.6.0", "nvrtc", RuntimeError, "CuPy failed to load libnvrtc.so.12"),
        ("14.0.1", "nvrtc", RuntimeError, 'Failure finding "libnvrtc.so.13 or libnvrtc.so.12"'),
        ("13.6.0", "headers", RuntimeError, "Failed to auto-detect CUDA root directory"),
    ],
)
def test_driver_only_fails_where_cupy_compiles(version, missing, error, match):
    x = cp.ones(4, dtype=cp.float32)
    with simgpu.cupy_version(version), simgpu.driver_only(missing):
        assert cp.cuda.runtime.getDeviceCount() == 1  # CuPy imports and sees the device
        y = cp.zeros(4, dtype=cp.float32)  # a memset and copies need no compiler
        y[...] = 0
        host = cp.asnumpy(cp.asarray(np.ones(3, np.float32)))
        for compiles in (lambda: cp.RawModule(code=MIXED).get_function("own_barrier"), lambda: x * 2, lambda: x.sum()):
            with pytest.raises(error, match=match):
                compiles()
            with pytest.raises(error, match=match):  # not cached: every attempt fails again
                compiles()
    assert host.tolist() == [1, 1, 1]
    assert float((x * 2).sum()) == 8.0  # the machine is whole again outside the block


def test_without_cublas_the_first_product_fails():
    x = cp.ones((2, 2), dtype=cp.float32)
    with simgpu.driver_only("cublas"):
        x * 2
        with pytest.raises(ImportError, match="libcublas"):
            cp.matmul(x, x)
        with simgpu.cupy_version("14.0.1"), pytest.raises(ImportError, match="libcublasLt"):
            x @ x
