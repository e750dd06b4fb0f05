// Glue for hard quantile normalization; arguments are checked in R/quantile.R.
#include <Rcpp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <diffrank/exact_sum.hpp>
#include <diffrank/quantile.hpp>
#include <string>
#include <vector>

#include "glue.h"
#include "parallel.h"
#include "ties.h"

namespace {

constexpr std::size_t kRowBlock = 256;  // rows summed together, in cache

// Adds rows [i0, i1) of the columns of the p x n matrix s to sums[0..i1 - i0).
void add_row_range(const double* s, std::size_t p, std::size_t n, std::size_t i0, std::size_t i1,
                   diffrank::ExactSum* sums) {
  for (std::size_t j = 0; j < n; ++j) {
    const double* col = s + j * p;
    for (std::size_t i = i0; i < i1; ++i) sums[i - i0].add(col[i]);
  }
}

// Adds the columns of the p x n matrix s to the exact sums of its rows,
// spread over threads by rows.
void add_columns(const double* s, std::size_t p, std::size_t n, int threads,
                 std::vector<diffrank::ExactSum>& sums) {
  const std::size_t n_blocks = (p + kRowBlock - 1) / kRowBlock;
  diffrank_glue::parallel_for(n_blocks, threads, [&](std::size_t b0, std::size_t b1) {
    for (std::size_t b = b0; b < b1; ++b) {
      const std::size_t i0 = b * kRowBlock;
      add_row_range(s, p, n, i0, std::min(p, i0 + kRowBlock), sums.data() + i0);
    }
  });
}

// Mean over the columns of the p x n matrix s, written to means[0..p): each
// row's sum is exact (diffrank/exact_sum.hpp), so the mean is the same to the
// last bit for any order of the columns, any split over threads, blocks or
// processes.
void row_means(const double* s, std::size_t p, std::size_t n, int threads, double* means) {
  const std::size_t n_blocks = (p + kRowBlock - 1) / kRowBlock;
  diffrank_glue::parallel_for(n_blocks, threads, [&](std::size_t b0, std::size_t b1) {
    std::vector<diffrank::ExactSum> sums(kRowBlock);
    for (std::size_t b = b0; b < b1; ++b) {
      const std::size_t i0 = b * kRowBlock, i1 = std::min(p, i0 + kRowBlock);
      std::fill(sums.begin(), sums.end(), diffrank::ExactSum());
      add_row_range(s, p, n, i0, i1, sums.data());
      for (std::size_t i = i0; i < i1; ++i) means[i] = sums[i - i0].mean(n);
    }
  });
}

std::vector<diffrank::ExactSum> exact_sums_from_raw(Rcpp::Nullable<Rcpp::RawVector> raw,
                                                    std::size_t p) {
  std::vector<diffrank::ExactSum> sums(p);
  if (raw.isNotNull()) {
    Rcpp::RawVector given(raw.get());
    if (!diffrank::add_exact_sums_from_bytes(given.begin(), given.size(), sums)) {
      Rcpp::stop("The running sums do not match the number of quantile levels.");
    }
  }
  return sums;
}

Rcpp::RawVector exact_sums_to_raw(const std::vector<diffrank::ExactSum>& sums) {
  const std::vector<unsigned char> bytes = diffrank::exact_sums_to_bytes(sums);
  Rcpp::RawVector raw(bytes.size());
  std::memcpy(raw.begin(), bytes.data(), bytes.size());
  return raw;
}

// The number of sums in raw bytes of exact_sums_to_raw().
std::size_t raw_sums_count(const Rcpp::RawVector& raw) {
  std::uint64_t count = 0;
  if (raw.size() < static_cast<R_xlen_t>(sizeof count)) Rcpp::stop("The running sums are empty.");
  std::memcpy(&count, raw.begin(), sizeof count);
  return count;
}

// Sorts every column of x (p x n): order (p x n) gets each column's sorting
// permutation of its observed values, observed their number, and quantiles
// (p x n) the column's quantiles at the p target levels.
void sort_columns(const double* x, std::size_t p, std::size_t n, int threads,
                  std::uint32_t* order, std::size_t* observed, double* quantiles) {
  diffrank_glue::parallel_for(
      n, threads,
      [&](std::size_t j0, std::size_t j1) {
        std::vector<diffrank::IndexedValue> scratch;
        std::vector<double> sorted(p);
        for (std::size_t j = j0; j < j1; ++j) {
          observed[j] = diffrank::sort_observed(x + j * p, p, scratch, order + j * p, sorted.data());
          diffrank::resample_sorted(sorted.data(), observed[j], p, quantiles + j * p);
        }
      },
      1, diffrank_glue::timed_batches);
}

}  // namespace

