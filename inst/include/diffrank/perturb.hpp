// Perturbed optimizers (Berthet, Blondel, Teboul, Cuturi, Vert and Bach,
// "Learning with differentiable perturbed optimizers", NeurIPS 2020).
//
// For a discrete solver y*(theta) = argmax over y in C of <y, theta>, the
// perturbed maximizer y_eps(theta) = E[y*(theta + eps Z)] and the perturbed
// maximum F_eps(theta) = E[max_y <y, theta + eps Z>] are smooth in theta, and
// integration by parts gives the Jacobian of y_eps without differentiating
// the solver:
//   J = E[y*(theta + eps Z) grad_nu(Z)^T] / eps,
// with nu the negative log-density of the noise: grad_nu(z) = z for the
// standard normal, 1 - exp(-z) for the standard Gumbel. All three are
// estimated from the same M draws Z_1..Z_M, so the vector-Jacobian product
// v^T J = sum_m <v, y_m> grad_nu(Z_m) / (eps M) is exactly v^T times the
// Jacobian estimate, and the Fenchel-Young loss
//   L(theta; y) = mean_m (max <., theta + eps Z_m> - <y, theta + eps Z_m>)
// has gradient exactly mean_m y_m - y.
//
// The draws are given (the R glue takes them from R's generator). With
// antithetic draws, M draws are made of ceil(M / 2) base vectors z_b: draw m
// (0-based) is +z_{m/2} for even m and -z_{m/2} for odd m; the estimator is
// unchanged, its variance lower and only half the random numbers are needed.
//
// Built-in solvers, each the argmax of <y, theta> over its set C:
//   argmax: the one-hot vector of the largest entry (the first on ties);
//   topk:   the k-hot vector of the k largest entries;
//   rank:   the ranks of theta, 1 = smallest (a vertex of the permutahedron
//           of (1, ..., n)); ties in order of appearance;
//   sort:   theta sorted increasingly (not an argmax: no maximum, no loss).
// Ties have probability zero under continuous noise.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "operator.hpp"

namespace diffrank {

enum class PerturbSolver { argmax, topk, rank, sort, external };
enum class PerturbNoise { normal, gumbel };

struct PerturbSettings {
  PerturbSolver solver = PerturbSolver::argmax;
  PerturbNoise noise = PerturbNoise::normal;
  double eps = 1.0;
  std::size_t k = 1;         // topk only
  std::size_t samples = 1;   // M, the number of draws
  bool antithetic = false;   // draws in pairs (z, -z); normal noise only
};

// Whether draws come in antithetic pairs: the Gumbel law is not symmetric.
inline bool perturb_paired(const PerturbSettings& s) {
  return s.antithetic && s.noise == PerturbNoise::normal;
}

// Number of base noise vectors that M draws need.
inline std::size_t perturb_base_draws(const PerturbSettings& s) {
  return perturb_paired(s) ? (s.samples + 1) / 2 : s.samples;
}

// A value as an unsigned integer of the same order (-0 and +0 equal), with
// its position: comparing integers keeps the sort free of the branches that
// floating-point comparisons need, about three times faster for short vectors.
struct KeyIndex {
  std::uint64_t key;
  std::uint32_t index;
};

inline std::uint64_t order_key(double value) {
  value += 0.0;  // -0 becomes +0
  std::uint64_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return (bits >> 63) ? ~bits : (bits | (std::uint64_t(1) << 63));
}

// Stable sort of a[0..n) by key (so equal keys stay in index order), with
// scratch tmp of length n: insertion-sorted runs of 8, then bottom-up merges
// whose inner loop selects with conditional moves instead of branches.
inline void sort_keys(KeyIndex* a, KeyIndex* tmp, std::size_t n) {
  constexpr std::size_t run = 8;
  for (std::size_t start = 0; start < n; start += run) {
    const std::size_t end = std::min(n, start + run);
    for (std::size_t i = start + 1; i < end; ++i) {
      const KeyIndex x = a[i];
      std::size_t j = i;
      for (; j > start && a[j - 1].key > x.key; --j) a[j] = a[j - 1];
      a[j] = x;
    }
  }
  KeyIndex* src = a;
  KeyIndex* dst = tmp;
  for (std::size_t width = run; width < n; width *= 2) {
    for (std::size_t start = 0; start < n; start += 2 * width) {
      const std::size_t mid = std::min(n, start + width), end = std::min(n, start + 2 * width);
      std::size_t i = start, j = mid, out = start;
      while (i < mid && j < end) {
        const bool right = src[j].key < src[i].key;
        dst[out++] = right ? src[j] : src[i];
        j += right;
        i += !right;
      }
      while (i < mid) dst[out++] = src[i++];
      while (j < end) dst[out++] = src[j++];
    }
    std::swap(src, dst);
  }
  if (src != a) std::copy(src, src + n, a);
}

// Scratch memory of the built-in solvers; one per thread.
struct PerturbScratch {
  std::vector<KeyIndex> keys, tmp;
  std::vector<double> point;
};

// y*(theta) of a built-in solver, into y (length n).
inline void solve_builtin(const PerturbSettings& s, const double* theta, std::size_t n, double* y,
                          PerturbScratch& scratch) {
  switch (s.solver) {
    case PerturbSolver::argmax: {
      std::fill(y, y + n, 0.0);
      y[std::max_element(theta, theta + n) - theta] = 1.0;
      return;
    }
    case PerturbSolver::topk: {
      auto& keys = scratch.keys;
      keys.resize(n);
      for (std::size_t i = 0; i < n; ++i) {
        keys[i] = {order_key(theta[i]), static_cast<std::uint32_t>(i)};
      }
      // the k largest values, the first of equal values first
      std::nth_element(keys.begin(), keys.begin() + (s.k - 1), keys.end(),
                       [](const KeyIndex& a, const KeyIndex& b) {
                         return a.key > b.key || (a.key == b.key && a.index < b.index);
                       });
      std::fill(y, y + n, 0.0);
      for (std::size_t r = 0; r < s.k; ++r) y[keys[r].index] = 1.0;
      return;
    }
    case PerturbSolver::rank:
    case PerturbSolver::sort: {
      auto& keys = scratch.keys;
      keys.resize(n);
      scratch.tmp.resize(n);
      for (std::size_t i = 0; i < n; ++i) {
        keys[i] = {order_key(theta[i]), static_cast<std::uint32_t>(i)};
      }
      sort_keys(keys.data(), scratch.tmp.data(), n);
      if (s.solver == PerturbSolver::rank) {
        for (std::size_t r = 0; r < n; ++r) y[keys[r].index] = static_cast<double>(r + 1);
      } else {
        for (std::size_t r = 0; r < n; ++r) y[r] = theta[keys[r].index];
      }
      return;
    }
    case PerturbSolver::external:
      return;  // solved by the caller
  }
}

// One perturbed problem (one vector theta): the solutions of its M draws, and
// what the derivatives need (the base draws, and grad_nu of them for Gumbel
// noise). Memory O((n + d) M).
class PerturbedOperator {
 public:
  // Keeps theta (length n) and the base draws z (n x perturb_base_draws(s),
  // column-major), and makes room for M solutions of length d.
  void reset(const double* theta, std::size_t n, const double* z, std::size_t d,
             const PerturbSettings& s) {
    s_ = s;
    s_.antithetic = perturb_paired(s);
    n_ = n;
    d_ = d;
    const std::size_t nb = perturb_base_draws(s);
    theta_.assign(theta, theta + n);
    z_.assign(z, z + n * nb);
    if (s.noise == PerturbNoise::gumbel) {
      grad_.resize(n * nb);
      for (std::size_t i = 0; i < n * nb; ++i) grad_[i] = -std::expm1(-z_[i]);
    } else {
      grad_.clear();
    }
    y_.assign(d * s.samples, 0.0);
    objective_.assign(s.samples, std::numeric_limits<double>::quiet_NaN());
  }

