// Soft sort and soft rank by projection onto the permutahedron (Blondel,
// Teboul, Berthet and Djolonga, "Fast differentiable sorting and ranking",
// ICML 2020).
//
// The permutahedron P(w) is the convex hull of the permutations of w. With a
// quadratic (L2) or entropic (KL) regularizer of strength eps, sorting and
// ranking become projections onto P(w), which reduce to one O(n log n) sort
// and one O(n) isotonic regression (isotonic.hpp). The Jacobian is block
// diagonal in the sorted coordinates, so a SoftOperator keeps the sorting
// permutation, the integer block boundaries and, for KL, the softmax weights
// inside each block: Jacobian-vector and vector-Jacobian products then cost
// O(n) without recomputing the forward pass or forming an n x n matrix.
//
// Conventions (rho = (n, n - 1, ..., 1), 1-based ranks, 1 = smallest):
//   rank, L2: P_Q(x / eps, rho);  rank, KL: exp(P_E(x / eps, log rho));
//   descending sort: P(rho / eps, sort_desc(x));
//   descending rank = rank of -x;  ascending sort = -(descending sort of -x).
// eps = 0 gives the hard operators (average ranks for ties).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

#include "common.hpp"
#include "isotonic.hpp"
#include "operator.hpp"

namespace diffrank {

enum class Regularization { l2, kl };
enum class SoftKind { rank, sort };

// Soft sorts refuse |x| or n / eps beyond this magnitude: the isotonic
// solvers take differences of the two, which must stay finite.
constexpr double soft_max_magnitude = 1e300;

// Writes to perm[0..n) the positions of key[0..n) in decreasing order of
// sign * key, ties in increasing order of position, and to sorted[0..n) (if
// not null) the values sign * key[perm[i]]. Keys are compared through their
// IEEE bit patterns mapped to unsigned integers of the same order. Long inputs
// go through a stable least-significant-digit radix sort (11-bit digits, so
// that the counters stay in cache), several times faster than a comparison
// sort at n = 10^6; short ones through a bucket sort. n must be below 2^32.
class DecreasingOrder {
 public:
  void operator()(const double* key, double sign, std::size_t n, std::uint32_t* perm,
                  double* sorted = nullptr) {
    if (n < 32768) {
      bucket_sort(key, sign, n, perm, sorted);
      return;
    }
    // Stable LSD radix sort on the high 32 bits of the order-preserving key,
    // the position in the low 32 bits (three 11-bit passes over 8-byte
    // items); runs that share the high bits are then ordered by the full key.
    constexpr int bits = 11;
    constexpr std::size_t radix = std::size_t(1) << bits;
    keys_.resize(n);
    keys_tmp_.resize(n);
    count_.assign(3 * radix, 0);
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint64_t k = (encode(-sign * key[i]) & 0xFFFFFFFF00000000ULL) | i;
      keys_[i] = k;
      ++count_[(k >> 32) & (radix - 1)];
      ++count_[radix + ((k >> 43) & (radix - 1))];
      ++count_[2 * radix + (k >> 54)];
    }
    std::uint64_t* src = keys_.data();
    std::uint64_t* dst = keys_tmp_.data();
    for (int p = 0; p < 3; ++p) {
      const int shift = 32 + bits * p;
      std::size_t* count = count_.data() + p * radix;
      if (count[(src[0] >> shift) & (radix - 1)] == n) continue;  // one digit: nothing moves
      std::size_t total = 0;
      for (std::size_t d = 0; d < radix; ++d) {
        const std::size_t c = count[d];
        count[d] = total;
        total += c;
      }
      for (std::size_t i = 0; i < n; ++i) dst[count[(src[i] >> shift) & (radix - 1)]++] = src[i];
      std::swap(src, dst);
    }
    auto full_less = [&](std::uint64_t u, std::uint64_t v) {
      const std::uint32_t iu = static_cast<std::uint32_t>(u), iv = static_cast<std::uint32_t>(v);
      const std::uint64_t ku = encode(-sign * key[iu]), kv = encode(-sign * key[iv]);
      return ku < kv || (ku == kv && iu < iv);
    };
    for (std::size_t i = 0; i < n;) {
      std::size_t j = i + 1;
      while (j < n && (src[j] >> 32) == (src[i] >> 32)) ++j;
      // exact ties are already in order of position (the sort is stable)
      if (j - i > 1 && !std::is_sorted(src + i, src + j, full_less)) {
        std::sort(src + i, src + j, full_less);
      }
      i = j;
    }
    for (std::size_t i = 0; i < n; ++i) perm[i] = static_cast<std::uint32_t>(src[i]);
    if (sorted) {
      for (std::size_t i = 0; i < n; ++i) sorted[i] = sign * key[perm[i]];
    }
  }