// Mean of the columns' quantile functions at p levels: the fitted target.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericVector qn_fit_target(Rcpp::NumericMatrix x, int threads) {
  const std::size_t p = x.nrow(), n = x.ncol();
  // R objects first: an R allocation error would jump over C++ destructors.
  Rcpp::NumericVector target(Rcpp::no_init(p));
  std::vector<std::uint32_t> order(p * n);
  std::vector<std::size_t> observed(n);
  std::vector<double> quantiles(p * n);
  sort_columns(x.begin(), p, n, threads, order.data(), observed.data(), quantiles.data());
  row_means(quantiles.data(), p, n, threads, target.begin());
  return target;
}

// Normalizes the columns of x to `target` (increasing values of any length),
// or to the mean quantiles of x itself when target is NULL.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericMatrix qn_normalize(Rcpp::NumericMatrix x, Rcpp::Nullable<Rcpp::NumericVector> target,
                                 std::string ties, int threads) {
  const std::size_t p = x.nrow(), n = x.ncol();
  const diffrank::Ties rule = diffrank_glue::parse_ties(ties);
  Rcpp::NumericMatrix out(Rcpp::no_init(p, n));
  const double* xp = x.begin();
  double* outp = out.begin();

  if (target.isNull()) {
    // The output holds the columns' quantiles until the target is known.
    std::vector<std::uint32_t> order(p * n);
    std::vector<std::size_t> observed(n);
    sort_columns(xp, p, n, threads, order.data(), observed.data(), outp);
    std::vector<double> fitted(p);
    row_means(outp, p, n, threads, fitted.data());
    diffrank_glue::parallel_for(
        n, threads,
        [&](std::size_t j0, std::size_t j1) {
          for (std::size_t j = j0; j < j1; ++j) {
            diffrank::normalize_sorted_column(xp + j * p, order.data() + j * p, observed[j], p,
                                              fitted.data(), rule, outp + j * p);
          }
        },
        1, diffrank_glue::timed_batches);
    return out;
  }

  // A given target keeps its own length: each value takes the target's
  // quantile function at its level (preprocessCore's rule).
  Rcpp::NumericVector given(target.get());
  const double* gp = given.begin();
  const std::size_t t = given.size();
  diffrank_glue::parallel_for(
      n, threads,
      [&](std::size_t j0, std::size_t j1) {
        diffrank::ColumnSorter sort;
        for (std::size_t j = j0; j < j1; ++j) {
          const std::size_t q = sort(xp + j * p, p);
          for (std::size_t i = 0; i < p && q < p; ++i) {
            if (std::isnan(xp[j * p + i])) outp[j * p + i] = xp[j * p + i];
          }
          diffrank::map_sorted_to_target(xp + j * p, sort.order.data(), q, gp, t, rule,
                                         outp + j * p);
        }
      },
      1, diffrank_glue::timed_batches);
  return out;
}

// Block processing of matrices kept outside R's memory (R/blocks.R): the
// mean target is accumulated over column blocks in the exact sums of
// qn_fit_target(), kept between calls as raw bytes, so that the target of a
// matrix read block by block, or summed in parts by several processes, is
// that of the whole matrix to the last bit. sums is NULL for the first block.
// [[Rcpp::export(rng = false)]]
Rcpp::RawVector qn_accumulate_sums(Rcpp::Nullable<Rcpp::RawVector> sums,
                                   Rcpp::NumericMatrix quantiles, int threads) {
  const std::size_t p = quantiles.nrow(), n = quantiles.ncol();
  std::vector<diffrank::ExactSum> acc = exact_sums_from_raw(sums, p);
  add_columns(quantiles.begin(), p, n, threads, acc);
  return exact_sums_to_raw(acc);
}

// The same sums kept in C++ between the blocks of one process's range
// (R/blocks_methods.R): `sums` is NULL for the first block, then what the
// previous call returned, to which the quantiles are added in place; no R
// copy of the sums is made (and left as garbage) per block.
// [[Rcpp::export(rng = false)]]
SEXP qn_fold_sums(SEXP sums, Rcpp::NumericMatrix quantiles, int threads) {
  const std::size_t p = quantiles.nrow(), n = quantiles.ncol();
  using Sums = std::vector<diffrank::ExactSum>;
  Rcpp::XPtr<Sums> acc =
      Rf_isNull(sums) ? Rcpp::XPtr<Sums>(new Sums(p), true) : Rcpp::XPtr<Sums>(sums);
  if (acc->size() != p) Rcpp::stop("The running sums do not match the number of quantile levels.");
  add_columns(quantiles.begin(), p, n, threads, *acc);
  return acc;
}

