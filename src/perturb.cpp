// Glue for the perturbed optimizers; arguments are checked, and the noise
// drawn from R's generator, in R/perturbed.R. Each column of theta is one
// problem; draws of all columns are solved in parallel.
#include <Rcpp.h>

#include <algorithm>
#include <diffrank/perturb.hpp>
#include <string>
#include <vector>

#include "glue.h"
#include "operator_glue.h"
#include "parallel.h"

namespace {

// The settings from the options list of R/perturbed.R: solver, noise, eps, k,
// n_samples and antithetic.
diffrank::PerturbSettings make_settings(const Rcpp::List& options) {
  using diffrank_glue::option;
  using diffrank_glue::parse_choice;
  diffrank::PerturbSettings s;
  s.solver = parse_choice<diffrank::PerturbSolver>(
      option<std::string>(options, "solver"), "solver",
      {{"argmax", diffrank::PerturbSolver::argmax},
       {"topk", diffrank::PerturbSolver::topk},
       {"rank", diffrank::PerturbSolver::rank},
       {"sort", diffrank::PerturbSolver::sort},
       {"user", diffrank::PerturbSolver::external}});
  s.noise = parse_choice<diffrank::PerturbNoise>(option<std::string>(options, "noise"), "noise",
                                                 {{"normal", diffrank::PerturbNoise::normal},
                                                  {"gumbel", diffrank::PerturbNoise::gumbel}});
  s.eps = option<double>(options, "eps");
  s.k = static_cast<std::size_t>(option<int>(options, "k"));
  s.samples = static_cast<std::size_t>(option<int>(options, "n_samples"));
  s.antithetic = option<bool>(options, "antithetic");
  return s;
}

using PerturbedState = diffrank_glue::ColumnStates<diffrank::PerturbedOperator>;

// Sets up one operator per column of theta (n x ncol, a plain vector) with
// its base draws z (n x base draws x ncol).
PerturbedState* new_state(const Rcpp::NumericVector& theta, std::size_t n,
                          const Rcpp::NumericVector& z, std::size_t d,
                          const diffrank::PerturbSettings& s) {
  const std::size_t ncol = n == 0 ? 0 : theta.size() / n;
  const std::size_t nb = diffrank::perturb_base_draws(s);
  if (static_cast<std::size_t>(z.size()) != n * nb * ncol) {
    Rcpp::stop("internal: %d noise values given, %d needed", static_cast<int>(z.size()),
               static_cast<int>(n * nb * ncol));
  }
  auto* st = new PerturbedState();
  st->input_size = n;
  st->output_size = d;
  st->ops.resize(ncol);
  for (std::size_t j = 0; j < ncol; ++j) {
    st->ops[j].reset(theta.begin() + j * n, n, z.begin() + j * n * nb, d, s);
  }
  return st;
}

}  // namespace

// The perturbed points theta + eps Z_m of every draw of every column, an
// n x (n_samples * ncol) matrix, for a solver written in R.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericMatrix perturbed_points_cpp(Rcpp::NumericVector theta, int nrow,
                                         Rcpp::NumericVector z, Rcpp::List options) {
  const diffrank::PerturbSettings s = make_settings(options);
  Rcpp::XPtr<PerturbedState> state =
      diffrank_glue::make_handle(new_state(theta, nrow, z, nrow, s));
  const std::size_t n = nrow, ncol = state->ops.size(), m = s.samples;
  Rcpp::NumericMatrix out(Rcpp::no_init(n, m * ncol));
  for (std::size_t j = 0; j < ncol; ++j) {
    for (std::size_t k = 0; k < m; ++k) state->ops[j].point(k, out.begin() + (j * m + k) * n);
  }
  return out;
}

