// Glue for the quadratically regularized transport plans (soft permutation
// matrices by L2 projection onto the Birkhoff polytope); arguments are
// checked in R/permutation_birkhoff.R. Every column of a matrix is one problem.
#include <Rcpp.h>

#include <cstddef>
#include <diffrank/birkhoff.hpp>
#include <string>
#include <vector>

#include "glue.h"
#include "operator_glue.h"
#include "parallel.h"

namespace {

using BirkhoffState = diffrank_glue::ColumnStates<diffrank::BirkhoffOperator>;

diffrank::BirkhoffSettings make_settings(const Rcpp::List& options) {
  using diffrank_glue::option;
  diffrank::BirkhoffSettings s;
  s.output = diffrank_glue::parse_choice<diffrank::BirkhoffOutput>(
      option<std::string>(options, "kind"), "kind",
      {{"plan", diffrank::BirkhoffOutput::plan},
       {"rank", diffrank::BirkhoffOutput::rank},
       {"sort", diffrank::BirkhoffOutput::sort}});
  s.eps = option<double>(options, "eps");
  s.power = option<double>(options, "power");
  s.squash = option<std::string>(options, "scale") == "squash";
  s.decreasing = option<bool>(options, "decreasing");
  s.tol = option<double>(options, "tol");
  s.max_iter = option<int>(options, "max_iter");
  s.y = option<std::vector<double>>(options, "y");
  s.b = option<std::vector<double>>(options, "b");
  return s;
}

}  // namespace

// Forward pass on every column of x (nrow values each, weights a): the value
// (output rows x columns), the Newton iterations, marginal error,
// convergence and support size of every column, and the state for the
// products.
// [[Rcpp::export(rng = false)]]
Rcpp::List birkhoff_state_cpp(Rcpp::NumericVector x, int nrow, Rcpp::NumericVector a,
                              Rcpp::List options, int threads) {
  const std::size_t n = nrow, columns = n == 0 ? 0 : x.size() / n;
  diffrank::BirkhoffSettings s = make_settings(options);
  diffrank_glue::InterruptPoll interrupt;
  s.poll = interrupt.callback();
  Rcpp::XPtr<BirkhoffState> state = diffrank_glue::make_handle(new BirkhoffState());
  BirkhoffState* st = state.get();
  st->ops.resize(columns);
  st->input_size = n;
  const std::size_t rows = s.output == diffrank::BirkhoffOutput::plan   ? n * s.y.size()
                           : s.output == diffrank::BirkhoffOutput::rank ? n
                                                                        : s.y.size();
  st->output_size = rows;
  Rcpp::NumericVector out(Rcpp::no_init(rows * columns));
  Rcpp::IntegerVector iterations(columns);
  Rcpp::NumericVector error(columns);
  Rcpp::LogicalVector converged(columns);
  Rcpp::NumericVector support(columns);
  std::vector<int> it(columns);
  std::vector<double> err(columns);
  std::vector<char> conv(columns);
  const double* xp = x.begin();
  const double* ap = a.begin();
  double* op = out.begin();
  diffrank_glue::parallel_columns(columns, threads, diffrank_glue::column_cuts(n * s.y.size()),
                                  [&](std::size_t j0, std::size_t j1) {
                                    for (std::size_t j = j0; j < j1; ++j) {
                                      diffrank::BirkhoffOperator& o = st->ops[j];
                                      conv[j] = o.forward(xp + j * n, ap, n, s, op + j * rows);
                                      it[j] = o.iterations;
                                      err[j] = o.error;
                                    }
                                  });
  for (std::size_t j = 0; j < columns; ++j) {
    iterations[j] = it[j];
    error[j] = err[j];
    converged[j] = conv[j] != 0;
    support[j] = static_cast<double>(st->ops[j].support_size());
  }
  return Rcpp::List::create(Rcpp::Named("value") = out, Rcpp::Named("iterations") = iterations,
                            Rcpp::Named("error") = error, Rcpp::Named("converged") = converged,
                            Rcpp::Named("support") = support, Rcpp::Named("state") = state);
}

// VJP (transpose) or JVP of every column of a stored state for u.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericVector birkhoff_state_product_cpp(SEXP state, Rcpp::NumericVector u, bool transpose,
                                               int threads) {
  BirkhoffState& st = *diffrank_glue::handle_state<BirkhoffState>(state);
  return diffrank_glue::stored_products(st, u, transpose, threads,
                                        diffrank_glue::column_cuts(st.output_size));
}
