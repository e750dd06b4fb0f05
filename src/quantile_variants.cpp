// Glue for the quantile normalization variants (robust targets, subsets of
// features, blocks of features, one target per sample); arguments are checked
// in R/quantile_variants.R, R/quantile_robust.R and R/quantile_groups.R.
#include <Rcpp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <diffrank/quantile_variants.hpp>
#include <string>
#include <vector>

#include "glue.h"
#include "ties.h"
#include "parallel.h"

namespace {

// The rows of the blocks one after another: rows[starts[b]..starts[b + 1]).
struct Blocks {
  const int* rows;
  const int* starts;
  std::size_t count;
};

}  // namespace

// Quantile functions of the columns of x at n_levels levels (n_levels x
// ncol(x)), each from the column's observed values among the rows with
// in_subset != 0 (all rows when in_subset is NULL).
// [[Rcpp::export(rng = false)]]
Rcpp::NumericMatrix qn_column_quantiles(Rcpp::NumericMatrix x,
                                        Rcpp::Nullable<Rcpp::IntegerVector> in_subset, int n_levels,
                                        int threads) {
  const std::size_t p = x.nrow(), n = x.ncol(), levels = n_levels;
  Rcpp::NumericMatrix out(Rcpp::no_init(levels, n));
  std::vector<int> mask(p, 1);
  if (in_subset.isNotNull()) {
    Rcpp::IntegerVector given(in_subset.get());
    std::copy(given.begin(), given.end(), mask.begin());
  }
  const double* xp = x.begin();
  double* outp = out.begin();
  diffrank_glue::parallel_for(n, threads, [&](std::size_t j0, std::size_t j1) {
    std::vector<double> values;
    diffrank::ColumnSorter sort;
    for (std::size_t j = j0; j < j1; ++j) {
      values.clear();
      for (std::size_t i = 0; i < p; ++i) {
        if (mask[i] != 0) values.push_back(xp[j * p + i]);
      }
      const std::size_t q = sort(values.data(), values.size());
      diffrank::resample_sorted(sort.sorted.data(), q, levels, outp + j * levels);
    }
  });
  return out;
}

// The target from the quantile functions qf (levels x samples): at each
// level, the summary (summarize_level) of the samples with positive weight.
// Rows are independent, so the result does not depend on `threads`.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericVector qn_summarize_levels(Rcpp::NumericMatrix qf, Rcpp::NumericVector weights,
                                        double trim, bool geometric, int threads) {
  const std::size_t levels = qf.nrow(), n = qf.ncol();
  Rcpp::NumericVector out(Rcpp::no_init(levels));
  std::vector<std::size_t> kept;
  std::vector<double> kept_weights;
  for (std::size_t j = 0; j < n; ++j) {
    if (weights[j] > 0.0) {
      kept.push_back(j);
      kept_weights.push_back(weights[j]);
    }
  }
  const double* qp = qf.begin();
  double* outp = out.begin();
  diffrank_glue::parallel_for(
      levels, threads,
      [&](std::size_t i0, std::size_t i1) {
        std::vector<double> values(kept.size());
        for (std::size_t i = i0; i < i1; ++i) {
          for (std::size_t k = 0; k < kept.size(); ++k) values[k] = qp[kept[k] * levels + i];
          outp[i] = diffrank::summarize_level(values.data(), kept_weights.data(), kept.size(), trim,
                                              geometric);
        }
      },
      256);
  return out;
}

// Per column of x: the mean and variance of its observed values (those that
// choose the extreme samples, extreme_weights_from_moments()) and 1 when it
// has two different observed values, else 0; a 3 x ncol(x) matrix.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericMatrix qn_column_moments(Rcpp::NumericMatrix x, int threads) {
  const std::size_t p = x.nrow(), n = x.ncol();
  Rcpp::NumericMatrix out(3, n);
  const double* xp = x.begin();
  double* outp = out.begin();
  diffrank_glue::parallel_for(n, threads, [&](std::size_t j0, std::size_t j1) {
    for (std::size_t j = j0; j < j1; ++j) {
      const double* col = xp + j * p;
      diffrank::observed_mean_variance(col, p, outp[3 * j], outp[3 * j + 1]);
      const double* first = std::find_if(col, col + p, [](double v) { return !std::isnan(v); });
      const bool spread = first != col + p &&
          std::any_of(first + 1, col + p, [&](double v) { return !std::isnan(v) && v != *first; });
      outp[3 * j + 2] = spread ? 1.0 : 0.0;
    }
  });
  return out;
}

