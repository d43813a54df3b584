"""fmnist's CUDA source compiled by the real NVRTC (the compiler CuPy runs on the user's machine) for the T4
(compute_75 PTX, sm_75) and Hopper (sm_90), with the options CuPy 13 and CuPy 14 pass, and no warning. No GPU is
needed: NVRTC is a pip wheel (``nvidia-cuda-nvrtc-cu12``, which CI installs); without it these tests skip."""

from __future__ import annotations

import pytest

from fmnist.backend.cupy_ops import SOURCE

nvrtc_check = pytest.importorskip("nvrtc_check")


@pytest.fixture(scope="module")
def nvrtc():
    try:
        return nvrtc_check.Nvrtc()
    except (nvrtc_check.NvrtcNotFound, OSError) as err:
        pytest.skip(f"no NVRTC here ({err})")


@pytest.fixture(scope="module")
def compiled(nvrtc):
    return {(r.arch, r.std): r for r in nvrtc.compile_all(SOURCE)}


@pytest.mark.parametrize("std", list(nvrtc_check.STDS))
@pytest.mark.parametrize("arch", nvrtc_check.ARCHS)
def test_the_kernels_compile_under_nvrtc_without_a_warning(compiled, arch, std):
    result = compiled[(arch, std)]
    assert result.status == 0, result.log
    assert result.log.strip() == "", f"NVRTC logged (every warning is an error here):\n{result.log}"
    assert result.size > 0


def test_the_check_catches_what_nvcc_lets_through(nvrtc):
    body = 'extern "C" __global__ void k(float* x) { x[threadIdx.x] = 1.0f; }\n'
    warning = nvrtc.compile('extern "C" __global__ void k(float* x) { int unused = 0; x[0] = 1.0f; }\n', "compute_75",
                            "c++17")  # fmt: skip
    assert warning.status == 0
    assert "unused" in warning.log  # nvcc compiles this with exit status 0 unless -Werror all-warnings
    header = nvrtc.compile("#include <cmath>\n" + body, "compute_75", "c++17")
    assert header.status != 0  # NVRTC has no host headers; nvcc finds <cmath>
    assert "cmath" in header.log
    assert nvrtc.compile(body, "compute_75", "c++11").clean
