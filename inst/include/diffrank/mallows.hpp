// The Mallows model under the Kendall distance (Mallows 1957; Fligner and
// Verducci 1986): P(sigma) = exp(-theta d(sigma, centre)) / psi(theta) over
// the permutations sigma of n items, d the number of pairs that sigma and the
// centre order differently.
//
// With the items listed from the top of the centre, c_1, ..., c_n, let V_j
// count the items below c_j in the centre that sigma ranks above it
// (0 <= V_j <= n - j). Every permutation has one such inversion vector,
// d = sum V_j, and under the model the V_j are independent truncated
// geometric variables, P(V_j = r) proportional to q^r, q = exp(-theta). Hence
//   psi(theta) = prod_{j=1}^{n} (1 - q^j) / (1 - q),
//   E[d] = sum_j E[V_j],  E[V] = q / (1 - q) - (m + 1) q^(m+1) / (1 - q^(m+1))
// for V on 0..m, and an exact draw costs n - 1 uniforms: V_j by inverting its
// distribution function, then c_j's position is the (V_j + 1)-th free one
// from the top (the items above c_j in sigma among the free positions are
// exactly the V_j items of c_{j+1..n} placed above it), found by descending
// a Fenwick tree of free positions in O(log n).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace diffrank {

// log psi(theta) for n items (log n! at theta = 0).
inline double mallows_log_normalizer(std::size_t n, double theta) {
  double total = 0.0;
  for (std::size_t j = 2; j <= n; ++j) {
    const double jd = static_cast<double>(j);
    // (1 - q^j) / (1 - q), as expm1 ratios so that small theta keeps its digits
    total += theta > 0.0 ? std::log(std::expm1(-theta * jd) / std::expm1(-theta)) : std::log(jd);
  }
  return total;
}

// E[V] for V truncated geometric on 0..m with ratio exp(-theta).
inline double truncated_geometric_mean(std::size_t m, double theta) {
  const double md = static_cast<double>(m);
  // Below this the two terms of the closed form cancel to a few digits: the
  // series m/2 - theta m(m+2)/12 is exact to O((m theta)^3) there.
  if (theta * (md + 1.0) < 1e-4) return md / 2.0 - theta * md * (md + 2.0) / 12.0;
  return 1.0 / std::expm1(theta) - (md + 1.0) / std::expm1(theta * (md + 1.0));
}

// E[d] under the model with n items.
inline double mallows_expected_distance(std::size_t n, double theta) {
  double total = 0.0;
  for (std::size_t j = 1; j < n; ++j) total += truncated_geometric_mean(n - j, theta);
  return total;
}

// The theta >= 0 whose expected distance is `mean` (the maximum-likelihood
// dispersion for a given centre): 0 when mean >= n(n-1)/4, infinite when
// mean <= 0; else by bisection on log(theta), E[d] decreasing in theta.
inline double mallows_theta_for_distance(std::size_t n, double mean) {
  const double nd = static_cast<double>(n);
  if (!(mean > 0.0)) return INFINITY;
  if (mean >= nd * (nd - 1.0) / 4.0) return 0.0;
  double lo = -40.0, hi = 10.0;  // log(theta): E[d] at exp(10) is 0 in double
  for (int it = 0; it < 200 && hi - lo > 1e-15; ++it) {
    const double mid = 0.5 * (lo + hi);
    if (mallows_expected_distance(n, std::exp(mid)) > mean) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return std::exp(0.5 * (lo + hi));
}

// Exact draws from the model, reusing a Fenwick tree of free positions.
class MallowsSampler {
 public:
  // u[0..n-2] uniforms on (0, 1); centre_order[0..n) the items from the top of
  // the centre; writes rank[item] = its position in the draw (1 = top) and
  // returns the draw's distance to the centre.
  std::uint64_t draw(const double* u, double theta, const std::uint32_t* centre_order,
                     std::size_t n, double* rank) {
    reset(n);
    std::uint64_t distance = 0;
    for (std::size_t j = 0; j < n; ++j) {
      const std::size_t m = n - 1 - j;  // items below c_j in the centre
      const std::size_t v = j + 1 < n ? inversions(u[j], m, theta) : 0;
      distance += v;
      const std::size_t position = take(v + 1);  // 1-based
      rank[centre_order[j]] = static_cast<double>(position);
    }
    return distance;
  }

  // V on 0..m with P(V = r) proportional to exp(-theta r), from uniform u: the
  // smallest r with F(r) >= u, F(r) = (1 - q^(r+1)) / (1 - q^(m+1)).
  static std::size_t inversions(double u, std::size_t m, double theta) {
    const double md = static_cast<double>(m);
    double r;
    if (theta * (md + 1.0) < 1e-12) {
      r = std::floor(u * (md + 1.0));
    } else {
      // q^(r+1) <= 1 - u (1 - q^(m+1)) = t, so r + 1 >= log(t) / log(q)
      const double log_t = std::log1p(u * std::expm1(-theta * (md + 1.0)));
      r = std::ceil(-log_t / theta) - 1.0;
    }
    if (!(r > 0.0)) return 0;
    return r > md ? m : static_cast<std::size_t>(r);
  }

 private:
  void reset(std::size_t n) {
    n_ = n;
    tree_.assign(n + 1, 0);
    // every position free: node i covers (i - lowbit(i), i]
    for (std::size_t i = 1; i <= n; ++i) tree_[i] = static_cast<std::uint32_t>(i & (~i + 1));
    top_bit_ = 1;
    while (top_bit_ * 2 <= n) top_bit_ *= 2;
  }
  // Marks the k-th free position (1-based) taken and returns it.
  std::size_t take(std::size_t k) {
    std::size_t position = 0;
    for (std::size_t step = top_bit_; step > 0; step /= 2) {
      const std::size_t next = position + step;
      if (next <= n_ && tree_[next] < k) {
        position = next;
        k -= tree_[next];
      }
    }
    ++position;
    for (std::size_t i = position; i <= n_; i += i & (~i + 1)) --tree_[i];
    return position;
  }

  std::size_t n_ = 0, top_bit_ = 1;
  std::vector<std::uint32_t> tree_;
};

}  // namespace diffrank