 private:
  struct Item {
    double value;
    std::uint32_t index;
  };

  // Short inputs: n buckets of equal width between the minimum and the
  // maximum, filled stably, then insertion sort inside each bucket (a bucket
  // of more than 16 items, as skewed data produce, is sorted with std::sort,
  // so the worst case stays O(n log n)). About four times faster than
  // std::sort at n = 100, where comparison sorts lose most of their time to
  // mispredicted branches.
  void bucket_sort(const double* key, double sign, std::size_t n, std::uint32_t* perm,
                   double* sorted) {
    if (n == 0) return;
    items_.resize(n);
    bucket_.resize(n);
    start_.resize(n + 1);
    // ascending order of -sign * key; adding 0.0 makes the two zeros equal
    auto value = [key, sign](std::size_t i) { return -sign * key[i] + 0.0; };
    double lo = value(0), hi = lo;
    for (std::size_t i = 0; i < n; ++i) {
      const double v = value(i);
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    // halves, so that hi - lo cannot overflow
    const double half_width = 0.5 * hi - 0.5 * lo;
    // A subnormal spread makes scale infinite (t is then NaN at lo and
    // infinite above it): t is compared with the last bucket before any
    // conversion, which is only defined for values that fit.
    const double scale = half_width > 0.0 ? 0.5 * static_cast<double>(n - 1) / half_width : 0.0;
    const double last = static_cast<double>(n - 1);
    std::fill(start_.data(), start_.data() + n + 1, 0u);
    for (std::size_t i = 0; i < n; ++i) {
      const double t = (0.5 * value(i) - 0.5 * lo) * scale;
      const std::size_t b = t >= last ? n - 1 : (t > 0.0 ? static_cast<std::size_t>(t) : 0);
      bucket_[i] = static_cast<std::uint32_t>(b);
      ++start_[b + 1];
    }
    std::uint32_t largest = 0;
    for (std::size_t b = 0; b < n; ++b) {
      largest = std::max(largest, start_[b + 1]);
      start_[b + 1] += start_[b];
    }
    for (std::size_t i = 0; i < n; ++i) {
      items_[start_[bucket_[i]]++] = {value(i), static_cast<std::uint32_t>(i)};
    }
    // start_[b] is now the end of bucket b, the start of bucket b + 1
    Item* items = items_.data();
    if (largest <= 16) {
      // The bucket index is monotone in the value, so every item of an earlier
      // bucket is strictly smaller: one insertion sort over the whole array
      // never moves an item out of its bucket, and gives the same order as one
      // per bucket without a loop over the (mostly empty or single) buckets.
      insertion_sort(items, 0, n);
    } else {
      std::size_t begin = 0;
      for (std::size_t b = 0; b < n; ++b) {
        const std::size_t end = start_[b];
        if (end - begin > 16) {
          std::sort(items + begin, items + end, [](const Item& a, const Item& c) {
            return a.value < c.value || (a.value == c.value && a.index < c.index);
          });
        } else {
          insertion_sort(items, begin, end);
        }
        begin = end;
      }
    }
    if (sorted) {
      for (std::size_t i = 0; i < n; ++i) {
        perm[i] = items[i].index;
        sorted[i] = -items[i].value;
      }
    } else {
      for (std::size_t i = 0; i < n; ++i) perm[i] = items[i].index;
    }
  }

  // Stable insertion sort of items[begin, end) by value.
  static void insertion_sort(Item* items, std::size_t begin, std::size_t end) {
    for (std::size_t i = begin + 1; i < end; ++i) {
      const Item item = items[i];
      std::size_t j = i;
      while (j > begin && items[j - 1].value > item.value) {
        items[j] = items[j - 1];
        --j;
      }
      items[j] = item;
    }
  }

  // Order-preserving map of doubles (not NaN) to unsigned integers; adding
  // 0.0 turns -0.0 into +0.0 so that the two zeros tie.
  static std::uint64_t encode(double v) {
    v += 0.0;
    std::uint64_t b;
    std::memcpy(&b, &v, sizeof b);
    return (b >> 63) ? ~b : (b | 0x8000000000000000ULL);
  }

  Buffer<Item> items_;
  Buffer<std::uint32_t> bucket_, start_;
  Buffer<std::uint64_t> keys_, keys_tmp_;
  std::vector<std::size_t> count_;
};

// log(sum_{j < m} exp(-j / eps)), the log-normalizer of the softmax of
// rho / eps over a block of m consecutive positions, in closed form;
// log_one_minus_q is log(1 - exp(-1 / eps)).
inline double log_geometric_sum(std::size_t m, double eps, double log_one_minus_q) {
  if (m <= 1) return 0.0;
  return std::log(-std::expm1(-static_cast<double>(m) / eps)) - log_one_minus_q;
}

// Projection of z[0..n) onto the permutahedron of w[0..n) (any order), L2 or
// KL (for KL the permutahedron of exp(w), returned in log space).
class PermutahedronProjection {
 public:
  void operator()(const double* z, const double* w, std::size_t n, Regularization reg,
                  double* out) {
    perm_.resize(n);
    wperm_.resize(n);
    s_.resize(n);
    ws_.resize(n);
    y_.resize(n);
    a_.resize(n);
    bounds_.resize(n + 1);
    order_(z, 1.0, n, perm_.data());
    order_(w, 1.0, n, wperm_.data());
    for (std::size_t i = 0; i < n; ++i) {
      s_[i] = z[perm_[i]];
      ws_[i] = w[wperm_[i]];
    }
    std::size_t nb;
    if (reg == Regularization::l2) {
      for (std::size_t i = 0; i < n; ++i) y_[i] = s_[i] - ws_[i];
      nb = isotonic_l2_decreasing(y_.data(), n, bounds_.data(), a_.data());
    } else {
      nb = isotonic_kl_decreasing(s_.data(), ws_.data(), n, bounds_.data(), y_.data(), a_.data());
    }
    for (std::size_t b = 0; b < nb; ++b) {
      const std::size_t lo = bounds_[b], hi = bounds_[b + 1];
      const double m = static_cast<double>(hi - lo);
      const double s0 = s_[lo], w0 = ws_[lo];
      double ds = 0.0, dw = 0.0;
      if (reg == Regularization::l2) {
        for (std::size_t i = lo; i < hi; ++i) {
          ds += (s_[i] - s0) / m;
          dw += (ws_[i] - w0) / m;
        }
        for (std::size_t i = lo; i < hi; ++i) out[perm_[i]] = (s_[i] - s0 - ds) + (w0 + dw);
      } else {
        for (std::size_t i = lo; i < hi; ++i) {
          ds += std::exp(s_[i] - s0);
          dw += std::exp(ws_[i] - w0);
        }
        const double lse_w = w0 + std::log(dw), log_zs = std::log(ds);
        for (std::size_t i = lo; i < hi; ++i) out[perm_[i]] = (s_[i] - s0 - log_zs) + lse_w;
      }
    }
  }

