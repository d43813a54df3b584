// fmnist's CUDA kernels (CupyOps): one translation unit, loaded by fmnist/backend/cupy_ops.py and compiled by
// CuPy's RawModule (NVRTC) when the GPU backend is chosen (its probe compiles it and runs fmnist_probe).
//
// Rules for this file:
// - It must compile under NVRTC, which has no host headers: no #include (CI compiles it with the real NVRTC for
//   compute_75, sm_75 and sm_90 with CuPy 13's and 14's options, failing on any warning; with nvcc; and for the
//   host with g++ through the simulated GPU, tests/simgpu, where every kernel is checked against the readable Ops).
// - __restrict__ only on pointers that never alias another argument. An output that a key chain may hand back as
//   the input of the next call (Ops' key contract: activations, dropout, batch norm run in place) is not
//   __restrict__, and such kernels read element i before writing element i and nothing else.
// - Reductions are deterministic (no float atomics): per-thread sums in a fixed order, a fixed tree in shared
//   memory, per-block partials in double merged in block order by the block that finishes last (one integer
//   atomicAdd per block on a counter the last block resets to 0). The same inputs give the same bits on every
//   run, which fmnist's exact resume needs.
// - Pointers are never NULL: an optional operand comes with a flag (CuPy passes None as a NULL argument address).
//
// Layouts: images are channels-last (n, h, w, c), as NumpyOps keeps them; a (rows, C) view of them has one row per
// pixel. im2col columns are (n*oh*ow, c*k*k) with column index (ch, i, j), PyTorch's weight order, so that the
// weights (o, c, k, k) are the GEMM operand as they are. Batch-norm statistics buffers are (2*C) floats:
// [mean | inv_std]; gradient coefficients (2*C) floats: [mean of u | mean of u*x_hat] (0 in evaluation).
//
// Launch configurations (CupyOps): elementwise kernels take block (256) and grid min(ceil(total/256), 4096) and
// stride over the grid; reductions take block (32 channels, 8 row lanes) and grid (GX, ceil(C/32)).

#define FMNIST_GRID_STRIDE(i, n)                                                  \
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n); \
         i += (long long)blockDim.x * gridDim.x)

#define FMNIST_LANES 8  // row lanes of a reduction block (blockDim.y)
#define FMNIST_TILE 32  // channels of a reduction block (blockDim.x)

// The kernel the GPU probe compiles (with the whole file) and runs before fmnist chooses the GPU.
extern "C" __global__ void fmnist_probe(float* __restrict__ out, const long long n)
{
    FMNIST_GRID_STRIDE(i, n) { out[i] = 2.0f * (float)i + 1.0f; }
}

// The "last block" handshake of a deterministic reduction over the grid: every thread of every block calls it
// once its block's partials are written; it returns true in the one block (of this grid row) that finishes last,
// which then merges the partials in block order. The counter (0 before) is back at 0 for the next launch.
__device__ bool fmnist_last_block(unsigned int* counter)
{
    __shared__ int last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0 && threadIdx.y == 0) {
        last = atomicAdd(counter, 1u) == gridDim.x - 1;
        if (last) *counter = 0u;
    }
    __syncthreads();
    return last != 0;
}

// ---- counter-based random numbers, data, augmentation -----------------------------------------------------------

// The same bits as Ops.uniform: murmur3's finaliser on uint32.
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

extern "C" __global__ void fmnist_uniform(float* __restrict__ out, const long long n, const unsigned int k0,
                                          const unsigned int k1)
{
    FMNIST_GRID_STRIDE(i, n) { out[i] = fmnist_unit(i, k0, k1); }
}

// Inverted dropout; the mask of element i is uniform number i, so it follows the arrays' element order (NHWC for
// images, as on the CPU: a run resumed on the other device draws the same masks). out may be x.
extern "C" __global__ void fmnist_dropout(const float* x, float* out, float* __restrict__ mask, const long long n,
                                          const unsigned int k0, const unsigned int k1, const float p,
                                          const float scale)
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

