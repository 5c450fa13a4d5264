// Batched FFTs of kLanes signals at once, the signals in the vector lanes: element e of a
// transform is the pair of vectors data[2e] (real parts of the kLanes signals) and data[2e + 1]
// (imaginary parts), so every butterfly is plain vector arithmetic with broadcast twiddles, with
// no shuffles and no transposes. The spectral kernels (spectral_cpu_kernel.cpp) frame kLanes
// consecutive frames into one tile, transform them here, and hand the tile to a projection that
// also keeps frames in lanes; the conv block's FFT algorithm (conv_block_fft.h) puts kLanes
// clips' rows in the lanes. transpose() turns kLanes loaded rows into lanes.
//
// The transform is a mixed-radix Stockham autosort FFT (radix 8, 4, 2, and a direct DFT for any
// other factor: 3 and 5 for the sizes ops/tempogram.py's fft_size() picks), ping-ponging between
// two buffers. Radix 8 is taken where a lane is one register (AVX-512: its 16 complex inputs fit
// the 32 registers): every pass reads and writes the whole transform, and 512 points take 3
// passes instead of 5; a 16 left over goes as 4 x 4, not 8 x 2 (1024 points: 8, 8, 4, 4; the
// lone radix-2 pass measured 5-10 % slower on mcclstm's mel). (A four-step FFT whose sub-FFTs run
// in L1 measured slower at 1024 points: 1.2 against 0.75 us per frame.)
// Included inside the instruction set's namespace (DLR_ISA) by the kernel sources (the spectral
// passes and the conv block's FFT algorithm), after <cmath>, <cstdint>, <utility> and <vector>.
#pragma once

constexpr int kLanes = 16;
typedef float lane __attribute__((vector_size(kLanes * sizeof(float))));
constexpr bool kRadix8 = DLR_VEC_FLOATS == kLanes;  // a lane is one vector register

struct Complex {
  float re, im;
};

typedef float lane_unaligned __attribute__((vector_size(kLanes * sizeof(float)), aligned(4)));
typedef int lane_index __attribute__((vector_size(kLanes * sizeof(int))));

// rows[i][j] <-> rows[j][i]: four rounds of two-source shuffles that swap the off-diagonal
// blocks of 8x8, 4x4, 2x2 and 1x1 elements.
inline void transpose(lane* rows) {
  static_assert(kLanes == 16, "the shuffle masks are for 16 lanes");
  const lane_index low[4] = {
      {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23},
      {0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27},
      {0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29},
      {0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30}};
  const lane_index high[4] = {
      {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31},
      {4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31},
      {2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31},
      {1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31}};
#pragma GCC unroll 4
  for (int round = 0; round < 4; ++round) {
    const int h = 8 >> round;
#pragma GCC unroll 16
    for (int pair = 0; pair < kLanes / 2; ++pair) {
      const int i = (pair / h) * 2 * h + pair % h;  // the pairs (i, i + h) with i / h even
      const lane a = rows[i], b = rows[i + h];
      rows[i] = __builtin_shuffle(a, b, low[round]);
      rows[i + h] = __builtin_shuffle(a, b, high[round]);
    }
  }
}

// exp(-2 pi i num / den), computed in double.
inline Complex unit_root(int64_t num, int64_t den) {
  const double angle = -2.0 * M_PI * static_cast<double>(num) / static_cast<double>(den);
  return {static_cast<float>(std::cos(angle)), static_cast<float>(std::sin(angle))};
}

inline void multiply(lane& re, lane& im, Complex w) {
  const lane r = re * w.re - im * w.im;
  im = re * w.im + im * w.re;
  re = r;
}

// A forward complex FFT of n points (any n >= 1) by Stockham passes: stages of a radix each, in
// the order applied, with twiddles exp(-2 pi i r k / (ns * radix)) for k < ns, r = 1 .. radix-1.
class LaneFft {
 public:
  explicit LaneFft(int64_t n) : n_(n) {
    int64_t rest = n;
    while (kRadix8 && rest % 8 == 0 && rest != 16) { radices_.push_back(8); rest /= 8; }
    while (rest % 4 == 0) { radices_.push_back(4); rest /= 4; }
    while (rest % 2 == 0) { radices_.push_back(2); rest /= 2; }
    for (int64_t p = 3; rest > 1; p += 2)
      while (rest % p == 0) { radices_.push_back(p); rest /= p; }
    int64_t ns = 1;
    for (const int64_t radix : radices_) {
      offsets_.push_back(static_cast<int64_t>(twiddles_.size()));
      for (int64_t k = 0; k < ns; ++k)
        for (int64_t r = 1; r < radix; ++r) twiddles_.push_back(unit_root(r * k, ns * radix));
      ns *= radix;
      if (radix != 2 && radix != 4 && radix != 8 && root_offset(radix) < 0) {
        odd_radices_.push_back(radix);
        for (int64_t q = 0; q < radix; ++q) roots_.push_back(unit_root(q, radix));
      }
    }
  }

