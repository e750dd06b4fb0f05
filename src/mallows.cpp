// Glue for the Mallows model (mallows.hpp); arguments are checked in
// R/mallows.R.
#include <Rcpp.h>

#include <cstdint>
#include <diffrank/kendall.hpp>
#include <diffrank/mallows.hpp>
#include <vector>

#include "parallel.h"

// An uninitialized p x n matrix for rmallows() to fill chunk by chunk: a
// zero-filled one (matrix(0, p, n)) costs seconds at a gigabyte, without an
// interrupt check, while here the pages are touched by the draws themselves.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericMatrix mallows_output_cpp(int p, int n) {
  return Rcpp::NumericMatrix(Rcpp::no_init(p, n));
}

// Draws of the Mallows model into columns first..first+draws-1 (0-based) of
// `out`, which rmallows() owns (made by mallows_output_cpp and never
// shared): column d of `uniforms` ((p - 1) x draws) makes draw d;
// consensus_order lists the items (0-based) from the top of the consensus;
// theta holds the dispersion of each of the p - 1 stages.
// Writes the ranks (1 = top).
// [[Rcpp::export(rng = false)]]
void mallows_draws_into_cpp(Rcpp::NumericMatrix out, double first, Rcpp::NumericMatrix uniforms,
                            Rcpp::IntegerVector consensus_order, Rcpp::NumericVector theta,
                            int threads) {
  const std::size_t p = consensus_order.size(), draws = uniforms.ncol();
  const std::size_t offset = static_cast<std::size_t>(first);
  if (static_cast<std::size_t>(out.nrow()) != p ||
      static_cast<std::size_t>(theta.size()) != (p > 0 ? p - 1 : 0) ||
      offset + draws > static_cast<std::size_t>(out.ncol())) {
    Rcpp::stop("internal: Mallows draws outside their matrix");
  }
  std::vector<std::uint32_t> order(consensus_order.begin(), consensus_order.end());
  const double* u = uniforms.begin();
  const double* th = theta.begin();
  double* o = out.begin() + offset * p;
  diffrank_glue::parallel_for(
      draws, threads,
      [&](std::size_t d0, std::size_t d1) {
        diffrank::MallowsSampler sampler;
        for (std::size_t d = d0; d < d1; ++d) {
          sampler.draw(u + d * (p > 0 ? p - 1 : 0), th, order.data(), p, o + d * p);
        }
      },
      1, diffrank_glue::timed_batches);
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