// Mirror (u0 < 1/2, when flip) then shift by floor(u * (2k+1)) - k in each direction, fill coming in; u is uniform
// number (img*3 + 0..2) of the draw, computed here (the same bits as Ops.uniform((n, 3), ...)). Reads other pixels
// of x: out must not be x (CupyOps gives it another buffer).
extern "C" __global__ void fmnist_shift_flip(const float* __restrict__ x, float* __restrict__ out, const long long n,
                                             const int side, const int k, const int flip, const float fill,
                                             const unsigned int k0, const unsigned int k1)
{
    const long long pixels = (long long)side * side;
    const float span = (float)(2 * k + 1);
    FMNIST_GRID_STRIDE(i, n * pixels)
    {
        const long long img = i / pixels;
        const int r = (int)(i - img * pixels) / side, c = (int)(i - img * pixels) % side;
        const bool mirror = flip && fmnist_unit(img * 3, k0, k1) < 0.5f;
        const int dy = min((int)floorf(fmnist_unit(img * 3 + 1, k0, k1) * span), 2 * k) - k;
        const int dx = min((int)floorf(fmnist_unit(img * 3 + 2, k0, k1) * span), 2 * k) - k;
        const int sr = r + dy, sc = c + dx;
        float value = fill;
        if (sr >= 0 && sr < side && sc >= 0 && sc < side)
            value = x[img * pixels + (long long)sr * side + (mirror ? side - 1 - sc : sc)];
        out[i] = value;
    }
}

// ---- activations ------------------------------------------------------------------------------------------------

// sigma(z) without overflow; out may be z (a key chain runs in place).
extern "C" __global__ void fmnist_sigmoid(const float* z, float* out, const long long n)
{
    FMNIST_GRID_STRIDE(i, n)
    {
        const float v = z[i];
        const float e = expf(-fabsf(v));  // in (0, 1]: never overflows
        out[i] = v >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
    }
}

// dz = da where a > 0, else 0, in one pass (no mask array). out may be da.
extern "C" __global__ void fmnist_relu_backward(const float* __restrict__ a, const float* da, float* out,
                                                const long long n)
{
    FMNIST_GRID_STRIDE(i, n) { out[i] = a[i] > 0.0f ? da[i] : 0.0f; }
}

// ---- losses -----------------------------------------------------------------------------------------------------

// Softmax + cross-entropy (label smoothing eps) and dL/dlogits, one thread per row, with the mean loss finished in
// the same launch: per-block sums of the row losses (a fixed tree), added in block order by the last block.
// blockDim.x must be 256; partials (gridDim.x floats) and counter (one, zero) are scratch.
extern "C" __global__ void fmnist_softmax_xent(const float* logits, const long long* __restrict__ y, float* dlogits,
                                               float* __restrict__ loss, const long long n, const int k,
                                               const float eps, float* __restrict__ partials,
                                               unsigned int* __restrict__ counter)
{
    __shared__ float sums[256];
    float mine = 0.0f;
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
        mine += logf(total) - picked;
        const float inv_n = 1.0f / (float)n;
        for (int j = 0; j < k; ++j) {  // element j read before it is written: dlogits may be logits
            const float target = (j == label ? 1.0f - eps : 0.0f) + eps / k;
            dz[j] = (expf(z[j] - peak) / total - target) * inv_n;
        }
    }
    sums[threadIdx.x] = mine;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if ((int)threadIdx.x < half) sums[threadIdx.x] += sums[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) partials[blockIdx.x] = sums[0];
    if (!fmnist_last_block(counter) || threadIdx.x != 0) return;
    const volatile float* part = partials;
    float total = 0.0f;
    for (unsigned b = 0; b < gridDim.x; ++b) total += part[b];
    loss[0] = total / (float)n;
}

// How many rows of logits (n, k) have their first largest value at the label: one block of 256 threads, an integer
// count (exact), written as a 0-d float.
extern "C" __global__ void fmnist_count_correct(const float* __restrict__ logits, const long long* __restrict__ y,
                                                float* __restrict__ out, const long long n, const int k)
{
    __shared__ long long hits[256];
    long long mine = 0;
    for (long long row = threadIdx.x; row < n; row += blockDim.x) {
        const float* z = logits + row * k;
        int best = 0;
        for (int j = 1; j < k; ++j)
            if (z[j] > z[best]) best = j;
        mine += best == y[row];
    }
    hits[threadIdx.x] = mine;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if ((int)threadIdx.x < half) hits[threadIdx.x] += hits[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[0] = (float)hits[0];
}

// ---- optimizer --------------------------------------------------------------------------------------------------

// Every optimizer rule over a flat buffer in one pass. rule: 0 sgd, 1 momentum, 2 nesterov momentum, 3 rmsprop,
// 4 adam (nadam through c_m, c_g). a: momentum / rmsprop beta / adam beta1; b: adam beta2.
// L2 decay adds l2 * theta to the gradient; decoupled decay scales theta by shrink first. A rule that keeps less
// state is passed data for s1 / s2 and never touches them. The parameters are flushed to 0 below the smallest normal
// float, as Ops does (a network that learns nothing drifts there, and CPUs without flush-to-zero slow down 10x).
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
        const float theta = d * shrink - lr * step;
        data[i] = fabsf(theta) < 1.17549435e-38f ? 0.0f : theta;  // below the smallest normal float: 0 (NaN stays)
    }
}