 private:
  DecreasingOrder order_;
  std::vector<std::uint32_t> perm_, wperm_, bounds_;
  std::vector<double> s_, ws_, y_, a_;
};

enum class SoftScale { none, sd, spacing, local };

// Half-width of the window of local_rank_coordinates(): each gap is measured
// against the 2 * local_window - 1 gaps centred on it.
constexpr std::size_t local_window = 10;

struct SoftSettings {
  SoftKind kind = SoftKind::rank;
  Regularization reg = Regularization::l2;
  bool descending = false;
  double eps = 1.0;
  // Divide x by a multiple of its standard deviation first (and, for sorts,
  // multiply the result back), so that eps has no unit; differentiated
  // exactly. sd: by sd(x); spacing: by sd(x) / n, about the typical gap
  // between neighbouring sorted values, so that eps also does not depend on n.
  // local (ranks only): x mapped to local rank coordinates (see
  // SoftOperator::local_sorted), so that eps counts typical gaps of the
  // neighbourhood of each value, whatever n and the distribution of x.
  SoftScale scale = SoftScale::none;
};

// One soft rank or soft sort of a vector, with its derivatives. Reuse one
// object for many vectors to avoid allocations; jvp, vjp and jacobian refer
// to the last forward call.
class SoftOperator {
 public:
  // Writes the operator at x[0..n) to out[0..n) (ranks in the order of x,
  // sorted values in sorted order). Returns false, with out unspecified, when
  // x / eps overflows (ranks) or |x| or n / eps exceeds soft_max_magnitude
  // (sorts).
  // out may be null when only the derivatives are wanted (a vector-Jacobian
  // product right after the forward pass overwrites the value anyway).
  bool forward(const double* x, std::size_t n, const SoftSettings& settings, double* out) {
    set_ = settings;
    n_ = n;
    hard_ = !(settings.eps > 0.0);
    if (n == 0) return true;
    perm_.resize(n);
    bounds_.resize(n + 1);
    value_.resize(n);
    const bool rank = settings.kind == SoftKind::rank;
    sign_ = rank ? (settings.descending ? -1.0 : 1.0) : (settings.descending ? 1.0 : -1.0);
    local_ = false;
    s_.resize(n);
    t_.resize(n);
    const double* xin = x;
    if (rank && !hard_ && set_.scale == SoftScale::local) {
      local_sorted(x);  // one sort: the coordinates have the order of x
    } else {
      xin = scale_input(x);
      order_(xin, sign_, n, perm_.data(), s_.data());  // s_ = sign * xin, sorted decreasingly
    }
    if (hard_) {
      if (rank) {
        hard_rank();
      } else {
        hard_sort(xin);
      }
    } else {
      if (set_.reg == Regularization::kl) weight_.resize(n);
      if (!(rank ? soft_rank() : soft_sort())) return false;
    }
    write_output(out);
    return true;
  }

