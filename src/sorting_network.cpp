// Glue for the differentiable sorting networks; arguments are checked in
// R/sorting_network.R. Every column of a matrix is one vector.
#include <Rcpp.h>

#include <cstddef>
#include <diffrank/sorting_network.hpp>
#include <string>

#include "glue.h"
#include "operator_glue.h"
#include "parallel.h"

namespace {

// The columns' networks, and how columns are cut into tasks for the forward
// pass and the products alike (a pass costs one network, n networks for a
// plan).
struct NetworkState : diffrank_glue::ColumnStates<diffrank::NetworkOperator> {
  diffrank_glue::ColumnCuts cuts{1, 1};
};

diffrank::NetworkSettings make_settings(const Rcpp::List& options) {
  using diffrank_glue::option;
  using diffrank_glue::parse_choice;
  diffrank::NetworkSettings s;
  s.output = parse_choice<diffrank::NetworkOutput>(option<std::string>(options, "kind"), "kind",
                                                   {{"sort", diffrank::NetworkOutput::sort},
                                                    {"rank", diffrank::NetworkOutput::rank},
                                                    {"plan", diffrank::NetworkOutput::plan}});
  s.network = parse_choice<diffrank::NetworkKind>(
      option<std::string>(options, "network"), "network",
      {{"bitonic", diffrank::NetworkKind::bitonic}, {"odd_even", diffrank::NetworkKind::odd_even}});
  s.relaxation = parse_choice<diffrank::NetworkRelaxation>(
      option<std::string>(options, "relaxation"), "relaxation",
      {{"logistic", diffrank::NetworkRelaxation::logistic},
       {"cauchy", diffrank::NetworkRelaxation::cauchy}});
  s.scale = parse_choice<diffrank::NetworkScale>(option<std::string>(options, "scale"), "scale",
                                                 {{"spacing", diffrank::NetworkScale::spacing},
                                                  {"sd", diffrank::NetworkScale::sd},
                                                  {"none", diffrank::NetworkScale::none}});
  s.eps = option<double>(options, "eps");
  s.decreasing = option<bool>(options, "decreasing");
  return s;
}

// Sets the interrupt poll of every column object for the duration of a call
// (the poll dies with the call).
class PollGuard {
 public:
  PollGuard(NetworkState& st, diffrank_glue::InterruptPoll& interrupt) : st_(st) {
    for (diffrank::NetworkOperator& op : st_.ops) op.poll = interrupt.callback();
  }
  ~PollGuard() {
    for (diffrank::NetworkOperator& op : st_.ops) op.poll = nullptr;
  }
  PollGuard(const PollGuard&) = delete;
  PollGuard& operator=(const PollGuard&) = delete;

 private:
  NetworkState& st_;
};

}  // namespace

// The number of comparators of a network on n values (for memory checks).
// [[Rcpp::export(rng = false)]]
double network_comparators_cpp(std::string network, double n) {
  return diffrank::network_comparator_count(
      network == "odd_even" ? diffrank::NetworkKind::odd_even : diffrank::NetworkKind::bitonic, n);
}

// Forward pass on every column of x: the value (output rows x columns) and
// the state for the products.
// [[Rcpp::export(rng = false)]]
Rcpp::List network_state_cpp(Rcpp::NumericVector x, int nrow, Rcpp::List options, int threads) {
  const std::size_t n = nrow, columns = n == 0 ? 0 : x.size() / n;
  const diffrank::NetworkSettings s = make_settings(options);
  Rcpp::XPtr<NetworkState> state = diffrank_glue::make_handle(new NetworkState());
  NetworkState* st = state.get();
  st->ops.resize(columns);
  st->input_size = n;
  st->output_size = s.output == diffrank::NetworkOutput::plan ? n * n : n;
  const std::size_t rows = st->output_size;
  const double work = diffrank::network_comparator_count(s.network, static_cast<double>(n)) *
                      (s.output == diffrank::NetworkOutput::plan ? static_cast<double>(n) : 1.0);
  st->cuts = diffrank_glue::column_cuts(static_cast<std::size_t>(work));
  Rcpp::NumericVector out(Rcpp::no_init(rows * columns));
  const double* xp = x.begin();
  double* op = out.begin();
  diffrank_glue::InterruptPoll interrupt;
  PollGuard guard(*st, interrupt);
  diffrank_glue::parallel_columns(columns, threads, st->cuts, [&](std::size_t j0, std::size_t j1) {
    for (std::size_t j = j0; j < j1; ++j) {
      st->ops[j].forward(xp + j * n, n, s, op + j * rows);
    }
  });
  return Rcpp::List::create(Rcpp::Named("value") = out, Rcpp::Named("state") = state);
}

// VJP (transpose) or JVP of every column of a stored state for u.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericVector network_state_product_cpp(SEXP state, Rcpp::NumericVector u, bool transpose,
                                              int threads) {
  NetworkState& st = *diffrank_glue::handle_state<NetworkState>(state);
  diffrank_glue::InterruptPoll interrupt;
  PollGuard guard(st, interrupt);
  return diffrank_glue::stored_products(st, u, transpose, threads, st.cuts);
}