// ---- convolution ------------------------------------------------------------------------------------------------

// Where element i of a channels-last (n, h, w, c) array sits: image, row, column, channel.
struct fmnist_at {
    long long img;
    int row, col, ch;
};

__device__ __forceinline__ fmnist_at fmnist_nhwc(const long long i, const int h, const int w, const int c)
{
    fmnist_at at;
    at.ch = (int)(i % c);
    const long long pixel = i / c;
    at.col = (int)(pixel % w);
    at.row = (int)((pixel / w) % h);
    at.img = pixel / ((long long)w * h);
    return at;
}

// col[(img, p, q), (ch, i, j)] = x[img, p*s - pad + i, q*s - pad + j, ch], 0 outside the image.
extern "C" __global__ void fmnist_im2col(const float* __restrict__ x, float* __restrict__ col, const int n,
                                         const int h, const int w, const int c, const int k, const int stride,
                                         const int pad, const int oh, const int ow)
{
    const int kk = k * k;
    const long long K = (long long)kk * c;
    const long long total = (long long)n * oh * ow * K;
    FMNIST_GRID_STRIDE(idx, total)
    {
        const long long r = idx / K;
        const int t = (int)(idx - r * K);
        const int ch = t / kk, ij = t - ch * kk;
        const int i = ij / k, j = ij - i * k;
        const int q = (int)(r % ow);
        const long long pr = r / ow;
        const int p = (int)(pr % oh);
        const long long img = pr / oh;
        const int hi = p * stride - pad + i, wi = q * stride - pad + j;
        col[idx] = (hi >= 0 && hi < h && wi >= 0 && wi < w) ? x[((img * h + hi) * w + wi) * c + ch] : 0.0f;
    }
}

// The adjoint of im2col without atomics: each input pixel gathers the column entries copied from it, taps in
// row-major order (the order Ops.col2im adds them), and every element of dx is written.
extern "C" __global__ void fmnist_col2im(const float* __restrict__ col, float* __restrict__ dx, const int n,
                                         const int h, const int w, const int c, const int k, const int stride,
                                         const int pad, const int oh, const int ow)
{
    const int kk = k * k;
    const long long K = (long long)kk * c;
    const long long total = (long long)n * h * w * c;
    FMNIST_GRID_STRIDE(idx, total)
    {
        const fmnist_at at = fmnist_nhwc(idx, h, w, c);
        const int hi = at.row, wi = at.col, ch = at.ch;
        const long long img = at.img;
        float sum = 0.0f;
        for (int i = 0; i < k; ++i) {
            const int ph = hi + pad - i;
            if (ph < 0 || ph % stride != 0 || ph / stride >= oh) continue;
            const int p = ph / stride;
            for (int j = 0; j < k; ++j) {
                const int pw = wi + pad - j;
                if (pw < 0 || pw % stride != 0 || pw / stride >= ow) continue;
                sum += col[((img * oh + p) * ow + pw / stride) * K + ch * kk + i * k + j];
            }
        }
        dx[idx] = sum;
    }
}

// Direct convolution for few input values per output (c*k*k <= 25: a first layer), the bias included when
// has_bias: one launch instead of im2col + GEMM + bias. y[(img, p, q), o] = b[o] + sum W[o, ch, i, j] * x[...].
// Reads other pixels of x: y must not be x.
extern "C" __global__ void fmnist_conv_small(const float* __restrict__ x, const float* __restrict__ weight,
                                             const float* __restrict__ bias, const int has_bias,
                                             float* __restrict__ y, const int n, const int h, const int w,
                                             const int c, const int out_c, const int k, const int stride,
                                             const int pad, const int oh, const int ow)
{
    const long long total = (long long)n * oh * ow * out_c;
    FMNIST_GRID_STRIDE(idx, total)
    {
        const fmnist_at at = fmnist_nhwc(idx, oh, ow, out_c);
        const int p = at.row, q = at.col, o = at.ch;
        const long long img = at.img;
        const float* wo = weight + (long long)o * c * k * k;
        float acc = 0.0f;
        for (int ch = 0; ch < c; ++ch)
            for (int i = 0; i < k; ++i) {
                const int hi = p * stride - pad + i;
                if (hi < 0 || hi >= h) continue;
                for (int j = 0; j < k; ++j) {
                    const int wi = q * stride - pad + j;
                    if (wi < 0 || wi >= w) continue;
                    acc += wo[(ch * k + i) * k + j] * x[((img * h + hi) * w + wi) * c + ch];
                }
            }
        y[idx] = has_bias ? acc + bias[o] : acc;
    }
}

