// pybind11 module `dlr_engine._dlr_cpu`: the fused CPU kernels on raw buffers.
//
// The module takes data pointers (from torch.Tensor.data_ptr()) so that it links no libtorch:
// it builds without torch and keeps working across torch versions. The Python launcher
// (dlr_engine/ops/dlr_cpu.py) checks shapes, dtypes and contiguity before calling it.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "dlr_cpu.h"

namespace py = pybind11;

namespace {

using ForwardFn = decltype(&dlr::generic::forward);
using BackwardFn = decltype(&dlr::generic::backward);

struct Kernels {
  std::string isa;
  ForwardFn forward;
  BackwardFn backward;
};

// Kernel sets this CPU can run, best first (CPUID).
std::vector<Kernels> supported_kernels() {
  std::vector<Kernels> sets;
#if defined(DLR_HAVE_X86_VARIANTS)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq"))
    sets.push_back({"avx512", &dlr::avx512::forward, &dlr::avx512::backward});
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    sets.push_back({"avx2", &dlr::avx2::forward, &dlr::avx2::backward});
#endif
  sets.push_back({"generic", &dlr::generic::forward, &dlr::generic::backward});
  return sets;
}

// The active set: the best supported one unless set_isa chose another.
Kernels& kernels() {
  static Kernels active = supported_kernels().front();
  return active;
}

void set_isa(const std::string& isa) {
  std::string names;
  for (const Kernels& k : supported_kernels()) {
    if (k.isa == isa) {
      kernels() = k;
      return;
    }
    names += (names.empty() ? "" : ", ") + k.isa;
  }
  throw std::invalid_argument("kernels for '" + isa + "' cannot run on this CPU; it runs: " +
                              names);
}

template <typename T>
T* as_ptr(uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

}  // namespace

PYBIND11_MODULE(_dlr_cpu, m) {
  m.doc() = "Fused DLR CPU kernels (raw float32 buffers, OpenMP).";
  m.def("isa", [] { return kernels().isa; }, "Instruction set of the active kernels.");
  m.def(
      "supported_isas",
      [] {
        std::vector<std::string> names;
        for (const Kernels& k : supported_kernels()) names.push_back(k.isa);
        return names;
      },
      "Kernel instruction sets this CPU can run, best first.");
  m.def("set_isa", &set_isa, "Run the kernels compiled for this instruction set.");
  m.def(
      "output_frames",
      [](int64_t samples, int64_t taps, int64_t max_dilation, int64_t pool) {
        return dlr::output_frames(samples, taps, max_dilation, pool);
      },
      "Frames of the shared tile math (csrc/include/dlr_tile.h).");
  m.def(
      "forward",
      [](uintptr_t x, uintptr_t w, uintptr_t b, uintptr_t out, int64_t batch, int64_t samples,
         int64_t channels, int64_t taps, int64_t pool, std::vector<int64_t> dilations,
         int threads) {
        const dlr::Geometry geo = dlr::make_geometry(batch, samples, channels, taps, pool, dilations);
        py::gil_scoped_release release;
        kernels().forward(as_ptr<const float>(x), as_ptr<const float>(w),
                          as_ptr<const float>(b), dilations.data(), as_ptr<float>(out), geo,
                          threads);
      },
      "out (batch, branches*channels, frames) <- x (batch, samples), w, b.");
  m.def(
      "backward",
      [](uintptr_t grad_out, uintptr_t x, uintptr_t w, uintptr_t b, uintptr_t grad_x_parts,
         uintptr_t grad_w_parts, uintptr_t grad_b_parts, int64_t batch, int64_t samples,
         int64_t channels, int64_t taps, int64_t pool, std::vector<int64_t> dilations,
         int threads) {
        const dlr::Geometry geo = dlr::make_geometry(batch, samples, channels, taps, pool, dilations);
        py::gil_scoped_release release;
        kernels().backward(as_ptr<const float>(grad_out), as_ptr<const float>(x),
                           as_ptr<const float>(w), as_ptr<const float>(b), dilations.data(),
                           as_ptr<float>(grad_x_parts), as_ptr<float>(grad_w_parts),
                           as_ptr<float>(grad_b_parts), geo, threads);
      },
      "Per-(batch, branch) gradient parts, zero-initialised by the caller; grad_x_parts may "
      "be 0 (not needed).");
}
