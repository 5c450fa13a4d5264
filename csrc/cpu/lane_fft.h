// Batched FFTs of kLanes signals at once, the signals in the vector lanes: element e of a
// transform is the pair of vectors data[2e] (real parts of the kLanes signals) and data[2e + 1]
// (imaginary parts), so every butterfly is plain vector arithmetic with broadcast twiddles, with
// no shuffles and no transposes. The spectral kernels (spectral_cpu_kernel.cpp) frame kLanes
// consecutive frames into one tile, transform them here, and hand the tile to a projection that
// also keeps frames in lanes.
//
// The transform is a mixed-radix Stockham autosort FFT (radix 4, 2, and a direct DFT for any
// other factor: 3 and 5 for the sizes fft_size() picks), ping-ponging between two buffers. (A
// four-step FFT whose sub-FFTs run in L1 measured slower at 1024 points: 1.2 against 0.75 us per
// frame.)
// Included inside the instruction set's namespace (DLR_ISA) by the kernel source, after <cmath>,
// <cstdint>, <utility> and <vector>.
#pragma once

constexpr int kLanes = 16;
typedef float lane __attribute__((vector_size(kLanes * sizeof(float))));

struct Complex {
  float re, im;
};

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
      if (radix != 2 && radix != 4 && root_offset(radix) < 0) {
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