  // out = J u, J the Jacobian of the last forward call (n x n).
  void jvp(const double* u, double* out) {
    if (n_ == 0) return;
    if (local_) {
      extra_.resize(n_);
      local_jvp(u, extra_.data());
      apply(extra_.data(), out, false);
      return;
    }
    apply(u, out, false);
    if (scaled_) {
      // t = k F - J_F xs, k = 1 for sorts and 0 for ranks (chain rule through sd).
      double au = 0.0;
      for (std::size_t j = 0; j < n_; ++j) au += scale_gradient(j) * u[j];
      extra_.resize(n_);
      apply(xs_.data(), extra_.data(), false);
      const bool sort = set_.kind == SoftKind::sort;
      const double factor = sort ? 1.0 : 1.0 / c_;
      for (std::size_t i = 0; i < n_; ++i) {
        const double t = (sort ? value_[i] : 0.0) - extra_[i];
        out[i] = factor * (out[i] + au * t);
      }
    }
  }

  // out = J^T g.
  void vjp(const double* g, double* out) {
    if (n_ == 0) return;
    apply(g, out, true);
    if (local_) {
      local_vjp(out);
      return;
    }
    if (scaled_) {
      const bool sort = set_.kind == SoftKind::sort;
      double tg = 0.0;
      for (std::size_t i = 0; i < n_; ++i) {
        tg += (sort ? value_[i] * g[i] : 0.0) - xs_[i] * out[i];
      }
      const double factor = sort ? 1.0 : 1.0 / c_;
      for (std::size_t j = 0; j < n_; ++j) out[j] = factor * (out[j] + scale_gradient(j) * tg);
    }
  }

  // Column-major n x n Jacobian, J[i + n j] = d out_i / d x_j; O(n^2).
  void jacobian(double* jac) {
    std::vector<double> e(n_, 0.0);
    for (std::size_t j = 0; j < n_; ++j) {
      e[j] = 1.0;
      jvp(e.data(), jac + j * n_);
      e[j] = 0.0;
    }
  }

  std::size_t n_blocks() const { return n_ == 0 ? 0 : nb_; }
  std::size_t input_size() const { return n_; }
  std::size_t output_size() const { return n_; }

  // Whether the last result is near its eps -> infinity limit: its standard
  // deviation below `fraction` of the hard result's (the package's one rule
  // for every smoothed operator; R/checks.R).
  bool near_constant(double fraction) const {
    const std::size_t n = n_;
    if (n < 2 || hard_ || nb_ == n) return false;
    const auto spread = [n](auto&& value) {
      double mean = 0.0, ss = 0.0;
      for (std::size_t i = 0; i < n; ++i) mean += value(i);
      mean /= static_cast<double>(n);
      for (std::size_t i = 0; i < n; ++i) ss += (value(i) - mean) * (value(i) - mean);
      return ss;
    };
    const double soft = spread([this](std::size_t i) { return value_[i]; });
    double hard = 0.0;
    if (set_.kind == SoftKind::rank) {
      // the midranks of the tie blocks of s_ (ties survive the division by
      // eps), whose mean is (n - 1) / 2 whatever the ties
      const double centre = 0.5 * static_cast<double>(n - 1);
      std::size_t lo = 0;
      while (lo < n) {
        std::size_t hi = lo + 1;
        while (hi < n && s_[hi] == s_[lo]) ++hi;
        const double d = 0.5 * static_cast<double>(lo + hi - 1) - centre;
        hard += static_cast<double>(hi - lo) * d * d;
        lo = hi;
      }
    } else {
      hard = spread([this](std::size_t i) { return t_[i]; });
    }
    return hard > 0.0 && soft < fraction * fraction * hard;
  }

 private:
  // The input the operator works on: x itself, or x divided by c = k sd(x)
  // (settings.scale) into xs_, which sets scaled_, c_, k_ and mean_xs_.
  const double* scale_input(const double* x) {
    const std::size_t n = n_;
    scaled_ = false;
    c_ = 1.0;
    k_ = set_.scale == SoftScale::spacing ? 1.0 / static_cast<double>(n) : 1.0;
    if (set_.scale == SoftScale::none || set_.scale == SoftScale::local || hard_ || n < 2) {
      return x;
    }
    const double c = k_ * standard_deviation(x, n);
    if (!(c > 0.0 && std::isfinite(c))) return x;
    scaled_ = true;
    c_ = c;
    xs_.resize(n);
    double total = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      xs_[i] = x[i] / c;
      total += xs_[i];
    }
    mean_xs_ = total / static_cast<double>(n);
    return xs_.data();
  }

