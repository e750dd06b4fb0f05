// The Mallows model under the Kendall distance (Mallows 1957; Fligner and
// Verducci 1986): P(sigma) = exp(-theta d(sigma, centre)) / psi(theta) over
// the permutations sigma of n items, d the number of pairs that sigma and the
// centre order differently.
//
// A ranking is built in stages, from the top (the multistage representation
// of Fligner and Verducci 1986): at stage j (j = 1..n-1) the item put in
// position j is the (S_j + 1)-th, in the centre's order, of the n - j + 1
// items not placed yet. S_j counts the pairs (the item placed, an item placed
// later) that the centre orders the other way, so d = sum S_j, and under the
// model the S_j are independent truncated geometric variables on 0..n-j,
// P(S_j = r) proportional to q^r, q = exp(-theta). Hence
//   psi(theta) = prod_{j=1}^{n} (1 - q^j) / (1 - q),
//   E[d] = sum_j E[S_j],  E[S] = q / (1 - q) - (m + 1) q^(m+1) / (1 - q^(m+1))
// for S on 0..m. With one dispersion theta_j per stage this is the
// generalized Mallows model; a top-t list (the first t positions, the rest
// unordered) has the probability of its first t stages, the marginal of the
// full rankings that extend it (Fligner and Verducci 1986; Meila and Bao
// 2010). An exact draw costs n - 1 uniforms: S_j by inverting its
// distribution function, then the item by descending a Fenwick tree of the
// centre's remaining items in O(log n).
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

// log of the normalizer of one stage, sum_{r=0}^{m} q^r = (1 - q^(m+1)) / (1 - q)
// (log(m + 1) at theta = 0).
inline double stage_log_normalizer(std::size_t m, double theta) {
  const double md = static_cast<double>(m);
  return theta > 0.0 ? std::log(std::expm1(-theta * (md + 1.0)) / std::expm1(-theta))
                     : std::log(md + 1.0);
}

// The theta >= 0 at which sum_j reached[j] E[S_j] = total, S_j on 0..n-1-j
// (stage j + 1, 0-based j), reached[j] the rankings that reach that stage:
// the maximum-likelihood dispersion of rankings or top-t lists for a given
// centre, total their summed distance. 0 when total is at least its value at
// theta = 0 (rankings at random), infinite when total <= 0; else by
// bisection on log(theta), the expectation decreasing in theta.
inline double mallows_theta_for_stages(std::size_t n, const double* reached, double total) {
  auto expected = [&](double theta) {
    double sum = 0.0;
    for (std::size_t j = 0; j + 1 < n; ++j) {
      if (reached[j] > 0.0) sum += reached[j] * truncated_geometric_mean(n - 1 - j, theta);
    }
    return sum;
  };
  if (!(total > 0.0)) return INFINITY;
  if (total >= expected(0.0)) return 0.0;
  double lo = -40.0, hi = 10.0;  // log(theta): E[S] at exp(10) is 0 in double
  for (int it = 0; it < 200 && hi - lo > 1e-15; ++it) {
    const double mid = 0.5 * (lo + hi);
    if (expected(std::exp(mid)) > total) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return std::exp(0.5 * (lo + hi));
}

// A Fenwick tree over the positions 1..n of the centre's order, each 1 while
// its item is not placed yet.
class RemainingItems {
 public:
  void reset(std::size_t n) {
    n_ = n;
    tree_.assign(n + 1, 0);
    // every item remaining: node i covers (i - lowbit(i), i]
    for (std::size_t i = 1; i <= n; ++i) tree_[i] = static_cast<std::uint32_t>(i & (~i + 1));
    top_bit_ = 1;
    while (top_bit_ * 2 <= n) top_bit_ *= 2;
  }
  // Removes the k-th remaining position (1-based) and returns it.
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
    remove(position);
    return position;
  }
  // The remaining positions before `position` (1-based), then removes it.
  std::size_t count_before_and_remove(std::size_t position) {
    std::size_t count = 0;
    for (std::size_t i = position - 1; i > 0; i -= i & (~i + 1)) count += tree_[i];
    remove(position);
    return count;
  }

 private:
  void remove(std::size_t position) {
    for (std::size_t i = position; i <= n_; i += i & (~i + 1)) --tree_[i];
  }
  std::size_t n_ = 0, top_bit_ = 1;
  std::vector<std::uint32_t> tree_;
};

// Exact draws from the (generalized) model.
class MallowsSampler {
 public:
  // u[0..n-2] uniforms on (0, 1); theta[0..n-2] the dispersion of each stage;
  // centre_order[0..n) the items from the top of the centre; writes
  // rank[item] = its position in the draw (1 = top) and returns the draw's
  // distance to the centre.
  std::uint64_t draw(const double* u, const double* theta, const std::uint32_t* centre_order,
                     std::size_t n, double* rank) {
    remaining_.reset(n);
    std::uint64_t distance = 0;
    for (std::size_t j = 0; j < n; ++j) {
      const std::size_t v = j + 1 < n ? inversions(u[j], n - 1 - j, theta[j]) : 0;
      distance += v;
      rank[centre_order[remaining_.take(v + 1) - 1]] = static_cast<double>(j + 1);
    }
    return distance;
  }

  // S on 0..m with P(S = r) proportional to exp(-theta r), from uniform u: the
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
  RemainingItems remaining_;
};

// The stage codes S_1..S_t of a top-t list: rank[item] in 1..t for the t
// listed items (each once) and NaN for the others; centre_rank[item] in
// 1..n. Writes S_j to codes[j - 1] for j = 1..min(t, n - 1) and returns that
// count. `by_position` is scratch of n entries.
class StageCoder {
 public:
  std::size_t operator()(const double* rank, const double* centre_rank, std::size_t n,
                         double* codes) {
    by_position_.assign(n, n);
    std::size_t t = 0;
    for (std::size_t i = 0; i < n; ++i) {
      if (std::isnan(rank[i])) continue;
      by_position_[static_cast<std::size_t>(rank[i]) - 1] = i;
      ++t;
    }
    remaining_.reset(n);
    const std::size_t stages = t < n ? t : (n > 0 ? n - 1 : 0);
    for (std::size_t j = 0; j < stages; ++j) {
      const std::size_t item = by_position_[j];
      codes[j] = static_cast<double>(
          remaining_.count_before_and_remove(static_cast<std::size_t>(centre_rank[item])));
    }
    return stages;
  }

 private:
  std::vector<std::size_t> by_position_;
  RemainingItems remaining_;
};

}  // namespace diffrank
