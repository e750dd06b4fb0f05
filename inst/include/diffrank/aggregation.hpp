// Rank aggregation on the table of pairwise preferences: above(a, b), the
// (weighted) number of rankings that put item a strictly above item b. A
// ranking of the items disagrees with the rankings on
//   D(order) = sum over pairs (a above b in order) of above(b, a),
// the summed Kendall distance when the rankings have no ties or missing items;
// a Kemeny ranking minimizes it (Kemeny 1959), and it is the maximum-
// likelihood centre of a Mallows model, also of top-t lists whose unlisted
// items count as tied below the listed ones (mallows.hpp).
//
// Exact minimization is NP-hard (Bartholdi, Tovey and Trick 1989); for a few
// items it is a shortest path over subsets: f(S) = min cost of ordering the
// items of S at the top, f(S + j) = f(S) + sum_{i in S} above(j, i) (Held and
// Karp 1962's recursion), O(2^n n^2) time and 2^n memory. Beyond that, a
// local search moves one item at a time to the position that lowers D most
// (O(n) per item with running sums), until no move lowers it: the result is
// locally optimal, not necessarily a Kemeny ranking.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace diffrank {

// Rows a0..a1-1 of above, stored row by row (above_rows[n a + b] = above(a,
// b), zeroed by the caller, so that each row is written contiguously):
// adds the weight of ranking k when r[a, k] < r[b, k]; NaN entries (missing
// items) order nothing. r is n x count, column-major; weights may be null
// (every ranking 1). Each row sums its rankings in their order, so rows split
// between threads give the same result.
inline void add_pairwise_preferences(const double* r, std::size_t n, std::size_t count,
                                     const double* weights, double* above_rows, std::size_t a0,
                                     std::size_t a1) {
  for (std::size_t k = 0; k < count; ++k) {
    const double* column = r + k * n;
    const double w = weights ? weights[k] : 1.0;
    if (w == 0.0) continue;
    for (std::size_t a = a0; a < a1; ++a) {
      const double ra = column[a];
      if (std::isnan(ra)) continue;
      double* row = above_rows + n * a;
      for (std::size_t b = 0; b < n; ++b) row[b] += ra < column[b] ? w : 0.0;
    }
  }
}

// D(order) for order[0..n), the items from the top.
inline double kemeny_disagreement(const double* above, std::size_t n, const std::uint32_t* order) {
  double total = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = i + 1; j < n; ++j) total += above[order[j] + n * order[i]];
  }
  return total;
}

// Items that the exact search takes: 2^16 subsets, about 2e7 additions.
constexpr std::size_t kKemenyExactMaxItems = 16;

// A Kemeny ranking of n <= kKemenyExactMaxItems items, written to order
// (from the top). Of several optimal rankings, the first found.
inline void kemeny_exact(const double* above, std::size_t n, std::uint32_t* order) {
  if (n == 0) return;
  const std::size_t full = std::size_t{1} << n;
  std::vector<double> best(full, std::numeric_limits<double>::infinity());
  std::vector<std::uint8_t> last(full, 0);
  best[0] = 0.0;
  for (std::size_t set = 0; set + 1 < full; ++set) {
    for (std::size_t j = 0; j < n; ++j) {
      const std::size_t bit = std::size_t{1} << j;
      if (set & bit) continue;
      double cost = best[set];
      for (std::size_t rest = set; rest != 0; rest &= rest - 1) {
        std::size_t i = 0;
        while (!((rest >> i) & 1u)) ++i;
        cost += above[j + n * i];
      }
      if (cost < best[set | bit]) {
        best[set | bit] = cost;
        last[set | bit] = static_cast<std::uint8_t>(j);
      }
    }
  }
  std::size_t set = full - 1;
  for (std::size_t position = n; position-- > 0;) {
    order[position] = last[set];
    set &= ~(std::size_t{1} << last[set]);
  }
}

// Moves single items of order (from the top) to the position that lowers D
// the most, while some move lowers it by more than tol; returns the number of
// moves. `stop` is polled once per sweep (an interrupt check) and ends the
// search early when it returns true.
template <class Stop>
std::size_t kemeny_local_search(const double* above, std::size_t n, std::uint32_t* order,
                                double tol, Stop stop) {
  std::size_t moves = 0;
  bool improved = true;
  while (improved && !stop()) {
    improved = false;
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint32_t x = order[i];
      double change = 0.0, best_change = -tol;
      std::size_t best = i;
      // x above y where y was above x: the disagreement of the pair goes from
      // above(x, y) to above(y, x), and the other way round moving down
      for (std::size_t t = i; t-- > 0;) {
        const std::uint32_t y = order[t];
        change += above[y + n * x] - above[x + n * y];
        if (change < best_change) {
          best_change = change;
          best = t;
        }
      }
      change = 0.0;
      for (std::size_t t = i + 1; t < n; ++t) {
        const std::uint32_t y = order[t];
        change += above[x + n * y] - above[y + n * x];
        if (change < best_change) {
          best_change = change;
          best = t;
        }
      }
      if (best == i) continue;
      if (best < i) {
        for (std::size_t t = i; t > best; --t) order[t] = order[t - 1];
      } else {
        for (std::size_t t = i; t < best; ++t) order[t] = order[t + 1];
      }
      order[best] = x;
      ++moves;
      improved = true;
    }
  }
  return moves;
}

}  // namespace diffrank
