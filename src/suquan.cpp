// Glue for SUQUAN (supervised quantile normalization); arguments are checked
// in R/suquan.R.
#include <RcppEigen.h>

#include <cstdint>
#include <diffrank/quantile.hpp>
#include <diffrank/suquan.hpp>
#include <string>
#include <vector>

#include "parallel.h"

namespace sq = diffrank::suquan;

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

  const std::size_t steps = fit.history.size();
  Rcpp::IntegerVector iteration(steps);
  Rcpp::CharacterVector kind(steps);
  Rcpp::NumericVector objective(steps), change(steps);
  for (std::size_t k = 0; k < steps; ++k) {
    iteration[k] = fit.history[k].iteration;
    kind[k] = fit.history[k].kind == 'w' ? "linear model" : (fit.history[k].kind == 'f' ? "quantiles" : "svd");
    objective[k] = fit.history[k].objective;
    change[k] = fit.history[k].change;
  }
  return Rcpp::List::create(
      Rcpp::Named("f") = Rcpp::NumericVector(fit.f.data(), fit.f.data() + fit.f.size()),
      Rcpp::Named("w") = Rcpp::NumericVector(fit.model.w.data(), fit.model.w.data() + fit.model.w.size()),
      Rcpp::Named("b") = fit.model.b,
      Rcpp::Named("history") = Rcpp::DataFrame::create(
          Rcpp::Named("iteration") = iteration, Rcpp::Named("step") = kind,
          Rcpp::Named("objective") = objective, Rcpp::Named("change_f") = change,
          Rcpp::Named("stringsAsFactors") = false),
      Rcpp::Named("converged") = fit.converged, Rcpp::Named("iterations") = fit.iterations);
}

// The link w' Psi_f(x) + b of every sample, from its positions.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericVector suquan_link(Rcpp::NumericMatrix position, Rcpp::NumericVector f,
                                Rcpp::NumericVector w, double b) {
  const Eigen::Map<const Eigen::MatrixXd> positions(position.begin(), position.nrow(),
                                                    position.ncol());
  const Eigen::Map<const Eigen::VectorXd> target(f.begin(), f.size());
  const Eigen::Map<const Eigen::VectorXd> weights(w.begin(), w.size());
  const Eigen::VectorXd eta = (sq::normalize_to(positions, target).transpose() * weights).array() + b;
  return Rcpp::NumericVector(eta.data(), eta.data() + eta.size());
}