// The sums of qn_fold_sums() as the raw bytes of qn_accumulate_sums().
// [[Rcpp::export(rng = false)]]
Rcpp::RawVector qn_fold_sums_bytes(SEXP sums) {
  Rcpp::XPtr<std::vector<diffrank::ExactSum>> acc(sums);
  return exact_sums_to_raw(*acc);
}

// The exact sums of two sets of terms, from their sums of qn_accumulate_sums().
// [[Rcpp::export(rng = false)]]
Rcpp::RawVector qn_merge_sums(Rcpp::Nullable<Rcpp::RawVector> sums, Rcpp::RawVector more) {
  std::vector<diffrank::ExactSum> acc = exact_sums_from_raw(sums, raw_sums_count(more));
  if (!diffrank::add_exact_sums_from_bytes(more.begin(), more.size(), acc)) {
    Rcpp::stop("The running sums do not match the number of quantile levels.");
  }
  return exact_sums_to_raw(acc);
}

// The mean target from the sums of qn_accumulate_sums() over n columns.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericVector qn_target_from_sums(Rcpp::RawVector sums, double n) {
  const std::size_t p = raw_sums_count(sums);
  if (!(n >= 1 && n < 4294967296.0 && n == std::floor(n))) {
    Rcpp::stop("internal: the number of columns must be a whole number in [1, 2^32).");
  }
  const std::vector<diffrank::ExactSum> acc = exact_sums_from_raw(sums, p);
  Rcpp::NumericVector target(Rcpp::no_init(p));
  for (std::size_t i = 0; i < p; ++i) target[i] = acc[i].mean(static_cast<std::uint64_t>(n));
  return target;
}

// Normalizes the columns of x to a fitted target of nrow(x) values, as
// qn_normalize() does when it fits the target itself.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericMatrix qn_normalize_fitted(Rcpp::NumericMatrix x, Rcpp::NumericVector fitted,
                                        std::string ties, int threads) {
  const std::size_t p = x.nrow(), n = x.ncol();
  if (static_cast<std::size_t>(fitted.size()) != p) {
    Rcpp::stop("The fitted target must have one value per feature.");
  }
  const diffrank::Ties rule = diffrank_glue::parse_ties(ties);
  Rcpp::NumericMatrix out(Rcpp::no_init(p, n));
  const double* xp = x.begin();
  const double* fp = fitted.begin();
  double* outp = out.begin();
  diffrank_glue::parallel_for(n, threads, [&](std::size_t j0, std::size_t j1) {
    diffrank::ColumnSorter sort;
    for (std::size_t j = j0; j < j1; ++j) {
      const std::size_t q = sort(xp + j * p, p);
      diffrank::normalize_sorted_column(xp + j * p, sort.order.data(), q, p, fp, rule,
                                        outp + j * p);
    }
  });
  return out;
}

// The checks of check_expression_matrix() (R/quantile.R) in one pass over x,
// without the three logical copies of x that is.infinite(), is.na() and
// colSums() would allocate: c(1 if some value is infinite else 0, the number
// of columns without an observed value, the first of them (from 1; 0 if
// none), the number of missing values).
// [[Rcpp::export(rng = false)]]
Rcpp::NumericVector expression_matrix_scan(Rcpp::NumericMatrix x) {
  const std::size_t p = x.nrow(), n = x.ncol();
  const double* values = x.begin();
  bool infinite = false;
  double empty = 0, first_empty = 0, missing = 0;
  for (std::size_t j = 0; j < n; ++j) {
    const double* col = values + j * p;
    std::size_t col_missing = 0, col_infinite = 0;
    for (std::size_t i = 0; i < p; ++i) {
      col_missing += std::isnan(col[i]);
      col_infinite += std::isinf(col[i]);
    }
    infinite = infinite || col_infinite > 0;
    missing += static_cast<double>(col_missing);
    if (col_missing == p) {
      if (empty == 0) first_empty = static_cast<double>(j + 1);
      ++empty;
    }
  }
  return Rcpp::NumericVector::create(infinite ? 1.0 : 0.0, empty, first_empty, missing);
}