// Solves every draw of every column (built-in solver) or stores the solutions
// an R solver found (`solutions`, d x (n_samples * ncol)), and returns the
// perturbed maximizer (d x ncol, a plain vector), the perturbed maximum of
// each column and the handle for the derivatives.
// [[Rcpp::export(rng = false)]]
Rcpp::List perturbed_state_cpp(Rcpp::NumericVector theta, int nrow, Rcpp::NumericVector z,
                               Rcpp::List options, Rcpp::Nullable<Rcpp::NumericVector> solutions,
                               int d, int threads) {
  const diffrank::PerturbSettings s = make_settings(options);
  Rcpp::XPtr<PerturbedState> state = diffrank_glue::make_handle(new_state(theta, nrow, z, d, s));
  PerturbedState* st = state.get();
  const std::size_t n = nrow, ncol = st->ops.size(), m = s.samples, dd = d;
  const double* given = nullptr;
  Rcpp::NumericVector sol;
  if (solutions.isNotNull()) {
    sol = Rcpp::NumericVector(solutions.get());
    if (static_cast<std::size_t>(sol.size()) != dd * m * ncol) Rcpp::stop("internal: solutions");
    given = sol.begin();
  }
  // one task per draw of one column, so that a single long vector uses every thread
  diffrank_glue::parallel_columns(m * ncol, threads, diffrank_glue::column_cuts(n),
                                  [&](std::size_t t0, std::size_t t1) {
                                    diffrank::PerturbScratch scratch;
                                    for (std::size_t t = t0; t < t1; ++t) {
                                      auto& op = st->ops[t / m];
                                      if (given != nullptr) {
                                        op.store(t % m, given + t * dd, scratch);
                                      } else {
                                        op.solve(t % m, scratch);
                                      }
                                    }
                                  });
  Rcpp::NumericVector value(Rcpp::no_init(dd * ncol));
  Rcpp::NumericVector maximum(Rcpp::no_init(ncol));
  double* vp = value.begin();
  double* mp = maximum.begin();
  diffrank_glue::parallel_for(ncol, threads, [&](std::size_t j0, std::size_t j1) {
    for (std::size_t j = j0; j < j1; ++j) {
      st->ops[j].value(vp + j * dd);
      mp[j] = st->ops[j].maximum();
    }
  });
  return Rcpp::List::create(Rcpp::Named("value") = value, Rcpp::Named("maximum") = maximum,
                            Rcpp::Named("state") = state);
}

// J^T u (transpose = true; u is d x ncol, the result n x ncol) or J u (u is
// n x ncol, the result d x ncol) for every column, as plain vectors.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericVector perturbed_state_product_cpp(SEXP state, Rcpp::NumericVector u,
                                                bool transpose, int threads) {
  PerturbedState& st = *diffrank_glue::handle_state<PerturbedState>(state);
  // a product visits every draw of a column
  const std::size_t samples = st.ops.empty() ? 1 : st.ops[0].samples();
  return diffrank_glue::stored_products(st, u, transpose, threads,
                                        diffrank_glue::column_cuts(st.input_size * samples));
}

// Jacobian estimates, d x n x ncol, column-major.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericVector perturbed_state_jacobian_cpp(SEXP state, int threads) {
  return diffrank_glue::stored_jacobians(*diffrank_glue::handle_state<PerturbedState>(state),
                                         threads);
}

// The Fenchel-Young loss of every column against the targets (n x ncol).
// [[Rcpp::export(rng = false)]]
Rcpp::NumericVector perturbed_state_fy_cpp(SEXP state, Rcpp::NumericVector target, int threads) {
  PerturbedState* st = diffrank_glue::handle_state<PerturbedState>(state);
  const std::size_t n = st->input_size, ncol = st->ops.size();
  if (static_cast<std::size_t>(target.size()) != n * ncol) Rcpp::stop("internal: target");
  Rcpp::NumericVector out(Rcpp::no_init(ncol));
  const double* tp = target.begin();
  double* op = out.begin();
  diffrank_glue::parallel_for(ncol, threads, [&](std::size_t j0, std::size_t j1) {
    std::vector<double> work;
    for (std::size_t j = j0; j < j1; ++j) op[j] = st->ops[j].fy_loss(tp + j * n, work);
  });
  return out;
}
