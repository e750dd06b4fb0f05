// Differentiable sorting networks (Petersen, Borgelt, Kuehne and Deussen
// 2021, "Differentiable sorting networks for scalable sorting and ranking
// supervision", ICML; 2022, "Monotonic differentiable sorting networks",
// ICLR).
//
// A sorting network is a fixed sequence of layers of disjoint comparators
// (lo, hi); each puts the smaller of its two wires on lo and the larger on
// hi. Relaxed, a comparator of the values (u, v) on (lo, hi) mixes them with
// alpha = sigma((v - u) / tau), the probability that they are in order:
//   lo <- alpha u + (1 - alpha) v,   hi <- (1 - alpha) u + alpha v,
// with sigma the logistic function or the Cauchy CDF (atan(t) / pi + 1/2,
// whose heavy tails make the relaxation monotone, Petersen et al. 2022).
// Each layer is a doubly stochastic matrix A_k, so the network's relaxed
// permutation matrix P (P_ij: the part of value i that ends at sorted
// position j) is the transpose of A_K ... A_1, the soft sort is P^T x and the
// soft ranks are P (1, ..., n). Networks: odd-even transposition (n layers,
// n (n - 1) / 2 comparators, any n) and bitonic (log2 N (log2 N + 1) / 2
// layers of N / 2 comparators, N the next power of two: the n values are
// padded with N - n infinite values, whose comparators are exact, so that
// padding never mixes with data).
//
// tau is eps times a unit of x (sd(x) / n for scale "spacing", sd(x) for
// "sd", 1 for "none"; 1 also when x is constant), and the unit is
// differentiated as well. Derivatives are exact reverse and forward passes
// over the stored comparators: O(comparators) per product for sorts and
// ranks, O(n comparators) for the plan (as its value), with O(comparators)
// memory.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <numeric>
#include <vector>

#include "common.hpp"
#include "operator.hpp"

