// fmnist's CUDA kernels (CupyOps): one translation unit, loaded by fmnist/backend/cupy_ops.py and compiled by
// CuPy's RawModule (NVRTC) on first use. It must compile under NVRTC, which has no host headers: no #include.
// CI compiles it with nvcc for sm_75 (T4) and sm_90 (Hopper), and for the host with g++ through the
// simulated GPU (tests/simgpu), where every kernel's maths is checked against the readable Ops.

// Counter-based uniform numbers: the same bits as Ops.uniform (murmur3's finaliser on uint32).
__device__ __forceinline__ unsigned int fmnist_fmix32(unsigned int x)
{
    x ^= x >> 16;
    x *= 0x85EBCA6Bu;
    x ^= x >> 13;
    x *= 0xC2B2AE35u;
    return x ^ (x >> 16);
}

__device__ __forceinline__ float fmnist_unit(long long i, unsigned int k0, unsigned int k1)
{
    unsigned int x = (unsigned int)i * 0x9E3779B9u + k0;
    x = fmnist_fmix32(fmnist_fmix32(x) ^ k1);
    return (float)(x >> 8) * 5.9604644775390625e-08f;  // 2^-24: exact
}

#define FMNIST_GRID_STRIDE(i, n)                                                  \
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n); \
         i += (long long)blockDim.x * gridDim.x)

extern "C" __global__ void fmnist_uniform(float* __restrict__ out, const long long n, const unsigned int k0,
                                          const unsigned int k1)
{
    FMNIST_GRID_STRIDE(i, n) { out[i] = fmnist_unit(i, k0, k1); }
}

extern "C" __global__ void fmnist_dropout(const float* __restrict__ x, float* __restrict__ out,
                                          float* __restrict__ mask, const long long n, const unsigned int k0,
                                          const unsigned int k1, const float p, const float scale)
{
    FMNIST_GRID_STRIDE(i, n)
    {
        const float m = fmnist_unit(i, k0, k1) >= p ? scale : 0.0f;
        mask[i] = m;
        out[i] = x[i] * m;
    }
}

// Batch gather from uint8 images (rows of length d) and scaling: out[r, j] = images[rows[r], j] * scale + shift.
extern "C" __global__ void fmnist_gather_scale(const unsigned char* __restrict__ images,
                                               const long long* __restrict__ rows, float* __restrict__ out,
                                               const long long n, const long long d, const float scale,
                                               const float shift)
{
    FMNIST_GRID_STRIDE(i, n * d)
    {
        const long long r = i / d, j = i - r * d;
        out[i] = (float)images[rows[r] * d + j] * scale + shift;
    }
}

// Mirror (u0 < 1/2, when flip) then shift by floor(u * (2k+1)) - k in each direction, fill coming in.
extern "C" __global__ void fmnist_shift_flip(const float* __restrict__ x, float* __restrict__ out,
                                             const float* __restrict__ u, const long long n, const int side,
                                             const int k, const int flip, const float fill)
{
    const long long pixels = (long long)side * side;
    const float span = (float)(2 * k + 1);
    FMNIST_GRID_STRIDE(i, n * pixels)
    {
        const long long img = i / pixels;
        const int r = (int)(i - img * pixels) / side, c = (int)(i - img * pixels) % side;
        const bool mirror = flip && u[img * 3] < 0.5f;
        const int dy = min((int)floorf(u[img * 3 + 1] * span), 2 * k) - k;
        const int dx = min((int)floorf(u[img * 3 + 2] * span), 2 * k) - k;
        const int sr = r + dy, sc = c + dx;
        float value = fill;
        if (sr >= 0 && sr < side && sc >= 0 && sc < side)
            value = x[img * pixels + (long long)sr * side + (mirror ? side - 1 - sc : sc)];
        out[i] = value;
    }
}

extern "C" __global__ void fmnist_sigmoid(const float* __restrict__ z, float* __restrict__ out, const long long n)
{
    FMNIST_GRID_STRIDE(i, n)
    {
        const float e = expf(-fabsf(z[i]));  // in (0, 1]: never overflows
        out[i] = z[i] >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
    }
}

// Softmax + cross-entropy with label smoothing eps, one thread per row: the row's loss and dL/dlogits.
extern "C" __global__ void fmnist_softmax_xent(const float* __restrict__ logits, const long long* __restrict__ y,
                                               float* __restrict__ dlogits, float* __restrict__ row_loss,
                                               const long long n, const int k, const float eps)
{
    FMNIST_GRID_STRIDE(row, n)
    {
        const float* z = logits + row * k;
        float* dz = dlogits + row * k;
        float peak = z[0];
        for (int j = 1; j < k; ++j) peak = fmaxf(peak, z[j]);
        float total = 0.0f, shifted_sum = 0.0f;
        for (int j = 0; j < k; ++j) {
            total += expf(z[j] - peak);
            shifted_sum += z[j] - peak;
        }
        const long long label = y[row];
        const float picked = (1.0f - eps) * (z[label] - peak) + (eps / k) * shifted_sum;
        row_loss[row] = logf(total) - picked;
        const float inv_n = 1.0f / (float)n;
        for (int j = 0; j < k; ++j) {
            const float target = (j == label ? 1.0f - eps : 0.0f) + eps / k;
            dz[j] = (expf(z[j] - peak) / total - target) * inv_n;
        }
    }
}

// Every optimizer rule over a flat buffer in one pass. rule: 0 sgd, 1 momentum, 2 nesterov momentum, 3 rmsprop,
// 4 adam (nadam through c_m, c_g). a: momentum / rmsprop beta / adam beta1; b: adam beta2.
// L2 decay adds l2 * theta to the gradient; decoupled decay scales theta by shrink first.
extern "C" __global__ void fmnist_optimizer(const int rule, const long long n, float* __restrict__ data,
                                            const float* __restrict__ grad, float* __restrict__ s1,
                                            float* __restrict__ s2, const float lr, const float a, const float b,
                                            const float eps, const float c_m, const float c_g, const float c_v,
                                            const float l2, const float shrink)
{
    FMNIST_GRID_STRIDE(i, n)
    {
        const float d = data[i];
        const float g = grad[i] + l2 * d;
        float step;
        if (rule == 0) {
            step = g;
        } else if (rule == 1 || rule == 2) {
            const float buf = a * s1[i] + g;
            s1[i] = buf;
            step = rule == 1 ? buf : g + a * buf;
        } else if (rule == 3) {
            const float v = a * s1[i] + (1.0f - a) * g * g;
            s1[i] = v;
            step = g / (sqrtf(v) + eps);
        } else {
            const float m = a * s1[i] + (1.0f - a) * g;
            const float v = b * s2[i] + (1.0f - b) * g * g;
            s1[i] = m;
            s2[i] = v;
            step = (c_m * m + c_g * g) / (sqrtf(v) * c_v + eps);
        }
        data[i] = d * shrink - lr * step;
    }
}
