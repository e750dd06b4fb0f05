// Hard quantile normalization (Bolstad, Irizarry, Astrand and Speed 2003).
//
// Every column (sample) of a features x samples matrix is mapped onto a
// common target distribution: the value of rank k becomes the k-th target
// quantile. The functions here work on one column at a time so that callers
// can spread columns over threads; none of them allocates on the heap except
// through the scratch buffer the caller owns.
//
// Missing values (NaN, which includes R's NA) are left out of a column: a
// column with q of its p values observed is compared with the target at the q
// equally spaced quantile levels (k - 1) / (q - 1). Targets are functions of
// the level in [0, 1], represented by p values at levels i / (p - 1) and
// linearly interpolated in between (R's quantile type 7).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common.hpp"

namespace diffrank {

enum class Ties {
  midrank,  // a tied block takes the target at its mean rank (Bioconductor)
  average,  // a tied block takes the mean of the target over its ranks
  first     // ties are broken by position in the column
};

// Buffers for sorting the columns of a matrix one after another, reused so
// that a thread allocates them once.
struct ColumnSorter {
  std::vector<IndexedValue> scratch;
  std::vector<std::uint32_t> order;
  std::vector<double> sorted;

  // Sorts the observed values of x[0..p) into order and sorted; returns
  // their number.
  std::size_t operator()(const double* x, std::size_t p) {
    order.resize(p);
    sorted.resize(p);
    return sort_observed(x, p, scratch, order.data(), sorted.data());
  }
};

// Value at 0-based fractional position h of the non-decreasing values v[0..n).
inline double interpolate_at(const double* v, std::size_t n, double h) {
  const double lo_floor = std::floor(h);
  std::size_t lo = static_cast<std::size_t>(lo_floor);
  if (lo >= n - 1) return v[n - 1];
  const double frac = h - lo_floor;
  if (frac == 0.0) return v[lo];
  // a + f (b - a), capped at b, keeps interpolated values non-decreasing in h
  // to the last bit (equal neighbours give exactly their value). When b - a
  // overflows (neighbours of opposite signs near the largest double), the
  // convex combination a (1 - f) + b f cannot, and stays within [a, b].
  const double a = v[lo], b = v[lo + 1], gap = b - a;
  if (std::isfinite(gap)) return std::min(a + frac * gap, b);
  return std::min(std::max(a * (1.0 - frac) + b * frac, a), b);
}

// Position in a target of length p of the level (k / (q - 1)), k 0-based,
// computed as one rounded division of exact integers so that it is exact
// whenever the result is a whole number. `twice_k` allows half ranks.
inline double target_position(double twice_k, std::size_t q, std::size_t p) {
  if (q == p) return 0.5 * twice_k;
  if (q == 1) return 0.5 * static_cast<double>(p - 1);
  return twice_k * static_cast<double>(p - 1) / (2.0 * static_cast<double>(q - 1));
}

// Type-7 quantiles of the increasing values sorted[0..q) at the p levels
// i / (p - 1), written to out[0..p). A single level (p == 1) is the median.
inline void resample_sorted(const double* sorted, std::size_t q, std::size_t p, double* out) {
  if (q == p) {
    std::copy(sorted, sorted + q, out);
    return;
  }
  if (p == 1) {
    out[0] = interpolate_at(sorted, q, 0.5 * static_cast<double>(q - 1));
    return;
  }
  for (std::size_t i = 0; i < p; ++i) {
    const double h = static_cast<double>(i) * static_cast<double>(q - 1) / static_cast<double>(p - 1);
    out[i] = interpolate_at(sorted, q, h);
  }
}

// Calls block(start, end) for every run [start, end) of equal values in the
// sorted order order[0..q) of x; with split_ties every value is its own run.
template <class Block>
inline void for_each_tie_block(const double* x, const std::uint32_t* order, std::size_t q,
                               bool split_ties, Block&& block) {
  std::size_t start = 0;
  while (start < q) {
    std::size_t end = start + 1;
    if (!split_ties) {
      while (end < q && x[order[end]] == x[order[start]]) ++end;
    }
    block(start, end);
    start = end;
  }
}

// Writes the normalized column x[0..p) to out[0..p): the observed values,
// visited in increasing order through order[0..q) (from sort_observed), take
// the target (p increasing values) at their quantile levels, tied blocks as
// `ties` says; missing entries are copied as they are (NA or NaN).
inline void normalize_sorted_column(const double* x, const std::uint32_t* order, std::size_t q,
                                    std::size_t p, const double* target, Ties ties, double* out) {
  if (q < p) {
    // Missing entries keep their own kind of NaN, so R's NA stays NA.
    for (std::size_t i = 0; i < p; ++i) {
      if (std::isnan(x[i])) out[i] = x[i];
    }
  }
  for_each_tie_block(x, order, q, ties == Ties::first, [&](std::size_t start, std::size_t end) {
    double value;
    if (ties == Ties::average && end - start > 1) {
      const double count = static_cast<double>(end - start);
      double sum = 0.0;
      for (std::size_t k = start; k < end; ++k) {
        sum += interpolate_at(target, p, target_position(2.0 * k, q, p));
      }
      value = sum / count;
      if (!std::isfinite(value)) {
        // the sum overflowed (values near the largest double): a mean of
        // scaled terms instead, only in that case
        value = 0.0;
        for (std::size_t k = start; k < end; ++k) {
          value += interpolate_at(target, p, target_position(2.0 * k, q, p)) / count;
        }
      }
    } else {
      const double twice_mean_rank = static_cast<double>(start + end - 1);
      value = interpolate_at(target, p, target_position(twice_mean_rank, q, p));
    }
    for (std::size_t k = start; k < end; ++k) out[order[k]] = value;
  });
}

// Writes to position[0..p) where each entry of x[0..p) falls in a target of
// length p under the midrank rule (a 0-based fractional index); a missing
// entry gets the middle of the target, the median.
inline void midrank_positions(const double* x, const std::uint32_t* order, std::size_t q,
                              std::size_t p, double* position) {
  if (q < p) std::fill(position, position + p, 0.5 * static_cast<double>(p - 1));
  for_each_tie_block(x, order, q, false, [&](std::size_t start, std::size_t end) {
    const double h = target_position(static_cast<double>(start + end - 1), q, p);
    for (std::size_t k = start; k < end; ++k) position[order[k]] = h;
  });
}

}  // namespace diffrank