namespace diffrank {

enum class NetworkKind { odd_even, bitonic };
enum class NetworkRelaxation { logistic, cauchy };
enum class NetworkOutput { sort, rank, plan };
enum class NetworkScale { spacing, sd, none };

struct NetworkSettings {
  NetworkKind network = NetworkKind::bitonic;
  NetworkRelaxation relaxation = NetworkRelaxation::logistic;
  NetworkOutput output = NetworkOutput::sort;
  NetworkScale scale = NetworkScale::spacing;
  double eps = 0.1;
  bool decreasing = false;
};

// The comparators of a network on n wires, layer after layer (lo < hi). A
// bitonic network runs on N = 2^ceil(log2 n) wires; wires n..N-1 hold +Inf.
struct Comparator {
  std::size_t lo, hi;
};

// The number of comparators, without building the network: n (n - 1) / 2
// for odd-even transposition, N/2 log2(N) (log2(N) + 1) / 2 for bitonic.
inline double network_comparator_count(NetworkKind kind, double n) {
  if (kind == NetworkKind::odd_even) return n * (n - 1.0) / 2.0;
  double wires = 1.0, levels = 0.0;
  while (wires < n) {
    wires *= 2.0;
    levels += 1.0;
  }
  return wires / 2.0 * levels * (levels + 1.0) / 2.0;
}

// Calls emit(lo, hi) for every comparator, layer after layer; sets *wires.
template <class Emit>
void for_each_comparator(NetworkKind kind, std::size_t n, std::size_t* wires, Emit emit) {
  if (kind == NetworkKind::odd_even) {
    *wires = n;
    for (std::size_t layer = 0; layer < n; ++layer) {
      for (std::size_t i = layer % 2; i + 1 < n; i += 2) emit(i, i + 1);
    }
    return;
  }
  std::size_t N = 1;
  while (N < n) N *= 2;
  *wires = N;
  // Bitonic sort with every comparator ascending: each merge of two sorted
  // blocks of size p first compares mirrored wires, then half-cleans.
  for (std::size_t p = 1; p < N; p *= 2) {
    for (std::size_t block = 0; block < N; block += 2 * p) {
      for (std::size_t k = 0; k < p; ++k) emit(block + k, block + 2 * p - 1 - k);
    }
    for (std::size_t q = p / 2; q >= 1; q /= 2) {
      for (std::size_t block = 0; block < N; block += 2 * q) {
        for (std::size_t k = 0; k < q; ++k) emit(block + k, block + k + q);
      }
    }
  }
}

inline std::vector<Comparator> network_comparators(NetworkKind kind, std::size_t n,
                                                   std::size_t* wires) {
  std::vector<Comparator> out;
  out.reserve(static_cast<std::size_t>(network_comparator_count(kind, static_cast<double>(n))));
  for_each_comparator(kind, n, wires, [&](std::size_t lo, std::size_t hi) {
    out.push_back({lo, hi});
  });
  return out;
}

// A relaxed comparator on the pair (l, h): l <- a l + (1 - a) h,
// h <- (1 - a) l + a h. Its matrix is symmetric, so the same step carries
// values forward and cotangents back.
inline void mix(double a, double& l, double& h) {
  const double l0 = l, h0 = h;
  l = a * l0 + (1.0 - a) * h0;
  h = (1.0 - a) * l0 + a * h0;
}

// The tangent of mix() for a change da of a, with l - h the difference of
// the pair it mixes: (dl, dh) mixed, plus da (l - h) and -da (l - h).
inline void mix_tangent(double a, double da, double l_minus_h, double& dl, double& dh) {
  mix(a, dl, dh);
  dl += da * l_minus_h;
  dh -= da * l_minus_h;
}

class NetworkOperator {
 public:
  // Sorts x (n values) through the relaxed network and writes the output
  // (n sorted values, n ranks, or the n x n plan, column-major) to out
  // (skipped when null).
  void forward(const double* x, std::size_t n, const NetworkSettings& s, double* out) {
    n_ = n;
    s_ = s;
    // per-comparator storage in uninitialized buffers (every entry is
    // written below): zero-filling hundreds of megabytes at large n would
    // cost more than the network
    const std::size_t c =
        static_cast<std::size_t>(network_comparator_count(s.network, static_cast<double>(n)));
    comps_.resize(c);
    std::size_t k = 0;
    for_each_comparator(s.network, n, &wires_, [&](std::size_t lo, std::size_t hi) {
      comps_[k++] = {lo, hi};
    });
    alpha_.resize(c);
    slope_.resize(c);
    diff_.resize(c);
    xs_.resize(n);
    for (std::size_t i = 0; i < n; ++i) xs_[i] = s.decreasing ? -x[i] : x[i];
    set_temperature();
    // the value pass: values and padding flags of the wires
    std::vector<double> v(wires_, 0.0);
    std::vector<char> pad(wires_, 1);
    std::copy(xs_.begin(), xs_.end(), v.begin());
    std::fill(pad.begin(), pad.begin() + static_cast<std::ptrdiff_t>(n), 0);
    for (k = 0; k < c; ++k) {
      const Comparator& cp = comps_[k];
      if (pad[cp.lo] || pad[cp.hi]) {
        // exact: the infinite padding goes up, the value down
        alpha_[k] = 1.0;
        slope_[k] = diff_[k] = 0.0;
        if (pad[cp.lo] && !pad[cp.hi]) {
          std::swap(v[cp.lo], v[cp.hi]);
          std::swap(pad[cp.lo], pad[cp.hi]);
          alpha_[k] = 0.0;
        }
        continue;
      }
      const double u = v[cp.lo], w = v[cp.hi], d = w - u;
      double a, da;
      // ties mix evenly, also when tau underflowed to 0 (eps near 1e-308)
      relax(d == 0.0 ? 0.0 : d / tau_, &a, &da);
      alpha_[k] = a;
      slope_[k] = da == 0.0 ? 0.0 : da / tau_;
      diff_[k] = d;
      mix(a, v[cp.lo], v[cp.hi]);
    }
    if (s.output == NetworkOutput::rank) ranks_backward();
    if (out == nullptr) return;
    switch (s.output) {
      case NetworkOutput::sort:
        for (std::size_t j = 0; j < n; ++j) out[j] = s.decreasing ? -v[j] : v[j];
        break;
      case NetworkOutput::rank:
        std::copy(rank_.begin(), rank_.end(), out);
        break;
      case NetworkOutput::plan: {
        std::vector<double> w(wires_);
        for (std::size_t i = 0; i < n; ++i) {
          if (poll && i % 16 == 0) poll();
          std::fill(w.begin(), w.end(), 0.0);
          w[i] = 1.0;
          push(w);
          for (std::size_t j = 0; j < n; ++j) out[i + j * n] = w[j];
        }
        break;
      }
    }
  }

  std::size_t input_size() const { return n_; }
  std::size_t output_size() const { return s_.output == NetworkOutput::plan ? n_ * n_ : n_; }
  std::size_t comparators() const { return comps_.size(); }