// The weight (and, when has_bias, bias) gradients of fmnist_conv_small in one launch:
// dW[o, t] = sum over rows of dy[row, o] * col[row, t], db[o] = sum over rows of dy[row, o]; rows = n*oh*ow,
// t = (ch, i, j). Block (32 out channels, 8 row lanes), grid (GX, ceil(O/32)); partials GX*O*(K+1) doubles.
#define FMNIST_SMALL_K 26  // K + 1 <= 26: up to 5x5 kernels on one channel
extern "C" __global__ void fmnist_conv_small_weight_grad(
    const float* __restrict__ x, const float* __restrict__ dy, float* __restrict__ weight_grad,
    float* __restrict__ bias_grad, const int has_bias, const int n, const int h, const int w, const int c,
    const int out_c, const int k, const int stride, const int pad, const int oh, const int ow,
    double* __restrict__ partials, unsigned int* __restrict__ counters)
{
    __shared__ float lanes[FMNIST_LANES][FMNIST_TILE][FMNIST_SMALL_K];
    const int K = c * k * k, T = K + 1;
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int o = blockIdx.y * FMNIST_TILE + tx;
    const long long rows = (long long)n * oh * ow;
    float acc[FMNIST_SMALL_K];
    for (int t = 0; t < T; ++t) acc[t] = 0.0f;
    if (o < out_c) {
        for (long long r = (long long)blockIdx.x * FMNIST_LANES + ty; r < rows;
             r += (long long)gridDim.x * FMNIST_LANES) {
            const float g = dy[r * out_c + o];
            const int q = (int)(r % ow), p = (int)((r / ow) % oh);
            const long long img = r / ((long long)ow * oh);
            for (int ch = 0; ch < c; ++ch)
                for (int i = 0; i < k; ++i) {
                    const int hi = p * stride - pad + i;
                    for (int j = 0; j < k; ++j) {
                        const int wi = q * stride - pad + j;
                        if (hi >= 0 && hi < h && wi >= 0 && wi < w)
                            acc[(ch * k + i) * k + j] += g * x[((img * h + hi) * w + wi) * c + ch];
                    }
                }
            acc[K] += g;
        }
    }
    for (int t = 0; t < T; ++t) lanes[ty][tx][t] = acc[t];
    __syncthreads();
    if (ty == 0 && o < out_c) {
        for (int t = 0; t < T; ++t) {
            double s = 0.0;
            for (int l = 0; l < FMNIST_LANES; ++l) s += (double)lanes[l][tx][t];
            partials[((long long)blockIdx.x * out_c + o) * T + t] = s;
        }
    }
    if (!fmnist_last_block(&counters[blockIdx.y])) return;
    if (ty == 0 && o < out_c) {
        const volatile double* part = partials;
        for (int t = 0; t < T; ++t) {
            double s = 0.0;
            for (unsigned b = 0; b < gridDim.x; ++b) s += part[((long long)b * out_c + o) * T + t];
            if (t < K)
                weight_grad[(long long)o * K + t] = (float)s;
            else if (has_bias)
                bias_grad[o] = (float)s;
        }
    }
}

// ---- pooling ----------------------------------------------------------------------------------------------------

// Max pooling of (n, h, w, C) with any window and stride; argmax = i*k + j inside the window, the first maximum.
// y may be x only for a 1x1 window (then each element reads itself).
extern "C" __global__ void fmnist_max_pool(const float* x, float* y, unsigned char* __restrict__ argmax, const int n,
                                           const int h, const int w, const int C, const int k, const int stride,
                                           const int oh, const int ow)
{
    const long long total = (long long)n * oh * ow * C;
    FMNIST_GRID_STRIDE(idx, total)
    {
        const fmnist_at px = fmnist_nhwc(idx, oh, ow, C);
        const long long top = px.img * h + (long long)px.row * stride;
        const float* base = x + (top * w + (long long)px.col * stride) * C + px.ch;
        float best = base[0];
        int tap = 0;
        for (int t = 1; t < k * k; ++t) {
            const float v = base[((long long)(t / k) * w + (t % k)) * C];
            if (v > best) {
                best = v;
                tap = t;
            }
        }
        y[idx] = best;
        argmax[idx] = (unsigned char)tap;
    }
}

