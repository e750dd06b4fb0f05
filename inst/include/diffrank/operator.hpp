// The differentiable-operator contract of diffrank's core.
//
// Every differentiable family (soft sort and rank by projection onto the
// permutahedron, Sinkhorn optimal transport, perturbed optimizers, and the
// building blocks of quantile matrix factorization) has one core class per
// problem (one vector, one column):
//
//   family       column class                forward pass
//   soft         SoftOperator                forward(x, n, settings, out)
//                (permutahedron.hpp)
//   Sinkhorn     SinkhornOperator, and       forward(spec, options, x, a, out,
//                SinkhornColumnView for a    f, g, means): the caller keeps
//                stored column               the potentials f, g
//                (sinkhorn_operator.hpp)
//   perturbed    PerturbedOperator           reset(theta, ...), then solve()
//                (perturb.hpp)               or store() per draw, value()
//
// The forward passes read different things and stay the families' own; they
// compute the value into out (which may be null when only derivatives are
// wanted), keep at O(size) memory what the derivatives need, and return
// false (or a status) on failures the caller reports to R, never throwing
// for data that passed the R-side checks. What every family offers in the
// same form after its forward pass is checked at compile time by
// is_column_operator below:
//
//   std::size_t input_size() const, output_size() const
//       the sizes of one column's input and result;
//   void vjp(const double* cotangent, double* out)
//       out = J^T cotangent for the last forward call, never forming J
//       (the Sinkhorn view also adds the gradients of the target weights
//       and values where the caller asked for them);
//   void jvp(const double* tangent, double* out)
//       out = J tangent;
//   void jacobian(double* out)                         (optional, has_jacobian)
//       the dense Jacobian, column-major, for small problems and tests.
//
// Objects are reused across columns to avoid allocations, hold no global
// state and touch nothing outside their arguments, so the glue may run one
// object per thread. A problem that can run for long on its own (one
// Sinkhorn transport of a long column) calls the settings' `poll` callback
// between iterations and every few hundred rows of a pass; the glue's poll
// throws on a user interrupt, so the core only has to be exception-safe.
// The settings are a plain struct of the family (SoftSettings,
// SinkhornSpec, PerturbSettings), filled by the glue from the options list
// the R wrapper builds; enums are parsed in one place (src/glue.h:
// parse_choice).
//
// The glue keeps a family's states (one per column) behind one external
// pointer (src/glue.h: make_handle, handle_state) and runs the products and
// Jacobians of every family through one template (src/operator_glue.h:
// ColumnStates, column_products, stored_products, stored_jacobians, with
// one rule for cutting columns into tasks, column_cuts); the R wrapper
// builds one `diffrank_operator` object from it (R/operator.R:
// new_operator), with $value, $vjp(v, wrt), $jvp(u) and $jacobian(), and
// the R forms of every operator come from one table (R/operator_table.R).
#pragma once

#include <cstddef>
#include <type_traits>
#include <utility>

namespace diffrank {

// The part of the contract every family's column object meets in the same
// form, checked at compile time: the sizes of one column's input and output,
// and the two products at the state of the last forward pass,
//   std::size_t input_size() const;    values of x in one column
//   std::size_t output_size() const;   values of the column's result
//   void vjp(const double* cotangent, double* out);  output_size -> input_size
//   void jvp(const double* tangent, double* out);    input_size -> output_size
// (each may be const). The forward passes differ by what they read (settings,
// noise draws, transport problems) and stay the families' own; the glue
// (src/operator_glue.h) runs the products and Jacobians of every family
// through these members. A family states its conformance next to its class:
//   static_assert(is_column_operator<SoftOperator>::value, "...");
template <class Op, class = void>
struct is_column_operator : std::false_type {};

template <class Op>
struct is_column_operator<
    Op,
    std::void_t<
        decltype(std::size_t{std::declval<const Op&>().input_size()}),
        decltype(std::size_t{std::declval<const Op&>().output_size()}),
        decltype(std::declval<Op&>().vjp(std::declval<const double*>(), std::declval<double*>())),
        decltype(std::declval<Op&>().jvp(std::declval<const double*>(), std::declval<double*>()))>>
    : std::true_type {};

// Optional: the dense Jacobian (output_size x input_size, column-major),
//   void jacobian(double* out);
template <class Op, class = void>
struct has_jacobian : std::false_type {};

template <class Op>
struct has_jacobian<Op,
                    std::void_t<decltype(std::declval<Op&>().jacobian(std::declval<double*>()))>>
    : std::true_type {};

}  // namespace diffrank
