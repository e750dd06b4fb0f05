// Glue for SUQUAN (supervised quantile normalization); arguments are checked
// in R/suquan.R.
#include <RcppEigen.h>

#include <algorithm>
#include <cstdint>
#include <diffrank/quantile.hpp>
#include <diffrank/suquan.hpp>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "glue.h"
#include "parallel.h"

namespace sq = diffrank::suquan;

namespace {

using MatrixMap = Eigen::Map<const Eigen::MatrixXd>;
using VectorMap = Eigen::Map<const Eigen::VectorXd>;

// The core's executor on RcppParallel's thread pool.
struct Threads {
  int threads;
  template <class Body>
  void operator()(std::size_t count, Body&& body) const {
    diffrank_glue::parallel_for(count, threads, body);
  }
};

MatrixMap map(const Rcpp::NumericMatrix& m) { return MatrixMap(m.begin(), m.nrow(), m.ncol()); }
VectorMap map(const Rcpp::NumericVector& v) { return VectorMap(v.begin(), v.size()); }

sq::Options parse_options(const std::string& family, const Rcpp::List& options) {
  using diffrank_glue::option;
  sq::Options opt;
  opt.family = diffrank_glue::parse_choice<sq::Family>(family, "family",
                                                       {{"gaussian", sq::Family::gaussian},
                                                        {"binomial", sq::Family::binomial},
                                                        {"multinomial", sq::Family::multinomial}});
  opt.lambda = option<double>(options, "lambda");
  opt.alpha = option<double>(options, "alpha");
  opt.smooth = option<double>(options, "smooth");
  opt.rounds = option<int>(options, "rounds");
  opt.max_iter = option<int>(options, "max_iter");
  opt.tol = option<double>(options, "tol");
  return opt;
}

// The R API alone from here to fit_to_r(), for Rcpp::unwindProtect: no C++
// object with a destructor lives in these frames, so an R allocation error
// cannot skip one.
SEXP r_doubles(const double* v, R_xlen_t n) {
  SEXP out = Rf_allocVector(REALSXP, n);
  std::copy(v, v + n, REAL(out));
  return out;
}

// A named list of the items, which the caller protects.
SEXP r_named_list(std::initializer_list<std::pair<const char*, SEXP>> items) {
  const R_xlen_t n = static_cast<R_xlen_t>(items.size());
  SEXP out = PROTECT(Rf_allocVector(VECSXP, n));
  SEXP names = PROTECT(Rf_allocVector(STRSXP, n));
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

// The R list of a fit: f, w (p x K), b, history (a data frame), converged,
// budget and rounds.
SEXP fit_to_r(void* data) {
  const sq::Fit& fit = *static_cast<const sq::Fit*>(data);
  const R_xlen_t steps = static_cast<R_xlen_t>(fit.history.size());
  SEXP round = PROTECT(Rf_allocVector(INTSXP, steps));
  SEXP kind = PROTECT(Rf_allocVector(STRSXP, steps));
  SEXP objective = PROTECT(Rf_allocVector(REALSXP, steps));
  SEXP change = PROTECT(Rf_allocVector(REALSXP, steps));
  for (R_xlen_t k = 0; k < steps; ++k) {
    const sq::Step& step = fit.history[static_cast<std::size_t>(k)];
    INTEGER(round)[k] = step.round;
    SET_STRING_ELT(kind, k, Rf_mkChar(step.kind == 'w' ? "linear model" : "quantiles"));
    REAL(objective)[k] = step.objective;
    REAL(change)[k] = step.change;
  }
  SEXP history = PROTECT(r_named_list(
      {{"round", round}, {"step", kind}, {"objective", objective}, {"change_f", change}}));
  SEXP row_names = PROTECT(Rf_allocVector(INTSXP, 2));
  INTEGER(row_names)[0] = NA_INTEGER;
  INTEGER(row_names)[1] = -static_cast<int>(steps);
  Rf_setAttrib(history, R_RowNamesSymbol, row_names);
  Rf_setAttrib(history, R_ClassSymbol, Rf_mkString("data.frame"));
  SEXP f = PROTECT(r_doubles(fit.f.data(), fit.f.size()));
  SEXP w = PROTECT(r_doubles(fit.model.w.data(), fit.model.w.size()));
  SEXP dim = PROTECT(Rf_allocVector(INTSXP, 2));
  INTEGER(dim)[0] = static_cast<int>(fit.model.w.rows());
  INTEGER(dim)[1] = static_cast<int>(fit.model.w.cols());
  Rf_setAttrib(w, R_DimSymbol, dim);
  SEXP b = PROTECT(r_doubles(fit.model.b.data(), fit.model.b.size()));
  SEXP converged = PROTECT(Rf_ScalarLogical(fit.converged ? TRUE : FALSE));
  SEXP budget = PROTECT(Rf_ScalarLogical(fit.budget ? TRUE : FALSE));
  SEXP rounds = PROTECT(Rf_ScalarInteger(fit.rounds));
  SEXP out = r_named_list({{"f", f},
                           {"w", w},
                           {"b", b},
                           {"history", history},
                           {"converged", converged},
                           {"budget", budget},
                           {"rounds", rounds}});
  UNPROTECT(13);
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

// One fit of method "bnd" (or, with rounds = 0, the model alone with f fixed
// at f_start: methods "fixed" and "svd").
// [[Rcpp::export(rng = false)]]
Rcpp::List suquan_fit_cpp(Rcpp::NumericMatrix position, Rcpp::NumericMatrix y,
                          Rcpp::NumericVector f_start, std::string family, Rcpp::List options,
                          bool verbose, int threads) {
  const sq::Options opt = parse_options(family, options);
  auto monitor = [&](const sq::Step& step) {
    if (verbose) {
      Rprintf("round %3d  %s step  objective %.10g  change of f %.3g\n", step.round,
              step.kind == 'w' ? "linear model" : "quantiles   ", step.objective, step.change);
    }
    Rcpp::checkUserInterrupt();
  };
  const Eigen::VectorXd start = map(f_start);
  const sq::Fit fit = sq::fit_bnd(map(position), map(y), start, opt, Threads{threads}, monitor);
  // The fit's C++ buffers are alive while its R copy is made: an R
  // allocation error there comes back as a C++ exception, so that they are
  // freed before R's error goes on.
  return Rcpp::List(Rcpp::unwindProtect(&fit_to_r, const_cast<sq::Fit*>(&fit)));
}

// The links of the test samples for every lambda (decreasing) and every round
// 0..rounds of the fits on the training samples: an array n_test x K x
// length(lambda) x (rounds + 1).
// [[Rcpp::export(rng = false)]]
Rcpp::NumericVector suquan_path_cpp(Rcpp::NumericMatrix position, Rcpp::NumericMatrix y,
                                    Rcpp::NumericVector f_start, Rcpp::NumericVector lambda,
                                    std::string family, Rcpp::List options,
                                    Rcpp::NumericMatrix test_position, int threads) {
  const sq::Options opt = parse_options(family, options);
  const Threads exec{threads};
  const std::vector<double> lambdas(lambda.begin(), lambda.end());
  const Eigen::Index n_test = test_position.ncol(), K = y.ncol();
  const int last_round = opt.rounds < 0 ? opt.max_iter : opt.rounds;
  const std::size_t block = static_cast<std::size_t>(n_test * K);
  Rcpp::NumericVector out(block * lambdas.size() * static_cast<std::size_t>(last_round + 1));
  const auto test = map(test_position);
  Eigen::MatrixXd z, eta;
  sq::fit_path(
      map(position), map(y), map(f_start), lambdas, opt, exec,
      [&](std::size_t l, int r, const Eigen::VectorXd& f, const sq::Model& model) {
        sq::normalize_to(test, f, z, exec);
        sq::links(z, model, eta, exec);
        std::copy(eta.data(), eta.data() + eta.size(),
                  out.begin() + (l + lambdas.size() * static_cast<std::size_t>(r)) * block);
      },
      [](const sq::Step&) { Rcpp::checkUserInterrupt(); });
  out.attr("dim") =
      Rcpp::IntegerVector::create(n_test, K, static_cast<int>(lambdas.size()), last_round + 1);
  return out;
}

// The links W' Psi_f(x) + b (n x K) of every sample, from its positions.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericMatrix suquan_link(Rcpp::NumericMatrix position, Rcpp::NumericVector f,
                                Rcpp::NumericMatrix w, Rcpp::NumericVector b, int threads) {
  // The result first: no C++ buffer is alive if R cannot allocate it.
  Rcpp::NumericMatrix out(Rcpp::no_init(position.ncol(), w.ncol()));
  const Threads exec{threads};
  Eigen::MatrixXd z, eta;
  sq::normalize_to(map(position), map(f), z, exec);
  const sq::Model model{map(w), map(b)};
  sq::links(z, model, eta, exec);
  std::copy(eta.data(), eta.data() + eta.size(), out.begin());
  return out;
}

// [[Rcpp::export(rng = false)]]
double suquan_lambda_max(Rcpp::NumericMatrix position, Rcpp::NumericMatrix y,
                         Rcpp::NumericVector f_start, double alpha, int threads) {
  return sq::lambda_max(map(position), map(y), map(f_start), alpha, Threads{threads});
}

// The operator of method "svd" and its transpose, for a Lanczos solver.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericVector suquan_svd_times(Rcpp::NumericMatrix position, Rcpp::NumericMatrix c,
                                     Rcpp::NumericVector v) {
  Rcpp::NumericVector out(Rcpp::no_init(position.nrow()));
  Eigen::Map<Eigen::VectorXd>(out.begin(), out.size()) = sq::svd_times(map(position), map(c), map(v));
  return out;
}

// [[Rcpp::export(rng = false)]]
Rcpp::NumericVector suquan_svd_times_transpose(Rcpp::NumericMatrix position, Rcpp::NumericMatrix c,
                                               Rcpp::NumericVector t) {
  Rcpp::NumericVector out(Rcpp::no_init(static_cast<R_xlen_t>(position.nrow()) * c.ncol()));
  Eigen::Map<Eigen::VectorXd>(out.begin(), out.size()) =
      sq::svd_times_transpose(map(position), map(c), map(t));
  return out;
}