  // Local rank coordinates (Blondel et al.'s soft rank is the projection of
  // x / eps, so eps compares with the gaps between sorted values, and those
  // gaps differ by orders of magnitude between the dense centre and the tails
  // of a distribution and shrink as 1 / n). The distinct sorted values
  // u_0 < ... < u_{K-1}, with midranks R_k, are mapped to coordinates t whose
  // gap t_{k+1} - t_k is (u_{k+1} - u_k) (R_hi - R_lo) / (u_hi - u_lo): the
  // gap divided by the average gap per rank over the window lo..hi of the
  // 2 local_window - 1 gaps centred on it (clipped at the ends). So t grows by
  // one per rank on average in every neighbourhood, and eps counts typical
  // local gaps at every n and for any distribution; t is invariant under
  // x -> a x + b (a > 0) and t(-x) = -t(x) up to a constant. A vector with
  // fewer than 2 local_window - 1 gaps has one window, the whole vector, and
  // its coordinates are divided by ((2 local_window - 1) / (K - 1))^(3/4):
  // in a short vector the closest pair is rarely much closer than the average,
  // and this keeps soft ranks of short vectors soft (all pooled gives ranks
  // within a fraction of a rank of the hard ones at these sizes).
  // Tied values share one coordinate; the derivative moves a tie block with
  // the mean of its members' directions.
  // Sorts y = sign * x decreasingly into perm_ and s_ and replaces s_ by the
  // local rank coordinates t(y), which have the same order (the operator then
  // works on xin = sign * t(sign * x), whose derivative in x is that of t at
  // y). Groups run in increasing y.
  void local_sorted(const double* x) {
    const std::size_t n = n_;
    order_(x, sign_, n, perm_.data(), s_.data());
    if (n < 2) return;
    lgroup_.resize(n);
    lu_.resize(n);
    lstart_.resize(n + 1);
    std::size_t k = 0;
    for (std::size_t p = 0; p < n; ++p) {  // p: position in increasing y
      const std::size_t i = n - 1 - p;
      const double v = s_[i];
      if (p == 0 || v != lu_[k - 1]) {
        lu_[k] = v;
        lstart_[k] = static_cast<std::uint32_t>(p);
        ++k;
      }
      lgroup_[perm_[i]] = static_cast<std::uint32_t>(k - 1);
    }
    const std::size_t groups = k;
    lstart_[groups] = static_cast<std::uint32_t>(n);
    if (groups < 2) return;
    local_ = true;
    lgroups_ = groups;
    // Work on u / c, c = max |u|: t does not change, and neither huge nor
    // denormal values overflow or lose their gaps. The derivatives are taken
    // in these units and divided by c last, so that a derivative too large
    // for a double (denormal x) is infinite rather than NaN.
    const double c = std::max(std::abs(lu_[0]), std::abs(lu_[groups - 1]));
    lscale_ = c;
    for (std::size_t g = 0; g < groups; ++g) lu_[g] /= c;
    lratio_.resize(groups - 1);
    lrate_.resize(groups - 1);
    lt_.resize(groups);
    const double shrink = std::pow(
        std::max(1.0, static_cast<double>(2 * local_window - 1) / static_cast<double>(groups - 1)),
        0.75);
    local_factor_ = 1.0 / shrink;
    lt_[0] = 0.0;
    for (std::size_t g = 0; g + 1 < groups; ++g) {
      const std::size_t lo = local_lo(g), hi = local_hi(g);
      const double span = lu_[hi] - lu_[lo];
      // R_hi - R_lo in ranks: half the two end blocks plus the blocks between
      const double ranks = 0.5 * static_cast<double>(lstart_[hi + 1] - lstart_[hi]) +
                           static_cast<double>(lstart_[hi] - lstart_[lo + 1]) +
                           0.5 * static_cast<double>(lstart_[lo + 1] - lstart_[lo]);
      const bool ok = span > 0.0;
      lratio_[g] = ok ? (lu_[g + 1] - lu_[g]) / span : 0.0;
      lrate_[g] = ok ? ranks / span : 0.0;
      lt_[g + 1] = lt_[g] + lratio_[g] * ranks;
    }
    for (std::size_t g = 0; g < groups; ++g) lt_[g] *= local_factor_;
    for (std::size_t p = 0, g = 0; p < n; ++p) {
      if (p == lstart_[g + 1]) ++g;
      s_[n - 1 - p] = lt_[g];
    }
  }

