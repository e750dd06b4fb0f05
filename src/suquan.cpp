// Glue for SUQUAN (supervised quantile normalization); arguments are checked
// in R/suquan.R.
#include <RcppEigen.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <utility>
#include <diffrank/quantile.hpp>
#include <diffrank/suquan.hpp>
#include <string>
#include <vector>

#include "parallel.h"

namespace sq = diffrank::suquan;

namespace {

const char* step_label(char kind) {
  return kind == 'w' ? "linear model" : (kind == 'f' ? "quantiles" : "svd");
}

SEXP doubles(const double* v, std::size_t n) {
  SEXP out = Rf_allocVector(REALSXP, static_cast<R_xlen_t>(n));
  std::copy(v, v + n, REAL(out));
  return out;
}

SEXP named_list(std::initializer_list<std::pair<const char*, SEXP>> items) {
  // The items are protected by the caller.
  SEXP out = PROTECT(Rf_allocVector(VECSXP, static_cast<R_xlen_t>(items.size())));
  SEXP names = PROTECT(Rf_allocVector(STRSXP, static_cast<R_xlen_t>(items.size())));
  R_xlen_t k = 0;
  for (const auto& item : items) {
    SET_VECTOR_ELT(out, k, item.second);
    SET_STRING_ELT(names, k, Rf_mkChar(item.first));
    ++k;
  }
  Rf_setAttrib(out, R_NamesSymbol, names);
  UNPROTECT(2);
  return out;
}

// The R list of a fit, with the R API alone (for Rcpp::unwindProtect: no
// C++ object with a destructor lives in this frame).
SEXP fit_to_r(void* data) {
  const sq::Fit& fit = *static_cast<const sq::Fit*>(data);
  const std::size_t steps = fit.history.size();
  SEXP iteration = PROTECT(Rf_allocVector(INTSXP, static_cast<R_xlen_t>(steps)));
  SEXP kind = PROTECT(Rf_allocVector(STRSXP, static_cast<R_xlen_t>(steps)));
  SEXP objective = PROTECT(Rf_allocVector(REALSXP, static_cast<R_xlen_t>(steps)));
  SEXP change = PROTECT(Rf_allocVector(REALSXP, static_cast<R_xlen_t>(steps)));
  for (std::size_t k = 0; k < steps; ++k) {
    INTEGER(iteration)[k] = fit.history[k].iteration;
    SET_STRING_ELT(kind, static_cast<R_xlen_t>(k), Rf_mkChar(step_label(fit.history[k].kind)));
    REAL(objective)[k] = fit.history[k].objective;
    REAL(change)[k] = fit.history[k].change;
  }
  SEXP history = PROTECT(named_list({{"iteration", iteration},
                                     {"step", kind},
                                     {"objective", objective},
                                     {"change_f", change}}));
  SEXP row_names = PROTECT(Rf_allocVector(INTSXP, 2));
  INTEGER(row_names)[0] = NA_INTEGER;
  INTEGER(row_names)[1] = -static_cast<int>(steps);
  Rf_setAttrib(history, R_RowNamesSymbol, row_names);
  Rf_setAttrib(history, R_ClassSymbol, Rf_mkString("data.frame"));
  SEXP f = PROTECT(doubles(fit.f.data(), static_cast<std::size_t>(fit.f.size())));
  SEXP w = PROTECT(doubles(fit.model.w.data(), static_cast<std::size_t>(fit.model.w.size())));
  SEXP b = PROTECT(Rf_ScalarReal(fit.model.b));
  SEXP converged = PROTECT(Rf_ScalarLogical(fit.converged ? TRUE : FALSE));
  SEXP iterations = PROTECT(Rf_ScalarInteger(fit.iterations));
  SEXP out = named_list({{"f", f},
                         {"w", w},
                         {"b", b},
                         {"history", history},
                         {"converged", converged},
                         {"iterations", iterations}});
  UNPROTECT(11);
  return out;
}

}  // namespace

// Each feature's fractional position in a target of length nrow(x), by the
// midrank rule; the middle of the target for a missing value.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericMatrix suquan_positions(Rcpp::NumericMatrix x, int threads) {
  const std::size_t p = x.nrow(), n = x.ncol();
  Rcpp::NumericMatrix position(Rcpp::no_init(p, n));
  const double* xp = x.begin();
  double* out = position.begin();
  diffrank_glue::parallel_for(n, threads, [&](std::size_t j0, std::size_t j1) {
    diffrank::ColumnSorter sort;
    for (std::size_t j = j0; j < j1; ++j) {
      const std::size_t q = sort(xp + j * p, p);
      diffrank::midrank_positions(xp + j * p, sort.order.data(), q, p, out + j * p);
    }
  });
  return position;
}

// [[Rcpp::export(rng = false)]]
Rcpp::List suquan_fit_cpp(Rcpp::NumericMatrix position, Rcpp::NumericVector y,
                          Rcpp::NumericVector f_init, std::string family, std::string method,
                          double lambda, int max_iter, double tol, bool verbose) {
  const Eigen::Map<const Eigen::MatrixXd> positions(position.begin(), position.nrow(),
                                                    position.ncol());
  const Eigen::Map<const Eigen::VectorXd> labels(y.begin(), y.size());
  const Eigen::Map<const Eigen::VectorXd> start(f_init.begin(), f_init.size());
  sq::Options options;
  options.family = family == "gaussian" ? sq::Family::gaussian : sq::Family::binomial;
  options.lambda = lambda;
  options.max_iter = max_iter;
  options.tol = tol;
  auto monitor = [&](const sq::Step& step) {
    if (verbose) {
      Rprintf("iteration %3d  %s step  objective %.10g  change of f %.3g\n", step.iteration,
              step.kind == 'w' ? "linear model" : (step.kind == 'f' ? "quantiles   " : "svd         "),
              step.objective, step.change);
    }
    Rcpp::checkUserInterrupt();
  };
  const sq::Fit fit =
      method == "svd"     ? sq::fit_svd(positions, labels, start, options, monitor)
      : method == "fixed" ? sq::fit_fixed(positions, labels, start, options, monitor)
                          : sq::fit_bnd(positions, labels, start, options, monitor);

  // The fit's C++ buffers are alive while its R copy is made: an R
  // allocation error there is caught and rethrown as a C++ exception, so
  // that they are freed before R's error continues.
  return Rcpp::List(Rcpp::unwindProtect(&fit_to_r, const_cast<sq::Fit*>(&fit)));
}

// The link w' Psi_f(x) + b of every sample, from its positions.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericVector suquan_link(Rcpp::NumericMatrix position, Rcpp::NumericVector f,
                                Rcpp::NumericVector w, double b) {
  const Eigen::Map<const Eigen::MatrixXd> positions(position.begin(), position.nrow(),
                                                    position.ncol());
  const Eigen::Map<const Eigen::VectorXd> target(f.begin(), f.size());
  const Eigen::Map<const Eigen::VectorXd> weights(w.begin(), w.size());
  Rcpp::NumericVector out(Rcpp::no_init(position.ncol()));
  Eigen::Map<Eigen::VectorXd> eta(out.begin(), out.size());
  eta = (sq::normalize_to(positions, target).transpose() * weights).array() + b;
  return out;
}