// preprocessCore's choice of samples left out of a robust target from the
// samples' means and variances (qn_column_moments()): 1 for the samples
// kept, 0 for the n_remove most extreme by `rule`.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericVector qn_extreme_from_moments(Rcpp::NumericVector mean, Rcpp::NumericVector var,
                                            std::string rule, int n_remove) {
  const diffrank::Extreme extreme =
      diffrank_glue::parse_choice<diffrank::Extreme>(rule, "remove_extreme",
                                                     {{"none", diffrank::Extreme::none},
                                                      {"variance", diffrank::Extreme::variance},
                                                      {"mean", diffrank::Extreme::mean},
                                                      {"both", diffrank::Extreme::both}});
  Rcpp::NumericVector weights(Rcpp::no_init(mean.size()));
  diffrank::extreme_weights_from_moments(mean.begin(), var.begin(), mean.size(), extreme,
                                         static_cast<std::size_t>(n_remove), weights.begin());
  return weights;
}

// Running sums of a weighted mean of quantile functions (summarize_level()
// with trim 0), fed the columns of `quantiles` (levels x samples, with their
// `weights`; samples of weight 0 are skipped) block after block: levels + 1
// long doubles, the last the total weight, as raw bytes between calls.
// Levels are independent, so the sums do not depend on `threads`.
// [[Rcpp::export(rng = false)]]
Rcpp::RawVector qn_accumulate_weighted(Rcpp::Nullable<Rcpp::RawVector> sums,
                                       Rcpp::NumericMatrix quantiles, Rcpp::NumericVector weights,
                                       bool geometric, int threads) {
  const std::size_t levels = quantiles.nrow(), n = quantiles.ncol();
  std::vector<long double> acc = diffrank_glue::sums_from_raw(sums, levels + 1);
  const double* q = quantiles.begin();
  const double* w = weights.begin();
  const std::size_t block = 256;
  const std::size_t n_blocks = (levels + block - 1) / block;
  diffrank_glue::parallel_for(n_blocks, threads, [&](std::size_t b0, std::size_t b1) {
    for (std::size_t b = b0; b < b1; ++b) {
      const std::size_t i0 = b * block, i1 = std::min(levels, i0 + block);
      for (std::size_t j = 0; j < n; ++j) {
        if (w[j] > 0.0) {
          diffrank::add_weighted_sample(q + j * levels + i0, i1 - i0, w[j], geometric,
                                        acc.data() + i0);
        }
      }
    }
  });
  for (std::size_t j = 0; j < n; ++j) {
    if (w[j] > 0.0) acc[levels] += w[j];
  }
  return diffrank_glue::sums_to_raw(acc);
}

// The weighted mean target from the sums of qn_accumulate_weighted().
// [[Rcpp::export(rng = false)]]
Rcpp::NumericVector qn_weighted_from_sums(Rcpp::RawVector sums, bool geometric) {
  const std::vector<long double> acc =
      diffrank_glue::sums_from_raw(sums, diffrank_glue::raw_sums_size(sums));
  const std::size_t levels = acc.size() - 1;
  Rcpp::NumericVector target(Rcpp::no_init(levels));
  for (std::size_t i = 0; i < levels; ++i) {
    target[i] = diffrank::weighted_level_value(acc[i], acc[levels], geometric);
  }
  return target;
}

// Each column of x normalized to its own target, the column of `targets`
// (t x ncol(x), increasing columns) of the same index.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericMatrix qn_normalize_columns(Rcpp::NumericMatrix x, Rcpp::NumericMatrix targets,
                                         std::string ties, int threads) {
  const std::size_t p = x.nrow(), n = x.ncol(), t = targets.nrow();
  const diffrank::Ties rule = diffrank_glue::parse_ties(ties);
  Rcpp::NumericMatrix out(Rcpp::no_init(p, n));
  const double* xp = x.begin();
  const double* tp = targets.begin();
  double* outp = out.begin();
  diffrank_glue::parallel_for(n, threads, [&](std::size_t j0, std::size_t j1) {
    diffrank::ColumnSorter sort;
    for (std::size_t j = j0; j < j1; ++j) {
      const double* col = xp + j * p;
      double* dest = outp + j * p;
      const std::size_t q = sort(col, p);
      for (std::size_t i = 0; i < p && q < p; ++i) {
        if (std::isnan(col[i])) dest[i] = col[i];
      }
      diffrank::map_sorted_to_target(col, sort.order.data(), q, tp + j * t, t, rule, dest);
    }
  });
  return out;
}

