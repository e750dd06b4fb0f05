// Glue for rank aggregation (aggregation.hpp) and the stage codes of the
// Mallows model (mallows.hpp); arguments are checked in R/aggregation.R and
// R/mallows.R.
#include <Rcpp.h>

#include <cstdint>
#include <diffrank/aggregation.hpp>
#include <diffrank/mallows.hpp>
#include <vector>

#include "parallel.h"

// above[a, b]: the summed weights of the columns of r (items x rankings,
// NaN for a missing item) that rank a strictly above b (smaller value);
// weights of length 0 count every ranking once.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericMatrix pairwise_preferences_cpp(Rcpp::NumericMatrix r, Rcpp::NumericVector weights,
                                             int threads) {
  const std::size_t n = r.nrow(), count = r.ncol();
  if (weights.size() != 0 && static_cast<std::size_t>(weights.size()) != count) {
    Rcpp::stop("internal: one weight per ranking");
  }
  std::vector<double> rows(n * n, 0.0);
  const double* rp = r.begin();
  const double* w = weights.size() ? weights.begin() : nullptr;
  diffrank_glue::parallel_for(
      n, threads,
      [&](std::size_t a0, std::size_t a1) {
        diffrank::add_pairwise_preferences(rp, n, count, w, rows.data(), a0, a1);
      },
      1, diffrank_glue::timed_batches);
  Rcpp::NumericMatrix above(Rcpp::no_init(n, n));
  for (std::size_t a = 0; a < n; ++a) {
    for (std::size_t b = 0; b < n; ++b) above[a + n * b] = rows[n * a + b];
  }
  return above;
}

namespace {

// The items (0-based) from the top of a ranking of 1..n (checked in R).
std::vector<std::uint32_t> order_of(const Rcpp::NumericVector& ranking) {
  std::vector<std::uint32_t> order(ranking.size());
  for (std::size_t i = 0; i < order.size(); ++i) {
    order[static_cast<std::size_t>(ranking[i]) - 1] = static_cast<std::uint32_t>(i);
  }
  return order;
}

}  // namespace

// A ranking (1 = top) that minimizes the disagreement with `above`: the
// exact minimum when exact is true (n <= kKemenyExactMaxItems), else the
// local search from `start` (a ranking). Returns the ranking with
// attributes "disagreement" and "moves".
// [[Rcpp::export(rng = false)]]
Rcpp::NumericVector kemeny_ranking_cpp(Rcpp::NumericMatrix above, Rcpp::NumericVector start,
                                       bool exact) {
  const std::size_t n = above.nrow();
  std::vector<std::uint32_t> order = order_of(start);
  std::size_t moves = 0;
  if (exact) {
    if (n > diffrank::kKemenyExactMaxItems) Rcpp::stop("internal: too many items to search");
    diffrank::kemeny_exact(above.begin(), n, order.data());
  } else {
    double total = 0.0;
    for (double v : above) total += v;
    diffrank_glue::InterruptPoll poll;
    moves = diffrank::kemeny_local_search(above.begin(), n, order.data(), 1e-12 * total, [&] {
      poll();
      return false;
    });
  }
  Rcpp::NumericVector ranking(Rcpp::no_init(n));
  for (std::size_t i = 0; i < n; ++i) ranking[order[i]] = static_cast<double>(i + 1);
  ranking.attr("disagreement") = diffrank::kemeny_disagreement(above.begin(), n, order.data());
  ranking.attr("moves") = static_cast<double>(moves);
  return ranking;
}

// The disagreement of `ranking` (1 = top) with the preference table.
// [[Rcpp::export(rng = false)]]
double kemeny_disagreement_cpp(Rcpp::NumericMatrix above, Rcpp::NumericVector ranking) {
  const std::vector<std::uint32_t> order = order_of(ranking);
  return diffrank::kemeny_disagreement(above.begin(), above.nrow(), order.data());
}

// The stage codes S_j of every column of r (top-t lists: ranks 1..t and NaN,
// checked in R) against the centre's ranking: an (n - 1) x count matrix, NA
// beyond a list's last stage.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericMatrix mallows_stage_codes_cpp(Rcpp::NumericMatrix r, Rcpp::NumericVector centre,
                                            int threads) {
  const std::size_t n = r.nrow(), count = r.ncol(), stages = n > 0 ? n - 1 : 0;
  Rcpp::NumericMatrix codes(Rcpp::no_init(stages, count));
  std::fill(codes.begin(), codes.end(), NA_REAL);
  const double* rp = r.begin();
  const double* c = centre.begin();
  double* out = codes.begin();
  diffrank_glue::parallel_for(
      count, threads,
      [&](std::size_t k0, std::size_t k1) {
        diffrank::StageCoder coder;
        for (std::size_t k = k0; k < k1; ++k) coder(rp + k * n, c, n, out + k * stages);
      },
      1, diffrank_glue::timed_batches);
  return codes;
}

// The maximum-likelihood dispersion for stage codes with reached[j] lists at
// stage j + 1 and summed codes `total` (mallows_theta_for_stages).
// [[Rcpp::export(rng = false)]]
double mallows_theta_stages_cpp(double n, Rcpp::NumericVector reached, double total) {
  return diffrank::mallows_theta_for_stages(static_cast<std::size_t>(n), reached.begin(), total);
}

// log of each stage's normalizer, S on 0..m, for the vector of m and thetas.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericVector mallows_stage_log_normalizers_cpp(Rcpp::NumericVector m,
                                                      Rcpp::NumericVector theta) {
  Rcpp::NumericVector out(m.size());
  for (R_xlen_t j = 0; j < m.size(); ++j) {
    out[j] = diffrank::stage_log_normalizer(static_cast<std::size_t>(m[j]), theta[j]);
  }
  return out;
}

// E[S] on 0..m for each m and theta (the expected stage codes).
// [[Rcpp::export(rng = false)]]
Rcpp::NumericVector mallows_stage_means_cpp(Rcpp::NumericVector m, Rcpp::NumericVector theta) {
  Rcpp::NumericVector out(m.size());
  for (R_xlen_t j = 0; j < m.size(); ++j) {
    out[j] = diffrank::truncated_geometric_mean(static_cast<std::size_t>(m[j]), theta[j]);
  }
  return out;
}
