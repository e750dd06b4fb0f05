// Isotonic regression by Pool Adjacent Violators (PAV).
//
// Two families live here:
// * the isotonic problems behind the projections onto the permutahedron of
//   Blondel, Teboul, Berthet and Djolonga, "Fast differentiable sorting and
//   ranking" (ICML 2020): a decreasing chain constraint v_1 >= ... >= v_n with
//   a quadratic (L2) or an entropic (KL) objective;
// * plain (weighted) least-squares regression onto non-decreasing sequences,
//   as stats::isoreg computes (Barlow, Bartholomew, Bremner and Brunk 1972),
//   used for example by supervised quantile normalization.
//
// Every solver runs in O(n) and returns the solution's blocks as integer
// boundaries: block b covers positions [bounds[b], bounds[b + 1]), and
// bounds[0] = 0, bounds[n_blocks] = n. Derivatives are taken block by block
// from these boundaries, never by comparing fitted values with a tolerance.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace diffrank {

// log(exp(a) + exp(b)) without overflow.
inline double log_add_exp(double a, double b) {
  const double hi = std::max(a, b), lo = std::min(a, b);
  return hi + std::log1p(std::exp(lo - hi));
}

// The mean of two blocks of means a and b and weights in the ratio
// (1 - r) : r, as a + r (b - a); when b - a overflows (means of opposite signs
// near the largest double), as the convex combination a (1 - r) + b r, which
// cannot. Identical to the first form whenever that one is finite.
inline double pool_means(double a, double b, double r) {
  const double gap = b - a;
  if (std::isfinite(gap)) return a + gap * r;
  return a * (1.0 - r) + b * r;
}

// L2 problem with a decreasing chain: v = argmin 0.5 ||v - y||^2 subject to
// v_1 >= v_2 >= ... >= v_n. Writes the block boundaries to bounds[0..nb] and
// the block means to mean[0..nb), returns nb. bounds needs n + 1 entries,
// mean n entries; mean may be y itself (the solver then works in place).
// Equal neighbouring means are pooled, so exact ties of the sorted input end
// up in one block.
//
// Means are stored (not sums) and pooled by pool_means, which cannot overflow
// for finite y.
inline std::size_t isotonic_l2_decreasing(const double* y, std::size_t n, std::uint32_t* bounds,
                                          double* mean) {
  std::size_t nb = 0;
  for (std::size_t i = 0; i < n; ++i) {
    bounds[nb] = static_cast<std::uint32_t>(i);
    mean[nb] = y[i];
    ++nb;
    while (nb > 1 && mean[nb - 2] <= mean[nb - 1]) {
      const double c1 = static_cast<double>(bounds[nb - 1] - bounds[nb - 2]);
      const double c2 = static_cast<double>(i + 1 - bounds[nb - 1]);
      mean[nb - 2] = pool_means(mean[nb - 2], mean[nb - 1], c2 / (c1 + c2));
      --nb;
    }
  }
  bounds[nb] = static_cast<std::uint32_t>(n);
  return nb;
}

// KL problem with a decreasing chain:
//   v = argmin sum_i exp(s_i - v_i) + exp(w_i) v_i,  v_1 >= ... >= v_n,
// whose value on a block B is logsumexp(s_B) - logsumexp(w_B). Writes the
// boundaries to bounds[0..nb] and each block's log-sum-exps of s and w to
// lse_s[0..nb) and lse_w[0..nb); returns nb. lse_s may be s and lse_w may
// be w (block b is written at index b <= the position being read).
inline std::size_t isotonic_kl_decreasing(const double* s, const double* w, std::size_t n,
                                          std::uint32_t* bounds, double* lse_s, double* lse_w) {
  std::size_t nb = 0;
  for (std::size_t i = 0; i < n; ++i) {
    bounds[nb] = static_cast<std::uint32_t>(i);
    lse_s[nb] = s[i];
    lse_w[nb] = w[i];
    ++nb;
    while (nb > 1 && lse_s[nb - 2] - lse_w[nb - 2] <= lse_s[nb - 1] - lse_w[nb - 1]) {
      lse_s[nb - 2] = log_add_exp(lse_s[nb - 2], lse_s[nb - 1]);
      lse_w[nb - 2] = log_add_exp(lse_w[nb - 2], lse_w[nb - 1]);
      --nb;
    }
  }
  bounds[nb] = static_cast<std::uint32_t>(n);
  return nb;
}

