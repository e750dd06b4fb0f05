// Variants of hard quantile normalization (Bolstad et al. 2003) that
// Bioconductor users rely on, built on quantile.hpp:
//  - the summary of the samples' quantile functions at one level: a weighted
//    mean, a trimmed mean or the median, optionally on the log2 scale (the
//    "robust" target of Bolstad's preprocessCore);
//  - weights that leave out the samples whose variance or mean is the most
//    extreme (preprocessCore's normalize.quantiles.robust);
//  - normalization through a subset of features (for example control probes):
//    the subset takes the target, the other features are placed by linear
//    interpolation between the subset's values of their column.
// Group-aware targets (qsmooth, Hicks et al. 2018) are mixtures of such
// targets and need nothing more than map_sorted_to_target.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "quantile.hpp"

namespace diffrank {

// The value of a quantile level summarizing the m > 0 samples' values v[0..m)
// (v is reordered): with trim == 0 the mean weighted by w[0..m) (all > 0),
// with 0 < trim < 0.5 the mean of the values left after dropping floor(m trim)
// at each end (as R's mean(trim =)), with trim >= 0.5 the median. With
// `geometric` the summary is taken of log2(v) and transformed back.
inline double summarize_level(double* v, const double* w, std::size_t m, double trim,
                              bool geometric) {
  if (geometric) {
    for (std::size_t j = 0; j < m; ++j) v[j] = std::log2(v[j]);
  }
  double value;
  if (trim <= 0.0) {
    long double sum = 0.0L, total = 0.0L;
    for (std::size_t j = 0; j < m; ++j) {
      sum += static_cast<long double>(w[j]) * v[j];
      total += w[j];
    }
    value = static_cast<double>(sum / total);
  } else {
    std::sort(v, v + m);
    if (trim >= 0.5) {
      value = (m % 2 == 1) ? v[m / 2] : (v[m / 2 - 1] + v[m / 2]) / 2.0;
    } else {
      const std::size_t drop = static_cast<std::size_t>(std::floor(static_cast<double>(m) * trim));
      long double sum = 0.0L;
      for (std::size_t j = drop; j < m - drop; ++j) sum += v[j];
      value = static_cast<double>(sum / static_cast<long double>(m - 2 * drop));
    }
  }
  return geometric ? std::exp2(value) : value;
}

// summarize_level() with trim 0 for samples given one at a time (a matrix
// read block by block): adds w * v[i] (log2 v[i] with `geometric`) to
// sum[i] for the quantile function v[0..levels) of one sample of weight
// w > 0. Fed the samples in order, with their weights summed in a long
// double `total`, weighted_level_value() repeats summarize_level()'s
// arithmetic, so the target is the same to the last bit.
inline void add_weighted_sample(const double* v, std::size_t levels, double w, bool geometric,
                                long double* sum) {
  for (std::size_t i = 0; i < levels; ++i) {
    const double value = geometric ? std::log2(v[i]) : v[i];
    sum[i] += static_cast<long double>(w) * value;
  }
}

inline double weighted_level_value(long double sum, long double total, bool geometric) {
  const double value = static_cast<double>(sum / total);
  return geometric ? std::exp2(value) : value;
}

// Which samples leave the target of robust quantile normalization.
enum class Extreme {
  none,
  variance,  // largest sum over the other samples of v_j / v_k + v_k / v_j
  mean,      // largest |sum over the other samples of (m_k - m_j)|
  both       // ceil(n_remove / 2) by variance, then floor(n_remove / 2) by mean
};

// Mean and variance (n - 1 denominator) of the observed values of x[0..p),
// summed in index order in double precision.
inline void observed_mean_variance(const double* x, std::size_t p, double& mean, double& var) {
  double sum = 0.0;
  std::size_t count = 0;
  for (std::size_t i = 0; i < p; ++i) {
    if (!std::isnan(x[i])) {
      sum += x[i];
      ++count;
    }
  }
  mean = sum / static_cast<double>(count);
  double squares = 0.0;
  for (std::size_t i = 0; i < p; ++i) {
    if (!std::isnan(x[i])) squares += (x[i] - mean) * (x[i] - mean);
  }
  var = squares / static_cast<double>(count - 1);
}

namespace detail {

// Sets to zero the weight of the sample with each of the n_remove largest
// scores: for each of them, the first sample whose score equals it.
inline void remove_largest(const std::vector<double>& score, std::size_t n_remove,
                           double* weights) {
  std::vector<double> sorted(score);
  std::sort(sorted.begin(), sorted.end());
  const std::size_t n = score.size();
  for (std::size_t r = 0; r < n_remove && r < n; ++r) {
    const double s = sorted[n - 1 - r];
    for (std::size_t j = 0; j < n; ++j) {
      if (score[j] == s) {
        weights[j] = 0.0;
        break;
      }
    }
  }
}

}  // namespace detail

// Writes to weights[0..n) 1 for the samples kept in the target and 0 for the
// n_remove most extreme ones, with preprocessCore's scores and order of
// removal, from the samples' means and variances (observed_mean_variance()),
// so that a matrix read block by block chooses the samples it would whole.
inline void extreme_weights_from_moments(const double* mean, const double* var, std::size_t n,
                                         Extreme rule, std::size_t n_remove, double* weights) {
  std::fill(weights, weights + n, 1.0);
  if (rule == Extreme::none || n_remove == 0) return;
  std::vector<double> var_score(n), mean_score(n);
  for (std::size_t j = 0; j < n; ++j) {
    double row = 0.0, col = 0.0, diff = 0.0;
    for (std::size_t k = 0; k < n; ++k) {
      if (k == j) continue;
      row += var[j] / var[k];
      col += var[k] / var[j];
      diff += mean[k] - mean[j];
    }
    var_score[j] = row + col;
    mean_score[j] = std::fabs(diff);
  }

  if (rule == Extreme::variance) {
    detail::remove_largest(var_score, n_remove, weights);
  } else if (rule == Extreme::mean) {
    detail::remove_largest(mean_score, n_remove, weights);
  } else {
    const std::size_t by_mean = n_remove / 2;
    detail::remove_largest(var_score, n_remove - by_mean, weights);
    // Means are taken from the largest down; a sample already left out by
    // variance is skipped, and each skip extends the list by one.
    std::vector<double> sorted(mean_score);
    std::sort(sorted.begin(), sorted.end());
    std::size_t limit = by_mean;
    for (std::size_t r = 0; r < limit && r < n; ++r) {
      const double s = sorted[n - 1 - r];
      for (std::size_t j = 0; j < n; ++j) {
        if (mean_score[j] != s) continue;
        if (weights[j] == 0.0) {
          ++limit;
        } else {
          weights[j] = 0.0;
          break;
        }
      }
    }
  }
}

// The quantile level of any value among the observed values of a subset of a
// column: linear between the subset's distinct values, each at the level of
// its tie block's mean rank, (r - 1) / (q - 1); constant beyond the subset's
// smallest and largest values.
class SubsetLevels {
 public:
  // sorted[0..q): the subset's observed values in increasing order, q > 0.
  void fit(const double* sorted, std::size_t q) {
    values_.clear();
    levels_.clear();
    std::size_t start = 0;
    while (start < q) {
      std::size_t end = start + 1;
      while (end < q && sorted[end] == sorted[start]) ++end;
      values_.push_back(sorted[start]);
      levels_.push_back(
          q == 1 ? 0.5 : static_cast<double>(start + end - 1) / (2.0 * static_cast<double>(q - 1)));
      start = end;
    }
  }

