// Glue for SUQUAN (supervised quantile normalization); arguments are checked
// in R/suquan.R.
#include <RcppEigen.h>

#include <cstdint>
#include <diffrank/quantile.hpp>
#include <diffrank/suquan.hpp>
#include <string>
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

Rcpp::NumericMatrix as_r_matrix(const Eigen::MatrixXd& m) {
  Rcpp::NumericMatrix out(m.rows(), m.cols());
  std::copy(m.data(), m.data() + m.size(), out.begin());
  return out;
}

Rcpp::NumericVector as_r_vector(const Eigen::VectorXd& v) {
  return Rcpp::NumericVector(v.data(), v.data() + v.size());
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

  const std::size_t steps = fit.history.size();
  Rcpp::IntegerVector round(steps);
  Rcpp::CharacterVector kind(steps);
  Rcpp::NumericVector objective(steps), change(steps);
  for (std::size_t k = 0; k < steps; ++k) {
    round[k] = fit.history[k].round;
    kind[k] = fit.history[k].kind == 'w' ? "linear model" : "quantiles";
    objective[k] = fit.history[k].objective;
    change[k] = fit.history[k].change;
  }
  return Rcpp::List::create(
      Rcpp::Named("f") = as_r_vector(fit.f), Rcpp::Named("w") = as_r_matrix(fit.model.w),
      Rcpp::Named("b") = as_r_vector(fit.model.b),
      Rcpp::Named("history") = Rcpp::DataFrame::create(
          Rcpp::Named("round") = round, Rcpp::Named("step") = kind,
          Rcpp::Named("objective") = objective, Rcpp::Named("change_f") = change,
          Rcpp::Named("stringsAsFactors") = false),
      Rcpp::Named("converged") = fit.converged, Rcpp::Named("budget") = fit.budget,
      Rcpp::Named("rounds") = fit.rounds);
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
  const Threads exec{threads};
  Eigen::MatrixXd z, eta;
  sq::normalize_to(map(position), map(f), z, exec);
  const sq::Model model{map(w), map(b)};
  sq::links(z, model, eta, exec);
  return as_r_matrix(eta);
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
  return as_r_vector(sq::svd_times(map(position), map(c), map(v)));
}

// [[Rcpp::export(rng = false)]]
Rcpp::NumericVector suquan_svd_times_transpose(Rcpp::NumericMatrix position, Rcpp::NumericMatrix c,
                                               Rcpp::NumericVector t) {
  return as_r_vector(sq::svd_times_transpose(map(position), map(c), map(t)));
}