  std::size_t input_size() const { return n_; }
  std::size_t output_size() const { return d_; }
  std::size_t samples() const { return s_.samples; }

  // theta + eps Z_m, into out (length n).
  void point(std::size_t m, double* out) const {
    const double* z = z_.data() + (s_.antithetic ? m / 2 : m) * n_;
    const double scale = (s_.antithetic && (m & 1)) ? -s_.eps : s_.eps;
    for (std::size_t i = 0; i < n_; ++i) out[i] = theta_[i] + scale * z[i];
  }

  // Solves draw m with the built-in solver. Distinct m may run on distinct
  // threads, each with its own scratch.
  void solve(std::size_t m, PerturbScratch& scratch) {
    scratch.point.resize(n_);
    point(m, scratch.point.data());
    solve_builtin(s_, scratch.point.data(), n_, y_.data() + m * d_, scratch);
    record_objective(m, scratch.point.data());
  }

  // Stores the solution y (length d) of draw m found by an external solver.
  void store(std::size_t m, const double* y, PerturbScratch& scratch) {
    std::copy(y, y + d_, y_.data() + m * d_);
    scratch.point.resize(n_);
    point(m, scratch.point.data());
    record_objective(m, scratch.point.data());
  }

  // The perturbed maximizer: the mean of the M solutions, summed in draw order.
  // An entry whose sum overflows (solutions near the double limit, as "sort"
  // of scores near 1e308) is summed again in units of 2^ceil(log2 M), which
  // keeps the sum within range whenever the mean is.
  void value(double* out) const {
    std::fill(out, out + d_, 0.0);
    for (std::size_t m = 0; m < s_.samples; ++m) {
      const double* y = y_.data() + m * d_;
      for (std::size_t i = 0; i < d_; ++i) out[i] += y[i];
    }
    const double samples = static_cast<double>(s_.samples);
    for (std::size_t i = 0; i < d_; ++i) {
      if (std::isfinite(out[i])) {
        out[i] /= samples;
        continue;
      }
      const int e = std::ilogb(samples) + 1;  // 2^e > M
      double sum = 0.0;
      for (std::size_t m = 0; m < s_.samples; ++m) sum += std::ldexp(y_[m * d_ + i], -e);
      out[i] = sum / std::ldexp(samples, -e);
    }
  }