// dx[img, row, col, c] = the sum of dy over the windows whose maximum is that pixel (overlapping windows add up),
// taps in row-major order as Ops adds them; no atomics, every element written.
extern "C" __global__ void fmnist_max_pool_backward(const float* dy, const unsigned char* __restrict__ argmax,
                                                    float* dx, const int n, const int h, const int w, const int C,
                                                    const int k, const int stride, const int oh, const int ow)
{
    const long long total = (long long)n * h * w * C;
    FMNIST_GRID_STRIDE(idx, total)
    {
        const fmnist_at at = fmnist_nhwc(idx, h, w, C);
        const int row = at.row, col = at.col, c = at.ch;
        const long long img = at.img;
        float sum = 0.0f;
        for (int i = 0; i < k; ++i) {
            const int ph = row - i;
            if (ph < 0 || ph % stride != 0 || ph / stride >= oh) continue;
            for (int j = 0; j < k; ++j) {
                const int pw = col - j;
                if (pw < 0 || pw % stride != 0 || pw / stride >= ow) continue;
                const long long at = ((img * oh + ph / stride) * ow + pw / stride) * C + c;
                if (argmax[at] == i * k + j) sum += dy[at];
            }
        }
        dx[idx] = sum;
    }
}

// ---- batch norm: statistics, normalisation, gradients ----------------------------------------------------------

// Chan et al.'s merge of (count, mean, M2) summaries.
__device__ __forceinline__ void fmnist_chan_merge(double& na, double& ma, double& m2a, const double nb,
                                                  const double mb, const double m2b)
{
    if (nb == 0.0) return;
    const double total = na + nb;
    const double d = mb - ma;
    ma += d * (nb / total);
    m2a += m2b + d * d * (na * nb / total);
    na = total;
}

// The (count, mean, M2) of channel c over rows first, first + stride, ... of x (rows, C), merged over the block's
// row lanes into sn/sm/s2[0][threadIdx.x] (a fixed tree). Per thread: float sums of x - shift, shift = the thread's
// first value (a sample: no cancellation), then double.
__device__ void fmnist_tile_moments(const float* x, const long long rows, const int C, const int c,
                                    const long long first, const long long stride,
                                    double (*sn)[FMNIST_TILE], double (*sm)[FMNIST_TILE], double (*s2)[FMNIST_TILE])
{
    const int tx = threadIdx.x, ty = threadIdx.y;
    float shift = 0.0f, a1 = 0.0f, a2 = 0.0f;
    long long count = 0;
    if (c < C) {
        for (long long r = first; r < rows; r += stride) {
            const float v = x[r * C + c];
            if (count == 0) shift = v;
            const float d = v - shift;
            a1 += d;
            a2 += d * d;
            ++count;
        }
    }
    const double cnt = (double)count;
    sn[ty][tx] = cnt;
    sm[ty][tx] = count ? (double)shift + (double)a1 / cnt : 0.0;
    s2[ty][tx] = count ? fmax((double)a2 - (double)a1 * (double)a1 / cnt, 0.0) : 0.0;
    __syncthreads();
    for (int half = FMNIST_LANES / 2; half > 0; half /= 2) {
        if (ty < half) {
            double na = sn[ty][tx], ma = sm[ty][tx], m2a = s2[ty][tx];
            fmnist_chan_merge(na, ma, m2a, sn[ty + half][tx], sm[ty + half][tx], s2[ty + half][tx]);
            sn[ty][tx] = na;
            sm[ty][tx] = ma;
            s2[ty][tx] = m2a;
        }
        __syncthreads();
    }
}

// From a channel's count, mean and M2: move the running statistics as PyTorch does (r <- (1-momentum) r +
// momentum * batch value, the variance unbiased) and write stats = [mean | inv_std]. Returns inv_std.
__device__ __forceinline__ float fmnist_bn_finish(const double na, const double ma, const double m2a, const int C,
                                                  const int c, float* running_mean, float* running_var,
                                                  const float momentum, const float eps, float* stats)
{
    const float mean = (float)ma, var = (float)(m2a / na);
    const float unbias = (float)(na / (na > 1.0 ? na - 1.0 : 1.0));
    running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * mean;
    running_var[c] = (1.0f - momentum) * running_var[c] + momentum * (var * unbias);
    const float inv_std = 1.0f / sqrtf(var + eps);
    stats[c] = mean;
    stats[C + c] = inv_std;
    return inv_std;
}

