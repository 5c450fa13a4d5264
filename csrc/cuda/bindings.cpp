// pybind11 module `dlr_engine._dlr_cuda`: the fused CUDA kernels on raw device pointers,
// launched on the caller's stream (torch.cuda.current_stream().cuda_stream). Links no libtorch.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "dlr_cuda.h"

namespace py = pybind11;

namespace {

template <typename T>
T* as_ptr(uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

void raise_on_error(const char* error) {
  if (error && *error) throw std::runtime_error(std::string("dlr-engine CUDA kernel: ") + error);
}

}  // namespace

PYBIND11_MODULE(_dlr_cuda, m) {
  m.doc() = "Fused DLR CUDA kernels (raw float32 device buffers).";
  m.def("forward", [](uintptr_t x, uintptr_t w, uintptr_t b, uintptr_t out, int64_t batch,
                      int64_t samples, int64_t channels, int64_t taps, int64_t pool,
                      std::vector<int64_t> dilations, uintptr_t stream) {
    const dlr::Geometry geo = dlr::make_geometry(batch, samples, channels, taps, pool, dilations);
    raise_on_error(dlr::cuda::forward(as_ptr<const float>(x), as_ptr<const float>(w),
                                      as_ptr<const float>(b), dilations, as_ptr<float>(out), geo,
                                      as_ptr<void>(stream)));
  });
  m.def("backward", [](uintptr_t grad_out, uintptr_t x, uintptr_t w, uintptr_t b,
                       uintptr_t grad_x, uintptr_t grad_w, uintptr_t grad_b, int64_t batch,
                       int64_t samples, int64_t channels, int64_t taps, int64_t pool,
                       std::vector<int64_t> dilations, uintptr_t stream) {
    const dlr::Geometry geo = dlr::make_geometry(batch, samples, channels, taps, pool, dilations);
    raise_on_error(dlr::cuda::backward(
        as_ptr<const float>(grad_out), as_ptr<const float>(x), as_ptr<const float>(w),
        as_ptr<const float>(b), dilations, as_ptr<float>(grad_x), as_ptr<float>(grad_w),
        as_ptr<float>(grad_b), geo, as_ptr<void>(stream)));
  });
}