namespace diffrank {

// Mean of the target (t values) at the quantile levels of the ranks
// start..end-1 of q observed values; scaled terms if the plain sum overflows.
inline double target_mean_over_ranks(const double* target, std::size_t t, std::size_t q,
                                     std::size_t start, std::size_t end) {
  const double count = static_cast<double>(end - start);
  double sum = 0.0;
  for (std::size_t k = start; k < end; ++k) {
    sum += interpolate_at(target, t, target_position(2.0 * k, q, t));
  }
  double value = sum / count;
  if (!std::isfinite(value)) {
    value = 0.0;
    for (std::size_t k = start; k < end; ++k) {
      value += interpolate_at(target, t, target_position(2.0 * k, q, t)) / count;
    }
  }
  return value;
}

// Writes to out[order[k]], k < q, the normalized values of the q observed
// entries of x (visited in increasing order through order[0..q), from
// sort_observed) against a target of any length t: the entry of rank k takes
// the target's quantile function (linear between its t values at the levels
// i / (t - 1)) at the level k / (q - 1), tied blocks as `ties` says. Missing
// entries are not written. For t equal to the column's length this is
// normalize_sorted_column; for other lengths it is preprocessCore's
// normalize.quantiles.use.target rule (the target is never resampled first).
inline void map_sorted_to_target(const double* x, const std::uint32_t* order, std::size_t q,
                                 const double* target, std::size_t t, Ties ties, double* out) {
  for_each_tie_block(x, order, q, ties == Ties::first, [&](std::size_t start, std::size_t end) {
    const double value =
        (ties == Ties::average && end - start > 1)
            ? target_mean_over_ranks(target, t, q, start, end)
            : interpolate_at(target, t,
                             target_position(static_cast<double>(start + end - 1), q, t));
    for (std::size_t k = start; k < end; ++k) out[order[k]] = value;
  });
}

}  // namespace diffrank