// Training statistics of x viewed as (rows, C), over the whole grid in one launch: each block its share of the
// rows, partials in double, the block that finishes last merges them in block order and calls fmnist_bn_finish.
extern "C" __global__ void fmnist_bn_moments(const float* __restrict__ x, const long long rows, const int C,
                                             float* __restrict__ running_mean, float* __restrict__ running_var,
                                             const float momentum, const float eps, double* __restrict__ partials,
                                             unsigned int* __restrict__ counters, float* __restrict__ stats)
{
    __shared__ double sn[FMNIST_LANES][FMNIST_TILE], sm[FMNIST_LANES][FMNIST_TILE], s2[FMNIST_LANES][FMNIST_TILE];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int c = blockIdx.y * FMNIST_TILE + tx;
    const long long first = (long long)blockIdx.x * FMNIST_LANES + ty;
    fmnist_tile_moments(x, rows, C, c, first, (long long)gridDim.x * FMNIST_LANES, sn, sm, s2);
    if (ty == 0 && c < C) {
        double* mine = partials + ((long long)blockIdx.x * C + c) * 3;
        mine[0] = sn[0][tx];
        mine[1] = sm[0][tx];
        mine[2] = s2[0][tx];
    }
    if (!fmnist_last_block(&counters[blockIdx.y])) return;
    if (ty == 0 && c < C) {
        const volatile double* part = partials;
        double na = 0.0, ma = 0.0, m2a = 0.0;
        for (unsigned b = 0; b < gridDim.x; ++b) {
            const long long at = ((long long)b * C + c) * 3;
            fmnist_chan_merge(na, ma, m2a, part[at], part[at + 1], part[at + 2]);
        }
        fmnist_bn_finish(na, ma, m2a, C, c, running_mean, running_var, momentum, eps, stats);
    }
}

// y = gamma * x_hat + beta, x_hat = (x - mean) * inv_std, per channel of (rows, C). Training: mean and inv_std from
// stats (fmnist_bn_moments). Evaluation: from the running statistics, which this kernel also writes into stats for
// the backward pass. y may be x.
extern "C" __global__ void fmnist_bn_apply(const float* x, float* y, float* __restrict__ x_hat, const long long rows,
                                           const int C, float* __restrict__ stats, const float* __restrict__ gamma,
                                           const float* __restrict__ beta, const float* __restrict__ running_mean,
                                           const float* __restrict__ running_var, const float eps,
                                           const int training)
{
    const long long total = rows * C;
    FMNIST_GRID_STRIDE(i, total)
    {
        const int c = (int)(i % C);
        float mean, inv_std;
        if (training) {
            mean = stats[c];
            inv_std = stats[C + c];
        } else {
            mean = running_mean[c];
            inv_std = 1.0f / sqrtf(running_var[c] + eps);
            if (i < C) {  // one writer per channel; no thread reads stats in evaluation
                stats[c] = mean;
                stats[C + c] = inv_std;
            }
        }
        const float xh = (x[i] - mean) * inv_std;
        x_hat[i] = xh;
        y[i] = gamma[c] * xh + beta[c];
    }
}

// Batch norm in training for few rows (a dense layer's batch), in one launch: one block per 32-channel tile
// (grid (1, ceil(C/32))) takes the statistics of its channels over every row, then normalises them. y may be x.
extern "C" __global__ void fmnist_bn_forward_small(const float* x, float* y, float* __restrict__ x_hat,
                                                   const long long rows, const int C, const float* __restrict__ gamma,
                                                   const float* __restrict__ beta, float* __restrict__ running_mean,
                                                   float* __restrict__ running_var, const float momentum,
                                                   const float eps, float* __restrict__ stats)
{
    __shared__ double sn[FMNIST_LANES][FMNIST_TILE], sm[FMNIST_LANES][FMNIST_TILE], s2[FMNIST_LANES][FMNIST_TILE];
    __shared__ float tile_mean[FMNIST_TILE], tile_inv_std[FMNIST_TILE];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int c = blockIdx.y * FMNIST_TILE + tx;
    fmnist_tile_moments(x, rows, C, c, ty, FMNIST_LANES, sn, sm, s2);
    if (ty == 0 && c < C) {
        tile_inv_std[tx] = fmnist_bn_finish(sn[0][tx], sm[0][tx], s2[0][tx], C, c, running_mean, running_var,
                                            momentum, eps, stats);
        tile_mean[tx] = stats[c];
    }
    __syncthreads();
    if (c >= C) return;
    const float mean = tile_mean[tx], inv_std = tile_inv_std[tx], g = gamma[c], b = beta[c];
    for (long long r = ty; r < rows; r += FMNIST_LANES) {
        const long long i = r * C + c;
        const float xh = (x[i] - mean) * inv_std;
        x_hat[i] = xh;
        y[i] = g * xh + b;
    }
}