  double level_of(double v) const {
    const std::size_t n = values_.size();
    const std::size_t hi = static_cast<std::size_t>(
        std::upper_bound(values_.begin(), values_.end(), v) - values_.begin());
    if (hi == 0) return levels_[0];
    if (hi == n) return levels_[n - 1];
    const double a = values_[hi - 1], b = values_[hi];
    if (v == a) return levels_[hi - 1];
    double frac = (v - a) / (b - a);
    if (!std::isfinite(frac)) frac = (v / 2 - a / 2) / (b / 2 - a / 2);
    return levels_[hi - 1] + frac * (levels_[hi] - levels_[hi - 1]);
  }

 private:
  std::vector<double> values_;
  std::vector<double> levels_;
};

// Normalizes a column through a subset of its features, with buffers reused
// from column to column.
class SubsetNormalizer {
 public:
  // Writes to out[0..p) the column x[0..p) normalized to the target (t
  // increasing values): the observed entries with in_subset[i] != 0 are
  // normalized as a column of their own (map_sorted_to_target), the other
  // observed entries take the target at their level among the subset's
  // values (SubsetLevels), missing entries are copied. Returns the number of
  // observed subset values; when it is 0 nothing is written.
  std::size_t operator()(const double* x, std::size_t p, const int* in_subset, const double* target,
                         std::size_t t, Ties ties, double* out) {
    values_.clear();
    rows_.clear();
    for (std::size_t i = 0; i < p; ++i) {
      if (in_subset[i] != 0) {
        values_.push_back(x[i]);
        rows_.push_back(i);
      }
    }
    const std::size_t m = values_.size();
    const std::size_t q = sort_(values_.data(), m);
    if (q == 0) return 0;
    mapped_.resize(m);
    map_sorted_to_target(values_.data(), sort_.order.data(), q, target, t, ties, mapped_.data());
    levels_.fit(sort_.sorted.data(), q);
    const double last = static_cast<double>(t - 1);
    for (std::size_t i = 0; i < p; ++i) {
      if (std::isnan(x[i])) {
        out[i] = x[i];
      } else if (in_subset[i] == 0) {
        out[i] = interpolate_at(target, t, levels_.level_of(x[i]) * last);
      }
    }
    for (std::size_t k = 0; k < m; ++k) {
      if (!std::isnan(values_[k])) out[rows_[k]] = mapped_[k];
    }
    return q;
  }

 private:
  std::vector<double> values_;
  std::vector<std::size_t> rows_;
  std::vector<double> mapped_;
  ColumnSorter sort_;
  SubsetLevels levels_;
};

}  // namespace diffrank
