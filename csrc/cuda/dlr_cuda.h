// Launchers of the fused DLR CUDA kernels (raw device pointers, caller's stream).
#pragma once

#include <cstdint>
#include <vector>

#include "dlr_tile.h"

namespace dlr {
namespace cuda {

constexpr int kMaxBranches = 16;
constexpr int kMaxTaps = 64;

// Returns an empty string on success, else the CUDA error text.
const char* forward(const float* x, const float* w, const float* b,
                    const std::vector<int64_t>& dilations, float* out, const Geometry& geo,
                    void* stream);
// grad_x (batch, samples) may be null; grad_x, grad_w, grad_b must be zeroed by the caller.
const char* backward(const float* grad_out, const float* x, const float* w, const float* b,
                     const std::vector<int64_t>& dilations, float* grad_x, float* grad_w,
                     float* grad_b, const Geometry& geo, void* stream);

}  // namespace cuda
}  // namespace dlr