// The columns of x normalized through the rows with in_subset != 0
// (SubsetNormalizer) to `target` (increasing values of any length).
// [[Rcpp::export(rng = false)]]
Rcpp::NumericMatrix qn_normalize_subset(Rcpp::NumericMatrix x, Rcpp::IntegerVector in_subset,
                                        Rcpp::NumericVector target, std::string ties, int threads) {
  const std::size_t p = x.nrow(), n = x.ncol(), t = target.size();
  const diffrank::Ties rule = diffrank_glue::parse_ties(ties);
  Rcpp::NumericMatrix out(Rcpp::no_init(p, n));
  const double* xp = x.begin();
  const int* mask = in_subset.begin();
  const double* tp = target.begin();
  double* outp = out.begin();
  diffrank_glue::parallel_for(n, threads, [&](std::size_t j0, std::size_t j1) {
    diffrank::SubsetNormalizer normalize;
    for (std::size_t j = j0; j < j1; ++j) {
      normalize(xp + j * p, p, mask, tp, t, rule, outp + j * p);
    }
  });
  return out;
}

// Quantile normalization within blocks of rows: the rows of block b are
// rows[starts[b]..starts[b + 1]) (0-based); each block is normalized to the
// mean quantiles of its own values, as if it were a matrix of its own.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericMatrix qn_normalize_blocks(Rcpp::NumericMatrix x, Rcpp::IntegerVector rows,
                                        Rcpp::IntegerVector starts, std::string ties, int threads) {
  const std::size_t p = x.nrow(), n = x.ncol();
  const diffrank::Ties rule = diffrank_glue::parse_ties(ties);
  const Blocks blocks{rows.begin(), starts.begin(), static_cast<std::size_t>(starts.size() - 1)};
  Rcpp::NumericMatrix out(Rcpp::no_init(p, n));
  const double* xp = x.begin();
  double* outp = out.begin();

  // Quantile functions of every block of every column, blocks one after
  // another in each column; then their means over the columns.
  std::vector<double> quantiles(p * n);
  diffrank_glue::parallel_for(n, threads, [&](std::size_t j0, std::size_t j1) {
    std::vector<double> values;
    diffrank::ColumnSorter sort;
    for (std::size_t j = j0; j < j1; ++j) {
      for (std::size_t b = 0; b < blocks.count; ++b) {
        const std::size_t s = blocks.starts[b], e = blocks.starts[b + 1];
        values.resize(e - s);
        for (std::size_t k = s; k < e; ++k) values[k - s] = xp[j * p + blocks.rows[k]];
        const std::size_t q = sort(values.data(), e - s);
        diffrank::resample_sorted(sort.sorted.data(), q, e - s, quantiles.data() + j * p + s);
      }
    }
  });
  std::vector<double> target(p);
  const std::vector<double> ones(n, 1.0);
  diffrank_glue::parallel_for(
      p, threads,
      [&](std::size_t i0, std::size_t i1) {
        std::vector<double> values(n);
        for (std::size_t i = i0; i < i1; ++i) {
          for (std::size_t j = 0; j < n; ++j) values[j] = quantiles[j * p + i];
          target[i] = diffrank::summarize_level(values.data(), ones.data(), n, 0.0, false);
        }
      },
      256);

  diffrank_glue::parallel_for(n, threads, [&](std::size_t j0, std::size_t j1) {
    std::vector<double> values, mapped;
    diffrank::ColumnSorter sort;
    for (std::size_t j = j0; j < j1; ++j) {
      for (std::size_t b = 0; b < blocks.count; ++b) {
        const std::size_t s = blocks.starts[b], e = blocks.starts[b + 1];
        values.resize(e - s);
        mapped.resize(e - s);
        for (std::size_t k = s; k < e; ++k) values[k - s] = xp[j * p + blocks.rows[k]];
        const std::size_t q = sort(values.data(), e - s);
        diffrank::map_sorted_to_target(values.data(), sort.order.data(), q, target.data() + s,
                                       e - s, rule, mapped.data());
        for (std::size_t k = s; k < e; ++k) {
          const double v = values[k - s];
          outp[j * p + blocks.rows[k]] = std::isnan(v) ? v : mapped[k - s];
        }
      }
    }
  });
  return out;
}