  int64_t size() const { return n_; }

  // Transforms data (2 n lanes); scratch is another 2 n lanes. Returns the buffer holding the
  // result (data or scratch).
  lane* forward(lane* data, lane* scratch) const {
    lane *x = data, *y = scratch;
    int64_t ns = 1;
    for (size_t s = 0; s < radices_.size(); ++s) {
      const Complex* tw = twiddles_.data() + offsets_[s];
      switch (radices_[s]) {
        case 8: radix8(x, y, ns, tw); break;
        case 4: radix4(x, y, ns, tw); break;
        case 2: radix2(x, y, ns, tw); break;
        default: radix_any(x, y, ns, radices_[s], tw); break;
      }
      ns *= radices_[s];
      std::swap(x, y);
    }
    return x;
  }

 private:
  // One Stockham pass: butterfly j = jb * ns + k reads x[j + r * n / radix] and writes
  // y[jb * ns * radix + k + r * ns].
  void radix2(const lane* x, lane* y, int64_t ns, const Complex* tw) const {
    const int64_t half = n_ / 2;
    for (int64_t jb = 0; jb < half / ns; ++jb)
      for (int64_t k = 0; k < ns; ++k) {
        const int64_t j = jb * ns + k, d = jb * ns * 2 + k;
        lane r0 = x[2 * j], i0 = x[2 * j + 1];
        lane r1 = x[2 * (j + half)], i1 = x[2 * (j + half) + 1];
        if (ns > 1) multiply(r1, i1, tw[k]);
        y[2 * d] = r0 + r1; y[2 * d + 1] = i0 + i1;
        y[2 * (d + ns)] = r0 - r1; y[2 * (d + ns) + 1] = i0 - i1;
      }
  }

  void radix4(const lane* x, lane* y, int64_t ns, const Complex* tw) const {
    const int64_t q = n_ / 4;
    for (int64_t jb = 0; jb < q / ns; ++jb)
      for (int64_t k = 0; k < ns; ++k) {
        const int64_t j = jb * ns + k, d = jb * ns * 4 + k;
        lane r0 = x[2 * j], i0 = x[2 * j + 1];
        lane r1 = x[2 * (j + q)], i1 = x[2 * (j + q) + 1];
        lane r2 = x[2 * (j + 2 * q)], i2 = x[2 * (j + 2 * q) + 1];
        lane r3 = x[2 * (j + 3 * q)], i3 = x[2 * (j + 3 * q) + 1];
        if (ns > 1) {
          multiply(r1, i1, tw[3 * k]);
          multiply(r2, i2, tw[3 * k + 1]);
          multiply(r3, i3, tw[3 * k + 2]);
        }
        const lane sr = r0 + r2, si = i0 + i2, dr = r0 - r2, di = i0 - i2;
        const lane tr = r1 + r3, ti = i1 + i3, ur = r1 - r3, ui = i1 - i3;
        y[2 * d] = sr + tr; y[2 * d + 1] = si + ti;
        y[2 * (d + 2 * ns)] = sr - tr; y[2 * (d + 2 * ns) + 1] = si - ti;
        // output 1 = (a0 - a2) - i (a1 - a3); output 3 = (a0 - a2) + i (a1 - a3)
        y[2 * (d + ns)] = dr + ui; y[2 * (d + ns) + 1] = di - ur;
        y[2 * (d + 3 * ns)] = dr - ui; y[2 * (d + 3 * ns) + 1] = di + ur;
      }
  }

