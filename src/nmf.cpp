// Glue for the KL multiplicative updates of inst/include/diffrank/nmf.hpp
// (the NMF start of qmf(loss = "kl") and its NMF baseline, kl_nmf_updates()
// in R/qmf_fit.R): columns of h and ranges of rows of w over threads, an
// interrupt check after every update.
#include <Rcpp.h>

#include <cstddef>
#include <diffrank/nmf.hpp>
#include <vector>

#include "parallel.h"

// [[Rcpp::export(rng = false)]]
Rcpp::List kl_nmf_updates_cpp(Rcpp::NumericMatrix x, Rcpp::NumericMatrix w,
                              Rcpp::NumericMatrix h, int iterations,
                              Rcpp::Nullable<Rcpp::NumericMatrix> mask, int threads) {
  diffrank::KlNmfProblem p;
  p.d = x.nrow();
  p.n = x.ncol();
  p.k = w.ncol();
  Rcpp::NumericMatrix mask_m = mask.isNotNull() ? Rcpp::NumericMatrix(mask.get())
                                                : Rcpp::NumericMatrix(0, 0);
  p.x = x.begin();
  p.mask = mask.isNotNull() ? mask_m.begin() : nullptr;
  Rcpp::NumericMatrix w_out = Rcpp::clone(w), h_out = Rcpp::clone(h);
  double* wp = w_out.begin();
  double* hp = h_out.begin();
  std::vector<double> column_mass(p.k), row_mass(p.k);
  for (int it = 0; it < iterations; ++it) {
    if (p.mask == nullptr) diffrank::kl_nmf_column_mass(p, wp, column_mass.data());
    diffrank_glue::parallel_for(p.n, threads, [&](std::size_t j0, std::size_t j1) {
      diffrank::kl_nmf_update_h(p, wp, column_mass.data(), hp, j0, j1);
    }, 8);
    if (p.mask == nullptr) diffrank::kl_nmf_row_mass(p, hp, row_mass.data());
    diffrank_glue::parallel_for(p.d, threads, [&](std::size_t i0, std::size_t i1) {
      diffrank::kl_nmf_update_w(p, hp, row_mass.data(), wp, i0, i1);
    }, 64);
    Rcpp::checkUserInterrupt();
  }
  return Rcpp::List::create(Rcpp::Named("w") = w_out, Rcpp::Named("h") = h_out);
}
