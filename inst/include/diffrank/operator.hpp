// The differentiable-operator contract of diffrank's core.
//
// Every differentiable family (soft sort and rank by projection onto the
// permutahedron, Sinkhorn optimal transport, perturbed optimizers, and the
// building blocks of quantile matrix factorization) has one core class per
// problem (one vector, one column) that provides
//
//   bool forward(inputs..., const Settings& settings, double* out)
//       computes the value into out (out may be null when only derivatives
//       are wanted) and keeps, at O(size) memory, what the derivatives need;
//       returns false (or a status) on failures the caller reports to R,
//       never throws for data it was given after the R-side checks;
//   void vjp(const double* cotangent, double* out...)
//       out = J^T cotangent for the last forward call, one output per
//       differentiable input (x, and for Sinkhorn also the target values and
//       weights); O(size) or O(size * iterations), never forming J;
//   void jvp(const double* tangent, double* out)      (where it is cheap)
//       out = J tangent;
//   void jacobian(double* out)                         (optional)
//       the dense Jacobian, column-major, for small problems and tests.
//
// Objects are reused across columns to avoid allocations, hold no global
// state and touch nothing outside their arguments, so the glue may run one
// object per thread. A problem that can run for long on its own (one
// Sinkhorn transport of a long column) calls the settings' `poll` callback
// between iterations and every few hundred rows of a pass; the glue's poll
// throws on a user interrupt, so the core only has to be exception-safe. The settings are a plain struct of the family
// (SoftSettings, SinkhornOptions, ...), filled by the glue from the options
// list the R wrapper builds; enums are parsed in one place
// (src/glue.h: parse_choice).
//
// The Sinkhorn family's class is SinkhornOperator (sinkhorn_operator.hpp),
// one column with all of its transport problems; the soft sorts' is
// SoftOperator (permutahedron.hpp).
//
// The glue keeps a family's states (one per column) behind one external
// pointer (src/glue.h: make_handle, handle_state), and the R wrapper builds
// one `diffrank_operator` object from it (R/operator.R: new_operator), with
// $value, $vjp(v, wrt), $jvp(u) and $jacobian().
#pragma once
