// Fused DLR forward and backward on CUDA. One block per (frame, branch, batch item); threads
// stride over the pool window. The per-step math (pre-activation, ReLU-masked pooled gradient)
// is the shared tile math of csrc/include/dlr_tile.h, which the CPU kernels and tests use too.
// Forward writes only pooled outputs; backward recomputes the pre-activation from x.
// Weight, bias and x gradients are accumulated with atomicAdd (order not deterministic).
#include <cuda_runtime.h>

#include "dlr_cuda.h"

namespace dlr {
namespace cuda {
namespace {

constexpr int kThreads = 256;

struct Dilations {
  int64_t d[kMaxBranches];
};

__device__ float block_sum(float v, float* scratch) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // scratch may still be read by the previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float total = 0.f;
  if (threadIdx.x == 0)
    for (int i = 0; i < kThreads / 32; ++i) total += scratch[i];
  return total;  // valid in thread 0
}

// Shared memory of a block: the branch's weights (channels * taps), bias (channels) and the
// reduction scratch, loaded once per block.
struct BranchShared {
  float* w;
  float* b;
  float* scratch;
};

__device__ BranchShared load_branch(const float* w, const float* b, const Geometry& geo,
                                    int64_t branch, float* smem) {
  float* w_s = smem;
  float* b_s = w_s + geo.channels * geo.taps;
  for (int64_t i = threadIdx.x; i < geo.channels * geo.taps; i += blockDim.x)
    w_s[i] = w[branch * geo.channels * geo.taps + i];
  for (int64_t i = threadIdx.x; i < geo.channels; i += blockDim.x)
    b_s[i] = b[branch * geo.channels + i];
  __syncthreads();
  return {w_s, b_s, b_s + geo.channels};
}

__global__ void forward_kernel(const float* x, const float* w, const float* b, Dilations dils,
                               float* out, Geometry geo) {
  extern __shared__ float smem[];
  const int64_t frame = blockIdx.x, branch = blockIdx.y, n = blockIdx.z;
  const BranchShared sh = load_branch(w, b, geo, branch, smem);
  const float *w_s = sh.w, *b_s = sh.b;
  float* scratch = sh.scratch;
  const int64_t dilation = dils.d[branch];
  const float* xf = x + n * geo.samples + frame * geo.pool;
  for (int64_t c = 0; c < geo.channels; ++c) {
    float s = 0.f;
    for (int64_t t = threadIdx.x; t < geo.pool; t += blockDim.x)
      s += relu(preactivation(xf + t, w_s + c * geo.taps, b_s[c], geo.taps, dilation));
    s = block_sum(s, scratch);
    if (threadIdx.x == 0) out[geo.out_index(n, branch, c, frame)] = s / float(geo.pool);
  }
}

__global__ void backward_kernel(const float* grad_out, const float* x, const float* w,
                                const float* b, Dilations dils, float* grad_x, float* grad_w,
                                float* grad_b, Geometry geo) {
  extern __shared__ float smem[];
  const int64_t frame = blockIdx.x, branch = blockIdx.y, n = blockIdx.z;
  const BranchShared sh = load_branch(w, b, geo, branch, smem);
  const float *w_s = sh.w, *b_s = sh.b;
  float* scratch = sh.scratch;
  const int64_t dilation = dils.d[branch];
  const int64_t t0 = frame * geo.pool;
  const float* xf = x + n * geo.samples + t0;
  const float inv_pool = 1.f / float(geo.pool);
  for (int64_t c = 0; c < geo.channels; ++c) {
    const float pooled = grad_out[geo.out_index(n, branch, c, frame)];
    const float* wc = w_s + c * geo.taps;
    float gb = 0.f;
    float gw[kMaxTaps];
    for (int64_t k = 0; k < geo.taps; ++k) gw[k] = 0.f;
    for (int64_t t = threadIdx.x; t < geo.pool; t += blockDim.x) {
      const float g = step_gradient(preactivation(xf + t, wc, b_s[c], geo.taps, dilation),
                                    pooled, inv_pool);
      if (g == 0.f) continue;
      gb += g;
      for (int64_t k = 0; k < geo.taps; ++k) {
        gw[k] += g * xf[t + k * dilation];
        if (grad_x) atomicAdd(grad_x + n * geo.samples + t0 + t + k * dilation, g * wc[k]);
      }
    }
    const int64_t wi = geo.weight_index(branch, c, 0);
    gb = block_sum(gb, scratch);
    if (threadIdx.x == 0) atomicAdd(grad_b + branch * geo.channels + c, gb);
    for (int64_t k = 0; k < geo.taps; ++k) {
      const float s = block_sum(gw[k], scratch);
      if (threadIdx.x == 0) atomicAdd(grad_w + wi + k, s);
    }
  }
}

Dilations pack(const std::vector<int64_t>& dilations) {
  Dilations d{};
  for (size_t i = 0; i < dilations.size() && i < kMaxBranches; ++i) d.d[i] = dilations[i];
  return d;
}

size_t shared_bytes(const Geometry& geo) {
  return sizeof(float) * (geo.channels * geo.taps + geo.channels + kThreads / 32);
}

const char* check(const Geometry& geo) {
  if (geo.branches > kMaxBranches) return "more branches than the CUDA kernel supports (16)";
  if (geo.taps > kMaxTaps) return "more taps than the CUDA kernel supports (64)";
  if (geo.frames > 2147483647 || geo.branches > 65535 || geo.batch > 65535)
    return "grid too large for the CUDA kernel";
  return nullptr;
}

const char* last_error() {
  cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? "" : cudaGetErrorString(err);
}

}  // namespace

const char* forward(const float* x, const float* w, const float* b,
                    const std::vector<int64_t>& dilations, float* out, const Geometry& geo,
                    void* stream) {
  if (const char* why = check(geo)) return why;
  if (geo.frames == 0 || geo.batch == 0) return "";
  dim3 grid(unsigned(geo.frames), unsigned(geo.branches), unsigned(geo.batch));
  forward_kernel<<<grid, kThreads, shared_bytes(geo), static_cast<cudaStream_t>(stream)>>>(
      x, w, b, pack(dilations), out, geo);
  return last_error();
}

const char* backward(const float* grad_out, const float* x, const float* w, const float* b,
                     const std::vector<int64_t>& dilations, float* grad_x, float* grad_w,
                     float* grad_b, const Geometry& geo, void* stream) {
  if (const char* why = check(geo)) return why;
  if (geo.frames == 0 || geo.batch == 0) return "";
  dim3 grid(unsigned(geo.frames), unsigned(geo.branches), unsigned(geo.batch));
  backward_kernel<<<grid, kThreads, shared_bytes(geo), static_cast<cudaStream_t>(stream)>>>(
      grad_out, x, w, b, pack(dilations), grad_x, grad_w, grad_b, geo);
  return last_error();
}

}  // namespace cuda
}  // namespace dlr
