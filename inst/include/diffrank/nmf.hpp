// Multiplicative updates (Lee and Seung 2001, "Algorithms for non-negative
// matrix factorization", NIPS) for the generalized Kullback-Leibler
// divergence of a non-negative d x n matrix x from w h (w d x k, h k x n,
// column-major): the NMF start of QMF's KL loss and its NMF baseline.
//
//   h <- h * (w' (x / (w h))) / (w' mask),   w <- w * ((x / (w h)) h') / (mask h'),
//
// with mask = 1 (then w' mask = colSums(w), mask h' = rowSums(h)) or the
// observed entries (x is 0 where the mask is). One update of h is a pass
// over columns, one of w a pass over columns for a range of rows; each
// column (of h) or row range (of w) is independent and sums its terms in a
// fixed order, so a caller that splits them over threads gets the same
// result for any number of threads. No temporary d x n matrix is formed.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

namespace diffrank {

struct KlNmfProblem {
  const double* x = nullptr;     // d x n
  const double* mask = nullptr;  // d x n (1 observed, 0 missing), or null: all observed
  std::size_t d = 0, n = 0, k = 0;
};

namespace nmf_detail {
constexpr double kTiny = 1e-12;  // floor of the fitted values and of the masses
}

// colSums(w) (k values): the masses of the h update without a mask.
inline void kl_nmf_column_mass(const KlNmfProblem& p, const double* w, double* out) {
  for (std::size_t l = 0; l < p.k; ++l) {
    double s = 0.0;
    for (std::size_t i = 0; i < p.d; ++i) s += w[i + l * p.d];
    out[l] = s;
  }
}

// rowSums(h) (k values): the masses of the w update without a mask.
inline void kl_nmf_row_mass(const KlNmfProblem& p, const double* h, double* out) {
  for (std::size_t l = 0; l < p.k; ++l) {
    double s = 0.0;
    for (std::size_t j = 0; j < p.n; ++j) s += h[l + j * p.k];
    out[l] = s;
  }
}

// The h update of columns [j0, j1), at w; column_mass = colSums(w) (used
// without a mask).
inline void kl_nmf_update_h(const KlNmfProblem& p, const double* w, const double* column_mass,
                            double* h, std::size_t j0, std::size_t j1) {
  const std::size_t d = p.d, k = p.k;
  std::vector<double> ratio(d), num(k), mass(k);
  for (std::size_t j = j0; j < j1; ++j) {
    double* hj = h + j * k;
    std::fill(ratio.begin(), ratio.end(), 0.0);
    for (std::size_t l = 0; l < k; ++l) {
      const double* wl = w + l * d;
      for (std::size_t i = 0; i < d; ++i) ratio[i] += wl[i] * hj[l];
    }
    const double* xj = p.x + j * d;
    for (std::size_t i = 0; i < d; ++i) ratio[i] = xj[i] / std::max(ratio[i], nmf_detail::kTiny);
    for (std::size_t l = 0; l < k; ++l) {
      const double* wl = w + l * d;
      double s = 0.0;
      for (std::size_t i = 0; i < d; ++i) s += wl[i] * ratio[i];
      num[l] = s;
      if (p.mask == nullptr) {
        mass[l] = column_mass[l];
      } else {
        const double* mj = p.mask + j * d;
        double ms = 0.0;
        for (std::size_t i = 0; i < d; ++i) ms += wl[i] * mj[i];
        mass[l] = ms;
      }
    }
    for (std::size_t l = 0; l < k; ++l) hj[l] *= num[l] / std::max(mass[l], nmf_detail::kTiny);
  }
}

// The w update of rows [i0, i1), at h; row_mass = rowSums(h) (used without
// a mask). Reads only rows [i0, i1) of w, so ranges may run concurrently.
inline void kl_nmf_update_w(const KlNmfProblem& p, const double* h, const double* row_mass,
                            double* w, std::size_t i0, std::size_t i1) {
  const std::size_t d = p.d, k = p.k, len = i1 - i0;
  std::vector<double> ratio(len), num(len * k, 0.0), mass(p.mask != nullptr ? len * k : 0, 0.0);
  for (std::size_t j = 0; j < p.n; ++j) {
    const double* hj = h + j * k;
    std::fill(ratio.begin(), ratio.end(), 0.0);
    for (std::size_t l = 0; l < k; ++l) {
      const double* wl = w + l * d + i0;
      for (std::size_t i = 0; i < len; ++i) ratio[i] += wl[i] * hj[l];
    }
    const double* xj = p.x + j * d + i0;
    for (std::size_t i = 0; i < len; ++i) ratio[i] = xj[i] / std::max(ratio[i], nmf_detail::kTiny);
    for (std::size_t l = 0; l < k; ++l) {
      double* nl = num.data() + l * len;
      for (std::size_t i = 0; i < len; ++i) nl[i] += ratio[i] * hj[l];
      if (p.mask != nullptr) {
        const double* mj = p.mask + j * d + i0;
        double* ml = mass.data() + l * len;
        for (std::size_t i = 0; i < len; ++i) ml[i] += mj[i] * hj[l];
      }
    }
  }
  for (std::size_t l = 0; l < k; ++l) {
    for (std::size_t i = 0; i < len; ++i) {
      const double ms = p.mask != nullptr ? mass[i + l * len] : row_mass[l];
      w[i0 + i + l * d] *= num[i + l * len] / std::max(ms, nmf_detail::kTiny);
    }
  }
}

}  // namespace diffrank