  // The perturbed maximum, mean over draws of max <y, theta + eps Z_m>; NaN
  // for a solver that is not an argmax of a linear objective.
  double maximum() const {
    double sum = 0;
    for (double f : objective_) sum += f;
    return sum / static_cast<double>(s_.samples);
  }

  // mean_m (max <., theta + eps Z_m> - <target, theta + eps Z_m>): every term
  // is >= 0 when target lies in the convex hull of C (clipped at 0 against
  // rounding), and exactly 0 when the draw's solution is the target.
  double fy_loss(const double* target, std::vector<double>& work) const {
    work.resize(n_);
    double sum = 0;
    for (std::size_t m = 0; m < s_.samples; ++m) {
      point(m, work.data());
      double inner = 0;
      for (std::size_t i = 0; i < n_; ++i) inner += target[i] * work[i];
      sum += std::max(0.0, objective_[m] - inner);
    }
    return sum / static_cast<double>(s_.samples);
  }

  // out (length n) = J^T v = sum_m <v, y_m> grad_nu(Z_m) / (eps M).
  void vjp(const double* v, double* out) const {
    std::fill(out, out + n_, 0.0);
    for (std::size_t m = 0; m < s_.samples; ++m) {
      const double* y = y_.data() + m * d_;
      double c = 0;
      for (std::size_t i = 0; i < d_; ++i) c += v[i] * y[i];
      add_noise_gradient(m, c, out);
    }
    divide_by_eps_samples(out, n_);
  }

  // out (length d) = J u = sum_m y_m <grad_nu(Z_m), u> / (eps M).
  void jvp(const double* u, double* out) const {
    std::fill(out, out + d_, 0.0);
    for (std::size_t m = 0; m < s_.samples; ++m) {
      const double c = noise_gradient_dot(m, u);
      const double* y = y_.data() + m * d_;
      for (std::size_t i = 0; i < d_; ++i) out[i] += c * y[i];
    }
    divide_by_eps_samples(out, d_);
  }

  // The d x n Jacobian estimate, column-major.
  void jacobian(double* out) const {
    std::fill(out, out + d_ * n_, 0.0);
    std::vector<double> g(n_);
    for (std::size_t m = 0; m < s_.samples; ++m) {
      std::fill(g.begin(), g.end(), 0.0);
      add_noise_gradient(m, 1.0, g.data());
      const double* y = y_.data() + m * d_;
      for (std::size_t j = 0; j < n_; ++j) {
        for (std::size_t i = 0; i < d_; ++i) out[i + j * d_] += y[i] * g[j];
      }
    }
    divide_by_eps_samples(out, d_ * n_);
  }

 private:
  // out[0..len) /= eps M, as one multiplication by 1 / (eps M); when eps M
  // overflows (eps near the double limit), as two divisions, so that the
  // derivatives do not silently become 0.
  void divide_by_eps_samples(double* out, std::size_t len) const {
    const double samples = static_cast<double>(s_.samples);
    const double product = s_.eps * samples;
    if (std::isfinite(product)) {
      const double scale = 1.0 / product;
      for (std::size_t i = 0; i < len; ++i) out[i] *= scale;
    } else {
      for (std::size_t i = 0; i < len; ++i) out[i] = out[i] / samples / s_.eps;
    }
  }

  void record_objective(std::size_t m, const double* p) {
    if (s_.solver == PerturbSolver::sort || d_ != n_) return;  // stays NaN
    const double* y = y_.data() + m * d_;
    double f = 0;
    for (std::size_t i = 0; i < n_; ++i) f += y[i] * p[i];
    objective_[m] = f;
  }

  // out += c grad_nu(Z_m)
  void add_noise_gradient(std::size_t m, double c, double* out) const {
    const std::size_t b = s_.antithetic ? m / 2 : m;
    if (s_.antithetic && (m & 1)) c = -c;  // grad_nu(-z) = -z for the normal
    const double* g = (s_.noise == PerturbNoise::gumbel ? grad_.data() : z_.data()) + b * n_;
    for (std::size_t i = 0; i < n_; ++i) out[i] += c * g[i];
  }

  double noise_gradient_dot(std::size_t m, const double* u) const {
    const std::size_t b = s_.antithetic ? m / 2 : m;
    const double* g = (s_.noise == PerturbNoise::gumbel ? grad_.data() : z_.data()) + b * n_;
    double c = 0;
    for (std::size_t i = 0; i < n_; ++i) c += u[i] * g[i];
    return (s_.antithetic && (m & 1)) ? -c : c;
  }

  PerturbSettings s_;
  std::size_t n_ = 0, d_ = 0;
  std::vector<double> theta_, z_, grad_, y_, objective_;
};

static_assert(is_column_operator<PerturbedOperator>::value &&
                  has_jacobian<PerturbedOperator>::value,
              "PerturbedOperator must meet the operator contract (operator.hpp)");

}  // namespace diffrank