// The per-channel sums (fixed order, float per thread, double across lanes) of u and u * x_hat over rows first,
// first + stride, ... of (rows, C), where u = dy, or dy where gate > 0 when gated (a ReLU or a pool + ReLU after
// the batch norm), into s1/s2[0][threadIdx.x].
__device__ void fmnist_tile_grad_sums(const float* dy, const float* gate, const int gated, const float* x_hat,
                                      const long long rows, const int C, const int c, const long long first,
                                      const long long stride, double (*s1)[FMNIST_TILE],
                                      double (*s2)[FMNIST_TILE])
{
    const int tx = threadIdx.x, ty = threadIdx.y;
    float a1 = 0.0f, a2 = 0.0f;
    if (c < C) {
        for (long long r = first; r < rows; r += stride) {
            const long long i = r * C + c;
            const float u = (!gated || gate[i] > 0.0f) ? dy[i] : 0.0f;
            a1 += u;
            a2 += u * x_hat[i];
        }
    }
    s1[ty][tx] = a1;
    s2[ty][tx] = a2;
    __syncthreads();
    for (int half = FMNIST_LANES / 2; half > 0; half /= 2) {
        if (ty < half) {
            s1[ty][tx] += s1[ty + half][tx];
            s2[ty][tx] += s2[ty + half][tx];
        }
        __syncthreads();
    }
}

// Gradient sums per channel over the whole grid in one launch (the block finishing last merges the partials):
// beta_grad = sum u, gamma_grad = sum u * x_hat, and coef = [sum u / m_norm | sum u*x_hat / m_norm] in training
// (0 in evaluation). m_norm is the number of values the batch statistics were taken over (rows for a plain batch
// norm, 4 * rows for the fused 2x2 pool). gate must be a valid array even when gated is 0.
extern "C" __global__ void fmnist_bn_grad_sums(const float* __restrict__ dy, const float* __restrict__ gate,
                                               const int gated, const float* __restrict__ x_hat,
                                               const long long rows, const int C, const float m_norm,
                                               const int training, double* __restrict__ partials,
                                               unsigned int* __restrict__ counters, float* __restrict__ gamma_grad,
                                               float* __restrict__ beta_grad, float* __restrict__ coef)
{
    __shared__ double s1[FMNIST_LANES][FMNIST_TILE], s2[FMNIST_LANES][FMNIST_TILE];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int c = blockIdx.y * FMNIST_TILE + tx;
    const long long first = (long long)blockIdx.x * FMNIST_LANES + ty;
    fmnist_tile_grad_sums(dy, gate, gated, x_hat, rows, C, c, first, (long long)gridDim.x * FMNIST_LANES, s1, s2);
    if (ty == 0 && c < C) {
        double* mine = partials + ((long long)blockIdx.x * C + c) * 2;
        mine[0] = s1[0][tx];
        mine[1] = s2[0][tx];
    }
    if (!fmnist_last_block(&counters[blockIdx.y])) return;
    if (ty == 0 && c < C) {
        const volatile double* part = partials;
        double t1 = 0.0, t2 = 0.0;
        for (unsigned b = 0; b < gridDim.x; ++b) {
            t1 += part[((long long)b * C + c) * 2];
            t2 += part[((long long)b * C + c) * 2 + 1];
        }
        beta_grad[c] = (float)t1;
        gamma_grad[c] = (float)t2;
        coef[c] = training ? (float)(t1 / m_norm) : 0.0f;
        coef[C + c] = training ? (float)(t2 / m_norm) : 0.0f;
    }
}

// dx = gamma * inv_std * (dy - mean(dy) - x_hat * mean(dy x_hat)); in evaluation (coef = 0) gamma * inv_std * dy.
// dx may be dy.
extern "C" __global__ void fmnist_bn_backward_apply(const float* dy, const float* __restrict__ x_hat, float* dx,
                                                    const long long rows, const int C,
                                                    const float* __restrict__ gamma, const float* __restrict__ stats,
                                                    const float* __restrict__ coef)
{
    const long long total = rows * C;
    FMNIST_GRID_STRIDE(i, total)
    {
        const int c = (int)(i % C);
        dx[i] = gamma[c] * stats[C + c] * (dy[i] - coef[c] - x_hat[i] * coef[C + c]);
    }
}

// The backward of batch norm for few rows in one launch (one block per 32-channel tile, as
// fmnist_bn_forward_small): the sums, the parameter gradients, then dx. dx may be dy.
extern "C" __global__ void fmnist_bn_backward_small(const float* dy, const float* __restrict__ x_hat, float* dx,
                                                    const long long rows, const int C,
                                                    const float* __restrict__ gamma, const float* __restrict__ stats,
                                                    const int training, float* __restrict__ gamma_grad,
                                                    float* __restrict__ beta_grad)
{
    __shared__ double s1[FMNIST_LANES][FMNIST_TILE], s2[FMNIST_LANES][FMNIST_TILE];
    __shared__ float mean_u[FMNIST_TILE], mean_ux[FMNIST_TILE];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int c = blockIdx.y * FMNIST_TILE + tx;
    fmnist_tile_grad_sums(dy, dy, 0, x_hat, rows, C, c, ty, FMNIST_LANES, s1, s2);
    if (ty == 0 && c < C) {
        beta_grad[c] = (float)s1[0][tx];
        gamma_grad[c] = (float)s2[0][tx];
        mean_u[tx] = training ? (float)(s1[0][tx] / (double)rows) : 0.0f;
        mean_ux[tx] = training ? (float)(s2[0][tx] / (double)rows) : 0.0f;
    }
    __syncthreads();
    if (c >= C) return;
    const float s = gamma[c] * stats[C + c], m1 = mean_u[tx], m2 = mean_ux[tx];
    for (long long r = ty; r < rows; r += FMNIST_LANES) {
        const long long i = r * C + c;
        dx[i] = s * (dy[i] - m1 - x_hat[i] * m2);
    }
}

