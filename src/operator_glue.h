// The glue every differentiable family shares: a state that keeps one column
// object per column of x, and the products and Jacobians of those objects
// (the contract of inst/include/diffrank/operator.hpp), run over columns in
// parallel with interrupts checked between batches. A family's glue file
// keeps only its forward pass and what is its own (its settings, its extra
// outputs).
#pragma once

#include <Rcpp.h>

#include <algorithm>
#include <cstddef>
#include <diffrank/operator.hpp>
#include <type_traits>
#include <vector>

#include "glue.h"
#include "parallel.h"

namespace diffrank_glue {

// How the columns are cut: columns per task (grain) and per interrupt check
// (batch), for columns that each cost about `work` operations (their
// length): a task of about 2,000 operations at least, a check every few
// million operations.
struct ColumnCuts {
  std::size_t grain, batch;
};
inline ColumnCuts column_cuts(std::size_t work) {
  work = std::max<std::size_t>(work, 1);
  return {std::max<std::size_t>(1, 2048 / work),
          std::max<std::size_t>(16, (std::size_t(1) << 22) / work)};
}

// parallel_for over columns cut by `cuts`.
template <class Body>
void parallel_columns(std::size_t columns, int threads, ColumnCuts cuts, Body body) {
  parallel_for(columns, threads, body, cuts.grain, cuts.batch);
}

// The derivative state of a family that keeps one column object per column
// (SoftOperator, PerturbedOperator), and the sizes of one column's input and
// output (kept apart from the objects: there may be no column).
template <class Op>
struct ColumnStates {
  static_assert(diffrank::is_column_operator<Op>::value,
                "a column object must meet the operator contract (operator.hpp)");
  std::size_t input_size = 0, output_size = 0;
  std::vector<Op> ops;
};

// No workspace: the column objects hold their own buffers.
struct NoWorkspace {};

// For every column j, the column object column_of(j, workspace) (a
// reference to a stored object, or a view of a stored column that computes
// with the thread's workspace) multiplies column j of u: its VJP when
// `transpose` (u has output_size values per column, out input_size), else
// its JVP. in_size and out_size are the sizes of one column of u and out.
template <class Workspace = NoWorkspace, class ColumnOf>
void column_products(std::size_t columns, const double* u, std::size_t in_size, double* out,
                     std::size_t out_size, bool transpose, int threads, ColumnCuts cuts,
                     ColumnOf column_of) {
  parallel_columns(columns, threads, cuts, [&](std::size_t j0, std::size_t j1) {
    Workspace work;
    for (std::size_t j = j0; j < j1; ++j) {
      auto&& op = column_of(j, work);
      static_assert(diffrank::is_column_operator<std::decay_t<decltype(op)>>::value,
                    "a column object must meet the operator contract (operator.hpp)");
      if (transpose) {
        op.vjp(u + j * in_size, out + j * out_size);
      } else {
        op.jvp(u + j * in_size, out + j * out_size);
      }
    }
  });
}

// Products of a stored state, as an R vector: the VJP (transpose) or JVP of
// every column for u, a plain vector of the column direction's size times
// the number of columns; `cuts` from the cost of one column's product.
template <class Op>
Rcpp::NumericVector stored_products(ColumnStates<Op>& st, const Rcpp::NumericVector& u,
                                    bool transpose, int threads, ColumnCuts cuts) {
  const std::size_t columns = st.ops.size(), n = st.input_size, d = st.output_size;
  const std::size_t in = transpose ? d : n, out_rows = transpose ? n : d;
  if (static_cast<std::size_t>(u.size()) != in * columns) {
    Rcpp::stop("internal: the direction must have %d values", static_cast<int>(in * columns));
  }
  Rcpp::NumericVector out(Rcpp::no_init(out_rows * columns));
  column_products(columns, u.begin(), in, out.begin(), out_rows, transpose, threads, cuts,
                  [&](std::size_t j, NoWorkspace&) -> Op& { return st.ops[j]; });
  return out;
}

// The dense Jacobians of a stored state, output_size x input_size x
// columns (column-major), as an R array.
template <class Op>
Rcpp::NumericVector stored_jacobians(ColumnStates<Op>& st, int threads) {
  static_assert(diffrank::has_jacobian<Op>::value, "the column object has no jacobian()");
  const std::size_t columns = st.ops.size(), n = st.input_size, d = st.output_size;
  Rcpp::NumericVector out(Rcpp::no_init(d * n * columns));
  double* op = out.begin();
  parallel_for(columns, threads, [&](std::size_t j0, std::size_t j1) {
    for (std::size_t j = j0; j < j1; ++j) st.ops[j].jacobian(op + j * d * n);
  });
  out.attr("dim") = Rcpp::IntegerVector::create(d, n, columns);
  return out;
}

}  // namespace diffrank_glue