// The KL problem above with w = log(rho), rho = (n, n - 1, ..., 1), as soft
// ranks need it: the log-sum-exp of w over a block is the log of a sum of
// consecutive integers, in closed form, which halves the transcendental
// function calls of each pooling step. Each block's log rho sum is kept in
// lse_rho[0..nb) (scratch of n entries) rather than recomputed at every
// comparison: one log per position and per pooling instead of two per
// comparison, with the same values bit for bit.
inline std::size_t isotonic_kl_decreasing_log_rho(const double* s, std::size_t n,
                                                  std::uint32_t* bounds, double* lse_s,
                                                  double* lse_rho) {
  const double dn = static_cast<double>(n);
  // log(sum_{i = lo}^{hi - 1} (n - i)), 0-based positions
  auto log_rho_sum = [dn](std::size_t lo, std::size_t hi) {
    const double m = static_cast<double>(hi - lo);
    return std::log(m * (dn - 0.5 * static_cast<double>(lo + hi - 1)));
  };
  std::size_t nb = 0;
  for (std::size_t i = 0; i < n; ++i) {
    bounds[nb] = static_cast<std::uint32_t>(i);
    lse_s[nb] = s[i];
    lse_rho[nb] = log_rho_sum(i, i + 1);
    ++nb;
    while (nb > 1 && lse_s[nb - 2] - lse_rho[nb - 2] <= lse_s[nb - 1] - lse_rho[nb - 1]) {
      lse_s[nb - 2] = log_add_exp(lse_s[nb - 2], lse_s[nb - 1]);
      lse_rho[nb - 2] = log_rho_sum(bounds[nb - 2], i + 1);
      --nb;
    }
  }
  bounds[nb] = static_cast<std::uint32_t>(n);
  return nb;
}

// Weighted least-squares projection onto non-decreasing sequences:
//   out = argmin sum_i weight_i (out_i - y_i)^2,  out_1 <= ... <= out_n,
// weight == nullptr meaning unit weights (then out equals stats::isoreg's
// fitted values). Weights must be positive and finite. `bounds` (n + 1
// entries) and `scratch` (2 n entries) are the caller's; returns the number of
// blocks.
inline std::size_t isotonic_increasing(const double* y, const double* weight, std::size_t n,
                                       double* out, std::uint32_t* bounds, double* scratch) {
  double* mean = scratch;
  double* total = scratch + n;
  // Weights so large that their sum could overflow are scaled by a power of
  // two, which leaves every ratio of weights, and so the result, unchanged.
  double scale = 1.0;
  if (weight) {
    double largest = 0.0;
    for (std::size_t i = 0; i < n; ++i) largest = std::max(largest, weight[i]);
    if (largest > std::numeric_limits<double>::max() / static_cast<double>(2 * n)) {
      scale = std::ldexp(1.0, -std::ilogb(largest));
    }
  }
  std::size_t nb = 0;
  for (std::size_t i = 0; i < n; ++i) {
    bounds[nb] = static_cast<std::uint32_t>(i);
    mean[nb] = y[i];
    total[nb] = weight ? weight[i] * scale : 1.0;
    ++nb;
    while (nb > 1 && mean[nb - 2] >= mean[nb - 1]) {
      const double t = total[nb - 2] + total[nb - 1];
      // t == 0 only for two weights scaled below the smallest double
      const double r = t > 0.0 ? total[nb - 1] / t : 0.5;
      mean[nb - 2] = pool_means(mean[nb - 2], mean[nb - 1], r);
      total[nb - 2] = t;
      --nb;
    }
  }
  bounds[nb] = static_cast<std::uint32_t>(n);
  for (std::size_t b = 0; b < nb; ++b) {
    std::fill(out + bounds[b], out + bounds[b + 1], mean[b]);
  }
  return nb;
}

}  // namespace diffrank