// ---- fused batch norm -> 2x2 max pool (stride 2) -> ReLU ----------------------------------------------------------

// One thread per pooled value (img, p, q, c) of x (n, h, w, C), h and w even: the four taps normalised as Ops
// normalises them (z = gamma * ((v - mean) * inv_std) + beta), the first largest z (row-major taps), y = max(z, 0),
// argmax = its tap 0..3, x_hat = its normalised value. Statistics: stats (training) or the running ones
// (evaluation; then written into stats, as fmnist_bn_apply does).
extern "C" __global__ void fmnist_bn_pool_relu(const float* __restrict__ x, float* __restrict__ y,
                                               unsigned char* __restrict__ argmax, float* __restrict__ x_hat,
                                               const int n, const int h, const int w, const int C,
                                               float* __restrict__ stats, const float* __restrict__ gamma,
                                               const float* __restrict__ beta,
                                               const float* __restrict__ running_mean,
                                               const float* __restrict__ running_var, const float eps,
                                               const int training)
{
    const int oh = h / 2, ow = w / 2;
    const long long total = (long long)n * oh * ow * C;
    FMNIST_GRID_STRIDE(idx, total)
    {
        const fmnist_at at = fmnist_nhwc(idx, oh, ow, C);
        const int p = at.row, q = at.col, c = at.ch;
        const long long img = at.img;
        float mean, inv_std;
        if (training) {
            mean = stats[c];
            inv_std = stats[C + c];
        } else {
            mean = running_mean[c];
            inv_std = 1.0f / sqrtf(running_var[c] + eps);
            if (idx < C) {
                stats[c] = mean;
                stats[C + c] = inv_std;
            }
        }
        const float g = gamma[c], b = beta[c];
        float best_z = 0.0f, best_xh = 0.0f;
        int best = 0;
        for (int t = 0; t < 4; ++t) {
            const float v = x[((img * h + 2 * p + (t >> 1)) * w + 2 * q + (t & 1)) * C + c];
            const float xh = (v - mean) * inv_std;
            const float z = g * xh + b;
            if (t == 0 || z > best_z) {
                best_z = z;
                best_xh = xh;
                best = t;
            }
        }
        y[idx] = fmaxf(best_z, 0.0f);
        argmax[idx] = (unsigned char)best;
        x_hat[idx] = best_xh;
    }
}

// The backward of fmnist_bn_pool_relu over the full grid, after fmnist_bn_grad_sums on the pooled grid (gate = y,
// m_norm = n*h*w): the batch norm's output gradient is dy at each window's winning tap where y > 0, else 0, so
// dx = gamma * inv_std * ([wins] dy - mean(g) - x_hat * mean(g x_hat)), x_hat recomputed from x.
extern "C" __global__ void fmnist_bn_pool_relu_backward(const float* __restrict__ dy, const float* __restrict__ y,
                                                        const unsigned char* __restrict__ argmax,
                                                        const float* __restrict__ x, float* __restrict__ dx,
                                                        const int n, const int h, const int w, const int C,
                                                        const float* __restrict__ gamma,
                                                        const float* __restrict__ stats,
                                                        const float* __restrict__ coef)
{
    const int oh = h / 2, ow = w / 2;
    const long long total = (long long)n * h * w * C;
    FMNIST_GRID_STRIDE(idx, total)
    {
        const fmnist_at px = fmnist_nhwc(idx, h, w, C);
        const int c = px.ch;
        const long long at = ((px.img * oh + (px.row >> 1)) * ow + (px.col >> 1)) * C + c;
        const int tap = 2 * (px.row & 1) + (px.col & 1);
        const float g = (argmax[at] == tap && y[at] > 0.0f) ? dy[at] : 0.0f;
        const float inv_std = stats[C + c];
        const float xh = (x[idx] - stats[c]) * inv_std;
        dx[idx] = gamma[c] * inv_std * (g - coef[c] - xh * coef[C + c]);
    }
}