  std::size_t local_lo(std::size_t g) const {
    return g + 1 >= local_window ? g + 1 - local_window : 0;
  }
  std::size_t local_hi(std::size_t g) const { return std::min(g + local_window, lgroups_ - 1); }

  // out = (d t / d x) u: the gap of t after group g moves by rate * ((du_{g+1}
  // - du_g) - ratio * (du_hi - du_lo)) / c, du the mean direction of a group.
  void local_jvp(const double* u, double* out) {
    const std::size_t n = n_, groups = lgroups_;
    ldu_.assign(groups, 0.0);
    for (std::size_t i = 0; i < n; ++i) ldu_[lgroup_[i]] += u[i];
    for (std::size_t g = 0; g < groups; ++g) {
      ldu_[g] /= static_cast<double>(lstart_[g + 1] - lstart_[g]);
    }
    ldt_.resize(groups);
    ldt_[0] = 0.0;
    for (std::size_t g = 0; g + 1 < groups; ++g) {
      const double d = (ldu_[g + 1] - ldu_[g]) - lratio_[g] * (ldu_[local_hi(g)] - ldu_[local_lo(g)]);
      ldt_[g + 1] = ldt_[g] + lrate_[g] * d;
    }
    for (std::size_t i = 0; i < n; ++i) out[i] = local_factor_ * ldt_[lgroup_[i]] / lscale_;
  }