  // Radix 8: two 4-point DFTs of the even and odd inputs, joined by the eighth roots of unity.
  void radix8(const lane* x, lane* y, int64_t ns, const Complex* tw) const {
    const int64_t e = n_ / 8;
    const float h = static_cast<float>(M_SQRT1_2);
    for (int64_t jb = 0; jb < e / ns; ++jb)
      for (int64_t k = 0; k < ns; ++k) {
        const int64_t j = jb * ns + k, d = jb * ns * 8 + k;
        lane re[8], im[8];
        for (int r = 0; r < 8; ++r) {
          re[r] = x[2 * (j + r * e)];
          im[r] = x[2 * (j + r * e) + 1];
          if (r > 0 && ns > 1) multiply(re[r], im[r], tw[7 * k + r - 1]);
        }
        lane er[4], ei[4], orr[4], oi[4];
        dft4(re[0], im[0], re[2], im[2], re[4], im[4], re[6], im[6], er, ei);
        dft4(re[1], im[1], re[3], im[3], re[5], im[5], re[7], im[7], orr, oi);
        // odd half times exp(-2 pi i s / 8), s = 1, 2, 3
        const lane r1 = (orr[1] + oi[1]) * h, i1 = (oi[1] - orr[1]) * h;
        const lane r2 = oi[2], i2 = -orr[2];
        const lane r3 = (oi[3] - orr[3]) * h, i3 = -(orr[3] + oi[3]) * h;
        const lane tr[4] = {orr[0], r1, r2, r3}, ti[4] = {oi[0], i1, i2, i3};
        for (int s = 0; s < 4; ++s) {
          y[2 * (d + s * ns)] = er[s] + tr[s]; y[2 * (d + s * ns) + 1] = ei[s] + ti[s];
          y[2 * (d + (s + 4) * ns)] = er[s] - tr[s]; y[2 * (d + (s + 4) * ns) + 1] = ei[s] - ti[s];
        }
      }
  }

  // The 4-point DFT of (a0, a1, a2, a3) into (out_re, out_im).
  static inline void dft4(lane r0, lane i0, lane r1, lane i1, lane r2, lane i2, lane r3, lane i3,
                          lane* out_re, lane* out_im) {
    const lane sr = r0 + r2, si = i0 + i2, dr = r0 - r2, di = i0 - i2;
    const lane tr = r1 + r3, ti = i1 + i3, ur = r1 - r3, ui = i1 - i3;
    out_re[0] = sr + tr; out_im[0] = si + ti;
    out_re[2] = sr - tr; out_im[2] = si - ti;
    out_re[1] = dr + ui; out_im[1] = di - ur;
    out_re[3] = dr - ui; out_im[3] = di + ur;
  }

  // Any radix p: twiddle, then a direct p-point DFT (p^2 complex products).
  void radix_any(const lane* x, lane* y, int64_t ns, int64_t p, const Complex* tw) const {
    const int64_t stride = n_ / p;
    constexpr int64_t kOnStack = 8;
    lane stack[2 * kOnStack];
    std::vector<lane> heap(p > kOnStack ? 2 * p : 0);
    lane* re = p > kOnStack ? heap.data() : stack;
    lane* im = re + p;
    const Complex* roots = roots_.data() + root_offset(p);
    for (int64_t jb = 0; jb < stride / ns; ++jb)
      for (int64_t k = 0; k < ns; ++k) {
        const int64_t j = jb * ns + k, d = jb * ns * p + k;
        for (int64_t r = 0; r < p; ++r) {
          re[r] = x[2 * (j + r * stride)];
          im[r] = x[2 * (j + r * stride) + 1];
          if (r > 0 && ns > 1) multiply(re[r], im[r], tw[(p - 1) * k + r - 1]);
        }
        for (int64_t out = 0; out < p; ++out) {
          lane sum_re = re[0], sum_im = im[0];
          for (int64_t r = 1; r < p; ++r) {
            const Complex w = roots[(r * out) % p];
            sum_re += re[r] * w.re - im[r] * w.im;
            sum_im += re[r] * w.im + im[r] * w.re;
          }
          y[2 * (d + out * ns)] = sum_re;
          y[2 * (d + out * ns) + 1] = sum_im;
        }
      }
  }

  // Start in roots_ of exp(-2 pi i q / p), q < p, for a radix p of this plan.
  int64_t root_offset(int64_t p) const {
    int64_t offset = 0;
    for (const int64_t radix : odd_radices_) {
      if (radix == p) return offset;
      offset += radix;
    }
    return -1;  // not reached: radix_any runs only the plan's own radices
  }

  int64_t n_;
  std::vector<int64_t> radices_, offsets_, odd_radices_;  // odd_radices_: distinct, not 2 or 4
  std::vector<Complex> twiddles_, roots_;
};