  // Called between rows of the plan and its products (one network pass
  // each), set by the caller for the duration of a call: may throw to
  // stop a long column.
  std::function<void()> poll;

  // out = J^T g.
  void vjp(const double* g, double* out) {
    const std::size_t c = comps_.size();
    std::vector<double> abar(c, 0.0);  // d L / d alpha of each comparator
    std::vector<double> vbar(wires_, 0.0);
    switch (s_.output) {
      case NetworkOutput::sort:
        for (std::size_t j = 0; j < n_; ++j) vbar[j] = s_.decreasing ? -g[j] : g[j];
        break;
      case NetworkOutput::rank: {
        // L = r^T M_K u with u = g: push u forward, meet the stored z
        std::vector<double> w(wires_, 0.0);
        std::copy(g, g + n_, w.begin());
        alpha_adjoints(w, zdiff_.data(), abar);
        break;
      }
      case NetworkOutput::plan: {
        // L = sum_i <g[i, ], M_K e_i>: one rank-like pass per value i
        std::vector<double> z(wires_), zd(c), w(wires_);
        for (std::size_t i = 0; i < n_; ++i) {
          if (poll && i % 16 == 0) poll();
          std::fill(z.begin(), z.end(), 0.0);
          for (std::size_t j = 0; j < n_; ++j) z[j] = g[i + j * n_];
          pull(z, zd.data());
          std::fill(w.begin(), w.end(), 0.0);
          w[i] = 1.0;
          alpha_adjoints(w, zd.data(), abar);
        }
        break;
      }
    }
    // reverse pass over the value path
    double taubar = 0.0;
    for (std::size_t k = c; k-- > 0;) {
      const Comparator& cp = comps_[k];
      // lo = a u + (1 - a) w, hi = (1 - a) u + a w, w - u = diff (exact
      // comparators of the padding have slope 0 and diff 0: routing only)
      const double ab = abar[k] - (vbar[cp.lo] - vbar[cp.hi]) * diff_[k];
      mix(alpha_[k], vbar[cp.lo], vbar[cp.hi]);
      // a = sigma(diff / tau)
      const double db = ab * slope_[k];
      vbar[cp.lo] -= db;
      vbar[cp.hi] += db;
      if (slope_[k] != 0.0) taubar -= db * diff_[k] / tau_;
    }
    for (std::size_t i = 0; i < n_; ++i) {
      double gi = vbar[i] + taubar * tau_grad_[i];
      out[i] = s_.decreasing ? -gi : gi;
    }
  }

  // out = J t.
  void jvp(const double* t, double* out) {
    const std::size_t c = comps_.size();
    // forward tangent of the value pass, with d alpha per comparator
    std::vector<double> dv(wires_, 0.0), dalpha(c);
    double dtau = 0.0;
    for (std::size_t i = 0; i < n_; ++i) {
      dv[i] = s_.decreasing ? -t[i] : t[i];
      dtau += tau_grad_[i] * dv[i];
    }
    const double dlog_tau = tau_ > 0.0 ? dtau / tau_ : 0.0;
    for (std::size_t k = 0; k < c; ++k) {
      const Comparator& cp = comps_[k];
      dalpha[k] = slope_[k] * ((dv[cp.hi] - dv[cp.lo]) - diff_[k] * dlog_tau);
      // the values' lo - hi before the step is -diff
      mix_tangent(alpha_[k], dalpha[k], -diff_[k], dv[cp.lo], dv[cp.hi]);
    }
    switch (s_.output) {
      case NetworkOutput::sort:
        for (std::size_t j = 0; j < n_; ++j) out[j] = s_.decreasing ? -dv[j] : dv[j];
        break;
      case NetworkOutput::rank: {
        // d(M_K^T r): the backward pass of r with the alpha tangents
        std::vector<double> z(wires_, 0.0), dz(wires_, 0.0);
        for (std::size_t j = 0; j < n_; ++j) z[j] = static_cast<double>(j + 1);
        for (std::size_t k = c; k-- > 0;) {
          const Comparator& cp = comps_[k];
          mix_tangent(alpha_[k], dalpha[k], z[cp.lo] - z[cp.hi], dz[cp.lo], dz[cp.hi]);
          mix(alpha_[k], z[cp.lo], z[cp.hi]);
        }
        std::copy(dz.begin(), dz.begin() + static_cast<std::ptrdiff_t>(n_), out);
        break;
      }
      case NetworkOutput::plan: {
        std::vector<double> w(wires_), dw(wires_);
        for (std::size_t i = 0; i < n_; ++i) {
          if (poll && i % 16 == 0) poll();
          std::fill(w.begin(), w.end(), 0.0);
          std::fill(dw.begin(), dw.end(), 0.0);
          w[i] = 1.0;
          for (std::size_t k = 0; k < c; ++k) {
            const Comparator& cp = comps_[k];
            mix_tangent(alpha_[k], dalpha[k], w[cp.lo] - w[cp.hi], dw[cp.lo], dw[cp.hi]);
            mix(alpha_[k], w[cp.lo], w[cp.hi]);
          }
          for (std::size_t j = 0; j < n_; ++j) out[i + j * n_] = dw[j];
        }
        break;
      }
    }
  }

