// pybind11 module `dlr_engine._dlr_cpu`: the fused CPU kernels on raw buffers.
//
// The module takes data pointers (from torch.Tensor.data_ptr()) so that it links no libtorch:
// it builds without torch and keeps working across torch versions. The Python launcher
// (dlr_engine/ops/dlr_cpu.py) checks shapes, dtypes and contiguity before calling it.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "conv_block_cpu.h"
#include "dlr_cpu.h"
#include "spectral_cpu.h"

namespace py = pybind11;

namespace {

using ForwardFn = decltype(&dlr::generic::forward);
using BackwardFn = decltype(&dlr::generic::backward);
using PeakAbsFn = decltype(&dlr::generic::peak_abs);
using MelspectrogramFn = decltype(&dlr::generic::melspectrogram);
using TempogramFn = decltype(&dlr::generic::tempogram);
using CepstrumFn = decltype(&dlr::generic::real_cepstrum);
using ModulationFn = decltype(&dlr::generic::ncms_modulation);
using LogMagnitudeFn = decltype(&dlr::generic::log_magnitude);
using ConvBlockFn = decltype(&dlr::generic::conv_block);
using ConvBlockSupportsFn = decltype(&dlr::generic::conv_block_supports);
using ChannelMultipleFn = decltype(&dlr::generic::conv_block_channel_multiple);
using FftSizeFn = decltype(&dlr::generic::conv_block_fft_size);

struct Kernels {
  std::string isa;
  ForwardFn forward;
  BackwardFn backward;
  PeakAbsFn peak_abs;
  MelspectrogramFn melspectrogram;
  TempogramFn tempogram;
  CepstrumFn real_cepstrum;
  ModulationFn ncms_modulation;
  LogMagnitudeFn log_magnitude;
  ConvBlockFn conv_block;
  ConvBlockSupportsFn conv_block_supports;
  ChannelMultipleFn conv_block_channel_multiple;
  FftSizeFn conv_block_fft_size;
};

#define DLR_KERNEL_SET(isa) \
  Kernels { #isa, &dlr::isa::forward, &dlr::isa::backward, &dlr::isa::peak_abs, \
            &dlr::isa::melspectrogram, &dlr::isa::tempogram, &dlr::isa::real_cepstrum, \
            &dlr::isa::ncms_modulation, \
            &dlr::isa::log_magnitude, &dlr::isa::conv_block, \
            &dlr::isa::conv_block_supports, &dlr::isa::conv_block_channel_multiple, \
            &dlr::isa::conv_block_fft_size }

// Kernel sets this CPU can run, best first (CPUID).
std::vector<Kernels> supported_kernels() {
  std::vector<Kernels> sets;
#if defined(DLR_HAVE_X86_VARIANTS)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq"))
    sets.push_back(DLR_KERNEL_SET(avx512));
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    sets.push_back(DLR_KERNEL_SET(avx2));
#endif
  sets.push_back(DLR_KERNEL_SET(generic));
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

namespace {

bool bf16_supported() {
#if defined(DLR_HAVE_X86_VARIANTS)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}

// Raises unless this CPU and the geometry run the bfloat16 forward.
void check_bf16(const dlr::Geometry& geo) {
  if (!bf16_supported())
    throw std::runtime_error("the bfloat16 forward needs a CPU with AVX512_BF16");
#if defined(DLR_HAVE_X86_VARIANTS)
  if (!dlr::avx512bf16::forward_bf16_supports(geo))
    throw std::invalid_argument("the bfloat16 forward needs an even kernel size, channels a "
                                "multiple of 8 and a pool a multiple of 32");
#endif
}

dlr::Framing make_framing(uintptr_t signal, int64_t signal_length, int64_t n_frames, int64_t hop,
                          int64_t offset, int pad_mode, uintptr_t window, int64_t span,
                          int64_t n_fft) {
  if (pad_mode < 0 || pad_mode > 2)
    throw std::invalid_argument("pad_mode must be 0 (zeros), 1 (reflect) or 2 (edge)");
  if (signal_length < 1 || n_frames < 1 || hop < 1 || span < 1 || span > n_fft)
    throw std::invalid_argument("needs signal_length, n_frames, hop >= 1 and 1 <= span <= n_fft");
  return dlr::Framing{as_ptr<const float>(signal), signal_length, n_frames, hop, offset,
                      static_cast<dlr::PadMode>(pad_mode), as_ptr<const float>(window), span};
}

dlr::ConvBlockGeometry make_conv_block(std::vector<int64_t> shape, int activation) {
  if (shape.size() != 15)
    throw std::invalid_argument("conv block geometry: expected 15 sizes and strides");
  if (activation < 0 || activation > 2)
    throw std::invalid_argument("activation must be 0 (identity), 1 (relu) or 2 (elu)");
  const dlr::ConvBlockGeometry geo{shape[0], shape[1], shape[2], shape[3], shape[4],
                                   shape[5], shape[6], shape[7], shape[8], shape[9],
                                   shape[10], shape[11], shape[12], shape[13],
                                   static_cast<dlr::Activation>(activation), shape[14]};
  return geo;
}

dlr::ConvAlgorithm make_algorithm(int algorithm) {
  if (algorithm < 0 || algorithm > 2)
    throw std::invalid_argument("algorithm must be 0 (direct), 1 (winograd) or 2 (fft)");
  return static_cast<dlr::ConvAlgorithm>(algorithm);
}

// The conv block's input -> output precisions (the bfloat16 ones: AVX512_BF16 kernels).
enum class BlockPrecision : int { kFloat32 = 0, kBFloat16 = 1, kFloat32ToBFloat16 = 2 };

BlockPrecision make_precision(int precision) {
  if (precision < 0 || precision > 2)
    throw std::invalid_argument("precision must be 0 (float32), 1 (bfloat16) or 2 (float32 in, "
                                "bfloat16 out)");
  return static_cast<BlockPrecision>(precision);
}

// Whether the conv block runs for this geometry, algorithm and precision.
bool conv_block_supports(const dlr::ConvBlockGeometry& geo, dlr::ConvAlgorithm algorithm,
                         BlockPrecision precision) {
  if (precision == BlockPrecision::kFloat32) return kernels().conv_block_supports(geo, algorithm);
  if (algorithm == dlr::ConvAlgorithm::kFft) return false;  // float32 only
#if defined(DLR_HAVE_X86_VARIANTS)
  if (!bf16_supported()) return false;
  return precision == BlockPrecision::kBFloat16
             ? dlr::avx512bf16::conv_block_bf16_supports(geo, algorithm)
             : dlr::avx512bf16::conv_block_to_bf16_supports(geo, algorithm);
#else
  return false;
#endif
}

}  // namespace

PYBIND11_MODULE(_dlr_cpu, m) {
  m.doc() = "Fused DLR, mel spectrogram and tempogram CPU kernels (raw float32 buffers, OpenMP).";
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
         int threads, bool bfloat16) {
        const dlr::Geometry geo = dlr::make_geometry(batch, samples, channels, taps, pool, dilations);
        if (bfloat16) check_bf16(geo);
        py::gil_scoped_release release;
#if defined(DLR_HAVE_X86_VARIANTS)
        const auto forward = bfloat16 ? &dlr::avx512bf16::forward_bf16 : kernels().forward;
#else
        const auto forward = kernels().forward;
#endif
        forward(as_ptr<const float>(x), as_ptr<const float>(w), as_ptr<const float>(b),
                dilations.data(), as_ptr<float>(out), geo, threads);
      },
      "out (batch, branches*channels, frames) <- x (batch, samples), w, b; bfloat16: x and w "
      "rounded to bfloat16, float32 sums (AVX512_BF16).");
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
  m.def(
      "conv_block_channel_multiple", [] { return kernels().conv_block_channel_multiple(); },
      "Output-channel block of the packed float32 conv-block weights (the active ISA's).");
  m.def(
      "conv_block_fft_size", [](int64_t in_cols) { return kernels().conv_block_fft_size(in_cols); },
      "Points M of the FFT algorithm's row transform for rows of in_cols values.");
  m.def(
      "conv_block_supports",
      [](std::vector<int64_t> shape, int activation, int algorithm, int precision) {
        return conv_block_supports(make_conv_block(shape, activation), make_algorithm(algorithm),
                                   make_precision(precision));
      },
      "Whether the fused conv block runs this geometry with this algorithm (as conv_block).");
  m.def(
      "conv_block",
      [](uintptr_t x, uintptr_t w, uintptr_t bias, uintptr_t out, std::vector<int64_t> shape,
         int activation, int algorithm, int threads, int precision) {
        const dlr::ConvBlockGeometry geo = make_conv_block(shape, activation);
        const dlr::ConvAlgorithm algo = make_algorithm(algorithm);
        const BlockPrecision prec = make_precision(precision);
        if (!conv_block_supports(geo, algo, prec))
          throw std::invalid_argument("the fused conv block does not run this geometry here "
                                      "(see conv_block_supports)");
        py::gil_scoped_release release;
#if defined(DLR_HAVE_X86_VARIANTS)
        if (prec == BlockPrecision::kBFloat16) {
          dlr::avx512bf16::conv_block_bf16(as_ptr<const uint16_t>(x), as_ptr<const uint32_t>(w),
                                           as_ptr<const float>(bias), as_ptr<uint16_t>(out), geo,
                                           algo, threads);
          return;
        }
        if (prec == BlockPrecision::kFloat32ToBFloat16) {
          dlr::avx512bf16::conv_block_to_bf16(as_ptr<const float>(x), as_ptr<const float>(w),
                                              as_ptr<const float>(bias), as_ptr<uint16_t>(out),
                                              geo, algo, threads);
          return;
        }
#endif
        kernels().conv_block(as_ptr<const float>(x), as_ptr<const float>(w),
                             as_ptr<const float>(bias), as_ptr<float>(out), geo, algo, threads);
      },
      "out <- act(max_pool(conv(x, w)) + bias), never writing the conv output; shape = (batch, "
      "in_rows, in_cols, in_channels, in_batch_stride, in_row_stride, kernel_rows, kernel_cols, "
      "out_channels, pool_rows, pool_cols, out_batch_stride, out_row_stride, out_col_stride, "
      "stride_cols) "
      "(conv_block_cpu.h); algorithm 0 direct, 1 Winograd F(2x2, 3x3) (w transformed), 2 FFT "
      "(float32; w the transformed kernel rows); "
      "precision 0 float32, 1 bfloat16 (x, w pairs and out; AVX512_BF16), 2 float32 x and w "
      "(channel block 32), bfloat16 out.");
  m.def("bf16_supported", &bf16_supported,
        "Whether this CPU runs the bfloat16 forward (AVX512_BF16) and it was built.");
  m.def(
      "peak_abs",
      [](uintptr_t x, int64_t batch, int64_t samples, uintptr_t out, int threads) {
        py::gil_scoped_release release;
        kernels().peak_abs(as_ptr<const float>(x), batch, samples, as_ptr<float>(out), threads);
      },
      "out (batch, samples) <- |x / max|x||, per row (a silent row stays 0; a NaN makes the row "
      "NaN).");
  m.def(
      "melspectrogram",
      [](uintptr_t signal, int64_t batch, int64_t signal_length, int64_t n_frames, int64_t hop,
         int64_t offset, int pad_mode, uintptr_t window, int64_t span, int64_t n_fft,
         int64_t n_mels, uintptr_t starts, uintptr_t lengths, uintptr_t offsets,
         uintptr_t weights, float power, float log_multiplier, float amin, uintptr_t out,
         int threads) {
        const dlr::Framing framing = make_framing(signal, signal_length, n_frames, hop, offset,
                                                  pad_mode, window, span, n_fft);
        const dlr::MelFilters filters{n_mels, as_ptr<const int64_t>(starts),
                                      as_ptr<const int64_t>(lengths),
                                      as_ptr<const int64_t>(offsets),
                                      as_ptr<const float>(weights)};
        py::gil_scoped_release release;
        kernels().melspectrogram(framing, batch, n_fft, filters, power, log_multiplier, amin,
                                 as_ptr<float>(out), threads);
      },
      "out (batch, n_mels, n_frames) <- (log of) sum_f mel[m, f] |X[f]|^power, X the n_fft-point "
      "DFT of frame t of clip b: signal[b, offset + t * hop + j] * window[j], j < span; positions "
      "outside the clip padded with zeros (pad_mode 0), by reflection (1) or the edge samples (2).");
  m.def(
      "tempogram",
      [](uintptr_t onsets, int64_t batch, int64_t length, int64_t n_frames, int64_t hop,
         int64_t offset, uintptr_t window, int64_t span, int64_t n_fft, int64_t max_lag,
         bool normalize, uintptr_t out, int threads) {
        const dlr::Framing framing = make_framing(onsets, length, n_frames, hop, offset, 0,
                                                  window, span, n_fft);
        if (n_fft % 2 != 0 || n_fft < 2 * span - 1 || max_lag > n_fft / 2 + 1)
          throw std::invalid_argument("tempogram needs an even n_fft >= 2 span - 1 and "
                                      "max_lag <= n_fft / 2 + 1");
        py::gil_scoped_release release;
        kernels().tempogram(framing, batch, n_fft, max_lag, normalize, as_ptr<float>(out),
                            threads);
      },
      "out (batch, max_lag, n_frames) <- autocorrelations of frame t of clip b: onsets[b, "
      "offset + t * hop + j] * window[j], j < span (zeros outside the clip), divided by lag 0 "
      "when normalize.");
  m.def(
      "real_cepstrum",
      [](uintptr_t signal, int64_t batch, int64_t length, int64_t n_frames, int64_t hop,
         int64_t offset, uintptr_t window, int64_t span, int64_t n_fft, int64_t n_quefrencies,
         float floor, uintptr_t out, int threads) {
        const dlr::Framing framing = make_framing(signal, length, n_frames, hop, offset, 0,
                                                  window, span, n_fft);
        if (n_fft % 2 != 0 || n_quefrencies < 1 || n_quefrencies > n_fft / 2 + 1)
          throw std::invalid_argument("real_cepstrum needs an even n_fft and "
                                      "1 <= n_quefrencies <= n_fft / 2 + 1");
        py::gil_scoped_release release;
        kernels().real_cepstrum(framing, batch, n_fft, n_quefrencies, floor, as_ptr<float>(out),
                                threads);
      },
      "out (batch, n_quefrencies, n_frames) <- irfft(log(|X| + floor), n_fft)[q], X the n_fft-point "
      "DFT of frame t of clip b: signal[b, offset + t * hop + j] * window[j], j < span.");
  m.def(
      "ncms_modulation",
      [](uintptr_t spectra, int64_t batch, int64_t rows, int64_t segments, int64_t half,
         float std_floor, uintptr_t out, int threads) {
        if (batch < 0 || rows < 1 || segments < 0 || half < 1)
          throw std::invalid_argument("ncms_modulation needs rows >= 1, half >= 1, batch and "
                                      "segments >= 0");
        py::gil_scoped_release release;
        kernels().ncms_modulation(as_ptr<const float>(spectra), batch, rows, segments, half,
                                  std_floor, as_ptr<float>(out), threads);
      },
      "out (batch, segments, rows, half + 1) <- the NCMS's normalised modulation magnitudes from "
      "spectra (batch, rows, segments + 1, 2 half), the half-segments' DFT bins f = 1..half.");
  m.def(
      "log_magnitude",
      [](uintptr_t signal, int64_t batch, int64_t length, int64_t n_frames, int64_t hop,
         int64_t offset, uintptr_t window, int64_t span, int64_t n_fft, float floor, uintptr_t out,
         int threads) {
        const dlr::Framing framing = make_framing(signal, length, n_frames, hop, offset, 0,
                                                  window, span, n_fft);
        py::gil_scoped_release release;
        kernels().log_magnitude(framing, batch, n_fft, floor, as_ptr<float>(out), threads);
      },
      "out (batch, n_fft / 2 + 1, n_frames) <- log(|X[k]| + floor), X the n_fft-point DFT of "
      "frame t of clip b: signal[b, offset + t * hop + j] * window[j], j < span.");
}