  // g <- (d t / d x)^T g, in place.
  void local_vjp(double* g) {
    const std::size_t n = n_, groups = lgroups_;
    ldt_.assign(groups, 0.0);  // cotangent of the coordinate of each group
    for (std::size_t i = 0; i < n; ++i) ldt_[lgroup_[i]] += local_factor_ * g[i];
    ldu_.assign(groups, 0.0);
    double suffix = 0.0;  // cotangent of the gap after group j: the sum over later groups
    for (std::size_t j = groups - 1; j-- > 0;) {
      suffix += ldt_[j + 1];
      const double b = lrate_[j] * suffix, r = lratio_[j] * b;
      ldu_[j + 1] += b;
      ldu_[j] -= b;
      ldu_[local_hi(j)] -= r;
      ldu_[local_lo(j)] += r;
    }
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint32_t k = lgroup_[i];
      g[i] = ldu_[k] / static_cast<double>(lstart_[k + 1] - lstart_[k]) / lscale_;
    }
  }

  // eps = 0, ranks: average ranks of the tie blocks of s_ (the blocks of the
  // Jacobian, which is zero).
  void hard_rank() {
    const std::size_t n = n_;
    const double dn = static_cast<double>(n);
    std::size_t nb = 0, lo = 0;
    while (lo < n) {
      std::size_t hi = lo + 1;
      while (hi < n && s_[hi] == s_[lo]) ++hi;
      bounds_[nb++] = static_cast<std::uint32_t>(lo);
      const double r = dn - 0.5 * static_cast<double>(lo + hi - 1);
      for (std::size_t i = lo; i < hi; ++i) value_[perm_[i]] = r;
      lo = hi;
    }
    bounds_[nb] = static_cast<std::uint32_t>(n);
    nb_ = nb;
  }

  // eps = 0, sorts: the sorted values, in singleton blocks.
  void hard_sort(const double* xin) {
    const std::size_t n = n_;
    for (std::size_t i = 0; i < n; ++i) {
      value_[i] = xin[perm_[i]];
      bounds_[i] = static_cast<std::uint32_t>(i);
    }
    bounds_[n] = static_cast<std::uint32_t>(n);
    nb_ = n;
    set_.reg = Regularization::l2;  // singleton blocks: the Jacobian is the permutation
  }

  // Soft ranks from s_ (sign * xin sorted decreasingly), divided by eps in
  // place; false when that overflows.
  bool soft_rank() {
    const std::size_t n = n_;
    const double eps = set_.eps;
    for (std::size_t i = 0; i < n; ++i) s_[i] /= eps;
    // Any finite x / eps works: PAV only pools values within about n of
    // each other, so no difference or block sum can overflow.
    if (!(std::isfinite(s_[0]) && std::isfinite(s_[n - 1]))) return false;
    if (set_.reg == Regularization::l2) {
      soft_rank_l2();
    } else {
      soft_rank_kl();
    }
    return true;
  }

  // L2 soft ranks: P_Q(s, rho), block by block.
  void soft_rank_l2() {
    const std::size_t n = n_;
    const double dn = static_cast<double>(n);
    for (std::size_t i = 0; i < n; ++i) t_[i] = s_[i] - (dn - static_cast<double>(i));
    nb_ = isotonic_l2_decreasing(t_.data(), n, bounds_.data(), t_.data());  // in place
    for (std::size_t b = 0; b < nb_; ++b) {
      const std::size_t lo = bounds_[b], hi = bounds_[b + 1];
      const double s0 = s_[lo];
      double ds = 0.0;
      for (std::size_t i = lo; i < hi; ++i) ds += s_[i] - s0;
      ds /= static_cast<double>(hi - lo);
      const double mean_rho = dn - 0.5 * static_cast<double>(lo + hi - 1);
      for (std::size_t i = lo; i < hi; ++i) value_[perm_[i]] = (s_[i] - s0 - ds) + mean_rho;
    }
  }

  // KL soft ranks: exp(P_E(s, log rho)), with the softmax weights of s_
  // inside each block kept in weight_ for the derivatives.
  void soft_rank_kl() {
    const std::size_t n = n_;
    const double dn = static_cast<double>(n);
    // weight_ serves as the solver's scratch before it receives the weights
    nb_ = isotonic_kl_decreasing_log_rho(s_.data(), n, bounds_.data(), t_.data(), weight_.data());
    for (std::size_t b = 0; b < nb_; ++b) {
      const std::size_t lo = bounds_[b], hi = bounds_[b + 1];
      if (hi - lo == 1) {  // the hard rank, without exp
        weight_[lo] = 1.0;
        value_[perm_[lo]] = dn - static_cast<double>(lo);
        continue;
      }
      const double s0 = s_[lo];  // the block maximum: s is decreasing
      double z = 0.0;
      for (std::size_t i = lo; i < hi; ++i) {
        weight_[i] = std::exp(s_[i] - s0);
        z += weight_[i];
      }
      const double m = static_cast<double>(hi - lo);
      const double rho_sum = m * (dn - 0.5 * static_cast<double>(lo + hi - 1));
      for (std::size_t i = lo; i < hi; ++i) {
        weight_[i] /= z;
        value_[perm_[i]] = weight_[i] * rho_sum;
      }
    }
  }

  // Soft sorts: the sorted values move to t_ and s_ receives rho / eps; false
  // when n / eps or the values exceed soft_max_magnitude.
  bool soft_sort() {
    const std::size_t n = n_;
    const double dn = static_cast<double>(n), eps = set_.eps;
    if (!(dn / eps <= soft_max_magnitude)) return false;
    s_.swap(t_);  // t_: the sorted values
    for (std::size_t i = 0; i < n; ++i) s_[i] = (dn - static_cast<double>(i)) / eps;
    if (!(std::abs(t_[0]) <= soft_max_magnitude && std::abs(t_[n - 1]) <= soft_max_magnitude)) {
      return false;
    }
    if (set_.reg == Regularization::l2) {
      soft_sort_l2();
    } else {
      soft_sort_kl();
    }
    for (std::size_t i = 0; i < n; ++i) value_[i] *= sign_;
    return true;
  }

  // L2 soft sort: P_Q(rho / eps, sorted values), block by block.
  void soft_sort_l2() {
    const std::size_t n = n_;
    const double eps = set_.eps;
    for (std::size_t i = 0; i < n; ++i) s_[i] -= t_[i];
    nb_ = isotonic_l2_decreasing(s_.data(), n, bounds_.data(), s_.data());  // in place
    for (std::size_t b = 0; b < nb_; ++b) {
      const std::size_t lo = bounds_[b], hi = bounds_[b + 1];
      const double m = static_cast<double>(hi - lo), w0 = t_[lo];
      double dw = 0.0;
      for (std::size_t i = lo; i < hi; ++i) dw += (t_[i] - w0) / m;
      const double centre = 0.5 * static_cast<double>(lo + hi - 1);
      for (std::size_t i = lo; i < hi; ++i) {
        value_[i] = (centre - static_cast<double>(i)) / eps + (w0 + dw);
      }
    }
  }

  // KL soft sort: P_E(rho / eps, sorted values), with the softmax weights of
  // the sorted values inside each block kept in weight_.
  void soft_sort_kl() {
    const std::size_t n = n_;
    const double eps = set_.eps;
    // the log-sum-exps of s_ overwrite s_ (not needed afterwards): one
    // buffer of n values less to allocate and fault in
    work_.resize(n);
    nb_ = isotonic_kl_decreasing(s_.data(), t_.data(), n, bounds_.data(), s_.data(), work_.data());
    const double log_one_minus_q = std::log(-std::expm1(-1.0 / eps));
    for (std::size_t b = 0; b < nb_; ++b) {
      const std::size_t lo = bounds_[b], hi = bounds_[b + 1];
      if (hi - lo == 1) {  // the hard sort, without exp
        weight_[lo] = 1.0;
        value_[lo] = t_[lo];
        continue;
      }
      const double w0 = t_[lo];  // the block maximum
      double z = 0.0;
      for (std::size_t i = lo; i < hi; ++i) {
        weight_[i] = std::exp(t_[i] - w0);
        z += weight_[i];
      }
      const double lse_w = w0 + std::log(z);
      const double log_zs = log_geometric_sum(hi - lo, eps, log_one_minus_q);
      for (std::size_t i = lo; i < hi; ++i) {
        weight_[i] /= z;
        value_[i] = (-static_cast<double>(i - lo) / eps - log_zs) + lse_w;
      }
    }
  }

  // d c / d x_j for c = k sd(x) and x = c xs.
  double scale_gradient(std::size_t j) const {
    return k_ * k_ * (xs_[j] - mean_xs_) / static_cast<double>(n_ - 1);
  }

  void write_output(double* out) const {
    if (out == nullptr) return;
    if (set_.kind == SoftKind::sort && scaled_) {
      for (std::size_t i = 0; i < n_; ++i) out[i] = c_ * value_[i];
    } else {
      std::copy(value_.data(), value_.data() + n_, out);
    }
  }

  // J_F v (transpose = false) or J_F^T v, F the operator on the (scaled)
  // input xin, before the chain rule through the scale.
  void apply(const double* v, double* out, bool transpose) {
    const bool rank = set_.kind == SoftKind::rank;
    if (rank && hard_) {
      std::fill(out, out + n_, 0.0);
      return;
    }
    const bool l2 = set_.reg == Regularization::l2;
    for (std::size_t b = 0; b < nb_; ++b) {
      const std::size_t lo = bounds_[b], hi = bounds_[b + 1];
      if (rank) {
        const double scale = sign_ / set_.eps;
        if (l2) {
          // symmetric: the same for the transpose
          double mean = 0.0;
          for (std::size_t i = lo; i < hi; ++i) mean += v[perm_[i]];
          mean /= static_cast<double>(hi - lo);
          for (std::size_t i = lo; i < hi; ++i) out[perm_[i]] = scale * (v[perm_[i]] - mean);
        } else if (!transpose) {
          double mean = 0.0;
          for (std::size_t i = lo; i < hi; ++i) mean += weight_[i] * v[perm_[i]];
          for (std::size_t i = lo; i < hi; ++i) {
            out[perm_[i]] = scale * value_[perm_[i]] * (v[perm_[i]] - mean);
          }
        } else {
          double total = 0.0;
          for (std::size_t i = lo; i < hi; ++i) total += value_[perm_[i]] * v[perm_[i]];
          for (std::size_t i = lo; i < hi; ++i) {
            out[perm_[i]] = scale * (value_[perm_[i]] * v[perm_[i]] - weight_[i] * total);
          }
        }
      } else if (!transpose) {
        double mean = 0.0;
        if (l2) {
          for (std::size_t i = lo; i < hi; ++i) mean += v[perm_[i]];
          mean /= static_cast<double>(hi - lo);
        } else {
          for (std::size_t i = lo; i < hi; ++i) mean += weight_[i] * v[perm_[i]];
        }
        for (std::size_t i = lo; i < hi; ++i) out[i] = mean;
      } else {
        double total = 0.0;
        for (std::size_t i = lo; i < hi; ++i) total += v[i];
        if (l2) {
          const double mean = total / static_cast<double>(hi - lo);
          for (std::size_t i = lo; i < hi; ++i) out[perm_[i]] = mean;
        } else {
          for (std::size_t i = lo; i < hi; ++i) out[perm_[i]] = weight_[i] * total;
        }
      }
    }
  }

  SoftSettings set_;
  std::size_t n_ = 0, nb_ = 0;
  bool hard_ = false, scaled_ = false, local_ = false;
  // local rank coordinates (local_sorted): group of each value, distinct
  // sorted values (divided by their largest magnitude), first sorted index of
  // each group, gap / window span and ranks / (window span) of each gap, the
  // coordinates of the groups, and scratch for the products
  Buffer<std::uint32_t> lgroup_, lstart_;
  Buffer<double> lu_, lratio_, lrate_, lt_;
  std::vector<double> ldu_, ldt_;
  std::size_t lgroups_ = 0;
  double local_factor_ = 1.0, lscale_ = 1.0;
  double sign_ = 1.0, c_ = 1.0, k_ = 1.0, mean_xs_ = 0.0;
  DecreasingOrder order_;
  Buffer<std::uint32_t> perm_, bounds_;
  // value_: ranks in the order of x, or sorted values, of the scaled input
  // (before multiplying sorts back by the scale); weight_: KL softmax inside
  // each block, in sorted order.
  Buffer<double> value_, weight_, xs_, s_, t_, work_, extra_;
};

static_assert(is_column_operator<SoftOperator>::value && has_jacobian<SoftOperator>::value,
              "SoftOperator must meet the operator contract (operator.hpp)");

}  // namespace diffrank