 private:
  void relax(double t, double* a, double* da) const {
    if (s_.relaxation == NetworkRelaxation::logistic) {
      // beyond 700 exp() underflows (slowly, through subnormals) to a
      // derivative below 1e-304: exactly 0 and 1 instead
      const double e = std::fabs(t) > 700.0 ? 0.0 : std::exp(-std::fabs(t));
      const double p = 1.0 / (1.0 + e);  // sigma(|t|), no overflow
      *a = t >= 0.0 ? p : 1.0 - p;
      *da = p * (1.0 - p);
    } else {
      *a = std::atan(t) / M_PI + 0.5;
      *da = 1.0 / (M_PI * (1.0 + t * t));
    }
  }

  // tau = eps * unit(x), and d tau / d x (zero for "none" and constant x).
  void set_temperature() {
    tau_grad_.assign(n_, 0.0);
    const double sd = n_ > 1 ? standard_deviation(xs_.data(), n_) : 0.0;
    if (s_.scale == NetworkScale::none || !(sd > 0.0) || !std::isfinite(sd)) {
      tau_ = s_.eps;
      return;
    }
    const double factor = s_.scale == NetworkScale::spacing ? 1.0 / static_cast<double>(n_) : 1.0;
    tau_ = s_.eps * sd * factor;
    double mean = 0.0;
    for (double v : xs_) mean += v;
    mean /= static_cast<double>(n_);
    // d sd / d x_i = (x_i - mean) / ((n - 1) sd)
    for (std::size_t i = 0; i < n_; ++i) {
      tau_grad_[i] = s_.eps * factor * (xs_[i] - mean) / (static_cast<double>(n_ - 1) * sd);
    }
  }

  // w <- A_K ... A_1 w (the mass of w carried to the sorted positions).
  void push(std::vector<double>& w) const {
    for (std::size_t k = 0; k < comps_.size(); ++k)
      mix(alpha_[k], w[comps_[k].lo], w[comps_[k].hi]);
  }

  // z <- A_1^T ... A_K^T z, keeping z_lo - z_hi at each comparator's output.
  void pull(std::vector<double>& z, double* zd) const {
    for (std::size_t k = comps_.size(); k-- > 0;) {
      const Comparator& cp = comps_[k];
      zd[k] = z[cp.lo] - z[cp.hi];
      mix(alpha_[k], z[cp.lo], z[cp.hi]);
    }
  }

  // Soft ranks: z = M_K^T (1, ..., n), with z_lo - z_hi stored per comparator.
  void ranks_backward() {
    std::vector<double> z(wires_, 0.0);
    for (std::size_t j = 0; j < n_; ++j) z[j] = static_cast<double>(j + 1);
    zdiff_.resize(comps_.size());
    pull(z, zdiff_.data());
    rank_.assign(z.begin(), z.begin() + static_cast<std::ptrdiff_t>(n_));
  }

  // abar_k += (z_lo - z_hi)_k (w_lo - w_hi)_k for w pushed forward from its
  // start (d/d alpha of z^T A_K ... A_1 w).
  void alpha_adjoints(std::vector<double>& w, const double* zd, std::vector<double>& abar) const {
    for (std::size_t k = 0; k < comps_.size(); ++k) {
      const Comparator& cp = comps_[k];
      abar[k] += zd[k] * (w[cp.lo] - w[cp.hi]);
      mix(alpha_[k], w[cp.lo], w[cp.hi]);
    }
  }

  std::size_t n_ = 0, wires_ = 0;
  NetworkSettings s_;
  Buffer<Comparator> comps_;
  Buffer<double> alpha_, slope_, diff_, zdiff_;
  std::vector<double> xs_, rank_, tau_grad_;
  double tau_ = 1.0;
};

static_assert(is_column_operator<NetworkOperator>::value,
              "NetworkOperator must meet the operator contract (operator.hpp)");

}  // namespace diffrank
