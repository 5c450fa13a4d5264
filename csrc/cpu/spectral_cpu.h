// Entry points of the CPU passes of the mel spectrogram and the tempogram around their FFTs
// (spectral_cpu_kernel.cpp), one set per instruction set. Shapes: signal (batch, signal_length) padded as the frames need; frame rows are global
// frame indices g = clip * n_frames + frame; spectra (rows, n_freq) complex64 as (re, im) pairs;
// out (batch, n_mels, n_frames).
#pragma once

#include <cstdint>
#include <vector>

namespace dlr {

// Values of frames beyond a clip's ends (numpy's pad modes): constant zeros, reflection about
// the end samples, repetition of the end samples.
enum class PadMode : int { kZeros = 0, kReflect = 1, kEdge = 2 };

// The mel matrix without its zeros: filter m weighs bins [starts[m], starts[m] + lengths[m])
// by weights[offsets[m] ...].
struct MelFilters {
  int64_t n_mels;
  const int64_t* starts;
  const int64_t* lengths;
  const int64_t* offsets;
  const float* weights;
};

#define DLR_DECLARE_SPECTRAL_KERNELS(isa)                                                         \
  namespace isa {                                                                            \
  /* frames[r, :span] = signal[clip, offset + frame * hop + j] * window[j] for rows first..; */ \
  /* positions outside the clip are padded by pad_mode */                                     \
  void frame_window(const float* signal, int64_t signal_length, int64_t n_frames,            \
                    int64_t hop, int64_t offset, PadMode pad_mode, int64_t first,            \
                    int64_t rows, const float* window, int64_t span, float* frames,          \
                    int64_t frame_stride, int threads);                                      \
  /* out[clip, m, frame] = log_multiplier * log10(max(amin, sum_f mel[m, f] |X|^power))  */  \
  /* (no log when log_multiplier is 0) for spectrum rows first..first+rows */                \
  void mel_project(const float* spec, int64_t rows, int64_t n_freq, int64_t first,           \
                   int64_t n_frames, const MelFilters& filters, float power,                 \
                   float log_multiplier, float amin, float* out, int threads);               \
  /* spec[r, f] = (|spec[r, f]|^2, 0) for rows 0..rows */                                    \
  void power_in_place(float* spec, int64_t rows, int64_t n_freq, int threads);             \
  /* out[clip, l, frame] = lags[r, l] (/ lags[r, 0] when normalize) for l < max_lag */       \
  void lag_store(const float* lags, int64_t rows, int64_t row_stride, int64_t first,         \
                 int64_t n_frames, int64_t max_lag, bool normalize, float* out, int threads); \
  }

DLR_DECLARE_SPECTRAL_KERNELS(generic)
#if defined(DLR_HAVE_X86_VARIANTS)
DLR_DECLARE_SPECTRAL_KERNELS(avx2)
DLR_DECLARE_SPECTRAL_KERNELS(avx512)
#endif

#undef DLR_DECLARE_SPECTRAL_KERNELS

}  // namespace dlr
