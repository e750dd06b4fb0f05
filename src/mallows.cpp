// Glue for the Mallows model (mallows.hpp); arguments are checked in
// R/mallows.R.
#include <Rcpp.h>

#include <cstdint>
#include <diffrank/kendall.hpp>
#include <diffrank/mallows.hpp>
#include <vector>

#include "parallel.h"

// Draws of the Mallows model: column d of `uniforms` ((n - 1) x draws) makes
// draw d; centre_order lists the items (0-based) from the top of the centre.
// Returns the n x draws matrix of ranks (1 = top).
// [[Rcpp::export(rng = false)]]
Rcpp::NumericMatrix mallows_draws_cpp(Rcpp::NumericMatrix uniforms,
                                      Rcpp::IntegerVector centre_order, double theta, int threads) {
  const std::size_t n = centre_order.size(), draws = uniforms.ncol();
  Rcpp::NumericMatrix out(Rcpp::no_init(n, draws));
  std::vector<std::uint32_t> order(centre_order.begin(), centre_order.end());
  const double* u = uniforms.begin();
  double* o = out.begin();
  diffrank_glue::parallel_for(
      draws, threads,
      [&](std::size_t d0, std::size_t d1) {
        diffrank::MallowsSampler sampler;
        for (std::size_t d = d0; d < d1; ++d) {
          sampler.draw(u + d * (n > 0 ? n - 1 : 0), theta, order.data(), n, o + d * n);
        }
      },
      1, diffrank_glue::timed_batches);
  return out;
}

// Kendall distance (discordant pairs) of every column of x to `centre`.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericVector kendall_distances_cpp(Rcpp::NumericMatrix x, Rcpp::NumericVector centre,
                                          int threads) {
  const std::size_t n = x.nrow(), count = x.ncol();
  Rcpp::NumericVector out(Rcpp::no_init(count));
  const double* xp = x.begin();
  const double* c = centre.begin();
  double* o = out.begin();
  diffrank_glue::parallel_for(
      count, threads,
      [&](std::size_t j0, std::size_t j1) {
        diffrank::PairCounts counts;
        for (std::size_t j = j0; j < j1; ++j) {
          o[j] = static_cast<double>(counts(xp + j * n, c, n).discordant);
        }
      },
      1, diffrank_glue::timed_batches);
  return out;
}

// [[Rcpp::export(rng = false)]]
double mallows_log_normalizer_cpp(double n, double theta) {
  return diffrank::mallows_log_normalizer(static_cast<std::size_t>(n), theta);
}

// [[Rcpp::export(rng = false)]]
double mallows_expected_distance_cpp(double n, double theta) {
  return diffrank::mallows_expected_distance(static_cast<std::size_t>(n), theta);
}

// [[Rcpp::export(rng = false)]]
double mallows_theta_cpp(double n, double mean_distance) {
  return diffrank::mallows_theta_for_distance(static_cast<std::size_t>(n), mean_distance);
}
