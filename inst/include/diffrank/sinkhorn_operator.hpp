// The Sinkhorn operators of the package on one column, whole: the kinds
// (rank, CDF, sort, quantiles, top-k, normalization, the plan) as transport
// problems, missing values, the decreasing order, and the chain rules from
// the transport's parameters to the user's inputs (raw target weights,
// target values in the user's order). What is left to the glue
// (src/sinkhorn.cpp) is reading R's arguments, the threads and the storage.
//
// A column is solved as one transport problem (sinkhorn.hpp:
// SinkhornColumn): kind "row" problems give one value per input value,
// out_i = (P w)_i / a_i, with w = cumsum(b) for CDF values (ranks are n
// times the CDF), w = the target values for normalization and w = (0, 1)
// for top-k; kind "col" problems give the mean input value sent to each
// target (sorts; the quantiles at all levels are the means of their window
// targets); a "plan" problem gives the plan itself.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "common.hpp"
#include "operator.hpp"
#include "sinkhorn.hpp"

namespace diffrank {

enum class SinkhornOutput { rank, cdf, sort, quantile, topk, normalize, plan };

// One transport problem, the same for every column: m sorted targets y with
// weights b; for a row problem, the values w averaged per input value (w =
// cumsum(b) for ranks and CDFs, so that the gradient with respect to b also
// flows through w). For a column problem, `rows` lists the targets whose
// means are its outputs, one per output row (quantile levels in the user's
// order: a repeated level repeats its target), or is empty for sorts (all m
// targets, in order).
struct SinkhornProblem {
  std::vector<double> y, b, w;
  bool w_is_cumsum = false;
  std::vector<std::size_t> rows;
  bool whole_plan = false;  // the output is the plan itself (n x m)

  // Output rows of this problem in a column of n values.
  std::size_t output_rows(std::size_t n) const {
    if (whole_plan) return n * y.size();
    if (!w.empty()) return n;
    return rows.empty() ? y.size() : rows.size();
  }

  // w = cumsum(b), summed in order.
  void set_cumsum_weights() {
    w_is_cumsum = true;
    w.resize(b.size());
    double total = 0.0;
    for (std::size_t l = 0; l < b.size(); ++l) w[l] = total += b[l];
  }

  SinkhornTask task(const SinkhornOptions& opt, bool squash) const {
    SinkhornTask t;
    t.y = y.data();
    t.b = b.data();
    t.m = y.size();
    t.kind = whole_plan ? SinkhornKind::plan : w.empty() ? SinkhornKind::col : SinkhornKind::row;
    t.w = w.empty() ? nullptr : w.data();
    t.squash = squash;
    t.opt = opt;
    return t;
  }
};

// An operator: its kind, problem and options, the same for every column of
// n values. `decreasing` ranks -x (and sorts in decreasing order);
// `target_order` (normalization) is the position in the user's target of
// each sorted target value, empty when the user's target was sorted.
struct SinkhornSpec {
  SinkhornOutput output = SinkhornOutput::rank;
  SinkhornOptions opt;
  bool squash = true;
  bool decreasing = false;
  SinkhornProblem problem;
  std::vector<std::size_t> target_order;
  std::size_t n = 0;

  // Output rows of a column: n values, m sorted values, one per level, or
  // the n x m plan.
  std::size_t output_rows() const { return problem.output_rows(n); }
  // Potentials kept per column: f (n) and g (one per target); a quantile
  // column's target means are laid out as its g.
  std::size_t f_size() const { return n; }
  std::size_t g_size() const { return targets(); }
  // The targets, whose weights (and, for normalization, values) are
  // differentiable inputs.
  std::size_t targets() const { return problem.y.size(); }
};

// Which inputs of a column were scaled by a power of two for its derivatives
// (range_exponent in sinkhorn.hpp): the caller names them when a result is
// still not finite.
struct SinkhornRescaled {
  bool x = false, direction = false, target = false;
  void note(const SinkhornColumn& col) {
    x = x || col.x_exponent() != 0;
    direction = direction || col.v_exponent() != 0;
    target = target || col.w_exponent() != 0;
  }
  void merge(const SinkhornRescaled& other) {
    x = x || other.x;
    direction = direction || other.direction;
    target = target || other.target;
  }
};

// One column of an operator. forward() fills the column's value and
// potentials; vjp() and jvp() reuse the potentials. Objects are reused across
// columns (one per thread); they hold buffers only.
class SinkhornOperator {
 public:
  // The value of column x (n values, NaN where missing, which stay NaN in
  // `out` and are left out of the transport, their weights a renormalized)
  // into out (output_rows() values, written only where observed for row
  // operators); the potentials into f (f_size()) and g (g_size()); for a
  // quantile column, the mean input value sent to every target into
  // `means` (g_size(), may be null).
  SinkhornStatus forward(const SinkhornSpec& spec, const SinkhornOptions& opt, const double* x,
                         const double* a, double* out, double* f, double* g, double* means) {
    const SinkhornStatus status =
        forward_problem(spec, opt, oriented(spec, x), a, out, f, g, means);
    finish(spec, out);
    if (flips_rows(spec)) std::reverse(out, out + spec.output_rows());
    return status;
  }

  // Writes to xbar (n) the VJP for the cotangent v (output_rows() values)
  // at the potentials f, g of forward(); missing values get 0. Adds to bbar and
  // wbar (targets() each) the gradients of the target weights b (before the cumsum, which is
  // applied here) and averaged values w; target_gradients() turns the column sums into the user's.
  void vjp(const SinkhornSpec& spec, const SinkhornOptions& opt, const double* x, const double* a,
           const double* f, const double* g, const double* v, double* xbar, double* bbar,
           double* wbar) {
    const double* xs = oriented(spec, x);
    const std::size_t rows = spec.output_rows();
    if (flips_rows(spec)) {
      flipped_.assign(v, v + rows);
      std::reverse(flipped_.begin(), flipped_.end());
      v = flipped_.data();
    }
    xbar_.assign(spec.n, 0.0);
    const std::size_t m0 = spec.targets();
    column_b_.assign(m0, 0.0);
    column_w_.assign(m0, 0.0);
    vjp_problem(spec, opt, xs, a, f, g, v, xbar_.data(), column_b_.data(), column_w_.data());
    const double sign = negates(spec) ? -1.0 : 1.0;
    for (std::size_t i = 0; i < spec.n; ++i) xbar[i] = sign * xbar_[i];
    // w = cumsum(b): d/db_l gets every d/dw_k with k >= l
    double tail = 0.0;
    for (std::size_t l = m0; l-- > 0;) {
      tail += spec.problem.w_is_cumsum ? column_w_[l] : 0.0;
      bbar[l] += column_b_[l] + tail;
      wbar[l] += column_w_[l];
    }
  }

  // The JVP for the tangent u of x (n values, ignored where x is missing)
  // at the potentials f, g of forward(): output_rows() values, 0 where x is
  // missing. The transpose of vjp().
  void jvp(const SinkhornSpec& spec, const SinkhornOptions& opt, const double* x, const double* a,
           const double* f, const double* g, const double* u, double* out) {
    const double* xs = oriented(spec, x);
    if (negates(spec)) {
      negated_u_.resize(spec.n);
      for (std::size_t i = 0; i < spec.n; ++i) negated_u_[i] = -u[i];
      u = negated_u_.data();
    }
    jvp_problem(spec, opt, xs, a, f, g, u, out);
    if (flips_rows(spec)) std::reverse(out, out + spec.output_rows());
  }

  // The inputs scaled by a power of two in the calls since the last reset.
  const SinkhornRescaled& rescaled() const { return rescaled_; }
  void reset_rescaled() { rescaled_ = SinkhornRescaled(); }

 private:
  static bool negates(const SinkhornSpec& spec) {
    return spec.decreasing && spec.output != SinkhornOutput::sort;
  }
  static bool flips_rows(const SinkhornSpec& spec) {
    return spec.decreasing && spec.output == SinkhornOutput::sort;
  }

  // x as the transport sees it: -x for a decreasing rank, CDF, quantile,
  // top-k or normalization.
  const double* oriented(const SinkhornSpec& spec, const double* x) {
    if (!negates(spec)) return x;
    negated_x_.resize(spec.n);
    for (std::size_t i = 0; i < spec.n; ++i) negated_x_[i] = -x[i];
    return negated_x_.data();
  }

  // CDF values may come out an ulp above 1; ranks are n times the CDF.
  static void finish(const SinkhornSpec& spec, double* out) {
    if (spec.output != SinkhornOutput::rank && spec.output != SinkhornOutput::cdf) return;
    const double factor = spec.output == SinkhornOutput::rank ? static_cast<double>(spec.n) : 1.0;
    for (std::size_t i = 0; i < spec.n; ++i) {
      if (!std::isnan(out[i])) out[i] = factor * std::min(out[i], 1.0);
    }
  }

  SinkhornStatus forward_problem(const SinkhornSpec& spec, const SinkhornOptions& opt,
                                 const double* x, const double* a, double* out, double* f,
                                 double* g, double* means) {
    const SinkhornProblem& pr = spec.problem;
    const SinkhornTask task = pr.task(opt, spec.squash);
    const std::size_t n = spec.n, m = pr.y.size();
    // a plan has a row for every value: x has no missing value (R/sinkhorn.R
    // admits them for normalization only)
    if (task.kind == SinkhornKind::plan) return col_.forward(task, x, a, n, out, f, g);
    const bool row = task.kind == SinkhornKind::row;
    SinkhornStatus status;
    if (!obs_.gather(x, a, n)) {
      buffer_.resize(row ? n : m);
      status = col_.forward(task, x, a, n, buffer_.data(), f, g);
      if (row) std::copy(buffer_.begin(), buffer_.end(), out);
    } else {
      const std::size_t q = obs_.idx.size();
      buffer_.resize(row ? q : m);
      obs_f_.resize(q);
      status = col_.forward(task, obs_.x.data(), obs_.a.data(), q, buffer_.data(), obs_f_.data(), g);
      for (std::size_t k = 0; k < q; ++k) f[obs_.idx[k]] = obs_f_[k];
      if (row) {
        for (std::size_t k = 0; k < q; ++k) out[obs_.idx[k]] = buffer_[k];
      }
    }
    if (!row) {
      if (pr.rows.empty()) {
        std::copy(buffer_.begin(), buffer_.begin() + m, out);
      } else {
        for (std::size_t r = 0; r < pr.rows.size(); ++r) out[r] = buffer_[pr.rows[r]];
        if (means != nullptr) std::copy(buffer_.begin(), buffer_.begin() + m, means);
      }
    }
    return status;
  }

  void vjp_problem(const SinkhornSpec& spec, const SinkhornOptions& opt, const double* x,
                   const double* a, const double* f, const double* g, const double* v, double* xbar,
                   double* bbar, double* wbar) {
    const SinkhornProblem& pr = spec.problem;
    const SinkhornTask task = pr.task(opt, spec.squash);
    const std::size_t n = spec.n, m = pr.y.size();
    const bool row = task.kind == SinkhornKind::row;
    const double factor = spec.output == SinkhornOutput::rank ? static_cast<double>(n) : 1.0;
    if (task.kind == SinkhornKind::plan) {
      col_.vjp(task, x, a, n, f, g, v, xbar, bbar, wbar);
      rescaled_.note(col_);
      return;
    }
    // the cotangent of this problem's own output (times factor, applied by
    // the core)
    if (row) {
      cot_.assign(v, v + n);
    } else if (pr.rows.empty()) {
      cot_.assign(v, v + m);
    } else {
      cot_.assign(m, 0.0);
      for (std::size_t r = 0; r < pr.rows.size(); ++r) cot_[pr.rows[r]] += v[r];
    }
    if (!obs_.gather(x, a, n)) {
      col_.vjp(task, x, a, n, f, g, cot_.data(), xbar, bbar, wbar, factor);
      rescaled_.note(col_);
      return;
    }
    // missing values get a zero gradient: the output does not depend on them
    const std::size_t q = obs_.idx.size();
    obs_f_.resize(q);
    obs_xbar_.assign(q, 0.0);
    for (std::size_t k = 0; k < q; ++k) obs_f_[k] = f[obs_.idx[k]];
    if (row) {
      obs_v_.resize(q);
      for (std::size_t k = 0; k < q; ++k) obs_v_[k] = cot_[obs_.idx[k]];
    }
    col_.vjp(task, obs_.x.data(), obs_.a.data(), q, obs_f_.data(), g,
             row ? obs_v_.data() : cot_.data(), obs_xbar_.data(), bbar, wbar, factor);
    rescaled_.note(col_);
    for (std::size_t k = 0; k < q; ++k) xbar[obs_.idx[k]] += obs_xbar_[k];
  }

  void jvp_problem(const SinkhornSpec& spec, const SinkhornOptions& opt, const double* x,
                   const double* a, const double* f, const double* g, const double* u,
                   double* out) {
    const SinkhornProblem& pr = spec.problem;
    const SinkhornTask task = pr.task(opt, spec.squash);
    const std::size_t n = spec.n, m = pr.y.size();
    if (task.kind == SinkhornKind::plan) {
      col_.jvp(task, x, a, n, f, g, u, out);
      rescaled_.note(col_);
      return;
    }
    const bool row = task.kind == SinkhornKind::row;
    if (!obs_.gather(x, a, n)) {
      buffer_.resize(row ? n : m);
      col_.jvp(task, x, a, n, f, g, u, buffer_.data());
      if (row) std::copy(buffer_.begin(), buffer_.end(), out);
    } else {
      const std::size_t q = obs_.idx.size();
      obs_f_.resize(q);
      obs_v_.resize(q);
      for (std::size_t k = 0; k < q; ++k) {
        obs_f_[k] = f[obs_.idx[k]];
        obs_v_[k] = u[obs_.idx[k]];
      }
      buffer_.resize(row ? q : m);
      col_.jvp(task, obs_.x.data(), obs_.a.data(), q, obs_f_.data(), g, obs_v_.data(),
               buffer_.data());
      if (row) {
        std::fill(out, out + n, 0.0);
        for (std::size_t k = 0; k < q; ++k) out[obs_.idx[k]] = buffer_[k];
      }
    }
    rescaled_.note(col_);
    if (row) {
      if (spec.output == SinkhornOutput::rank) {
        for (std::size_t i = 0; i < n; ++i) out[i] *= static_cast<double>(n);
      }
    } else if (pr.rows.empty()) {
      std::copy(buffer_.begin(), buffer_.begin() + m, out);
    } else {
      for (std::size_t r = 0; r < pr.rows.size(); ++r) out[r] = buffer_[pr.rows[r]];
    }
  }

  SinkhornColumn col_;
  ObservedValues obs_;
  SinkhornRescaled rescaled_;
  std::vector<double> buffer_, cot_, obs_f_, obs_v_, obs_xbar_, xbar_, column_b_, column_w_,
      negated_x_, negated_u_, flipped_;
};

// One stored column of an operator through the contract of operator.hpp:
// the caller keeps the column's input and the potentials of its forward pass
// (SinkhornOperator::forward); the view computes the products with a
// workspace (a SinkhornOperator of the calling thread), adds the first
// problem's target gradients to bbar and wbar (when given, targets() values
// each, for vjp) and records the inputs it rescaled (when `rescaled` is
// given).
class SinkhornColumnView {
 public:
  struct Column {
    const double* x;
    const double* f;
    const double* g;
    double* bbar = nullptr;
    double* wbar = nullptr;
    SinkhornRescaled* rescaled = nullptr;
  };

  SinkhornColumnView(SinkhornOperator& work, const SinkhornSpec& spec, const SinkhornOptions& opt,
                     const double* a, const Column& column)
      : work_(&work), spec_(&spec), opt_(&opt), a_(a), col_(column) {}

  std::size_t input_size() const { return spec_->n; }
  std::size_t output_size() const { return spec_->output_rows(); }

  // xbar = J^T v (input_size() values).
  void vjp(const double* v, double* xbar) {
    const std::size_t m = spec_->targets();
    if (col_.bbar == nullptr) scratch_b_.assign(m, 0.0);
    if (col_.wbar == nullptr) scratch_w_.assign(m, 0.0);
    work_->reset_rescaled();
    work_->vjp(*spec_, *opt_, col_.x, a_, col_.f, col_.g, v, xbar,
               col_.bbar != nullptr ? col_.bbar : scratch_b_.data(),
               col_.wbar != nullptr ? col_.wbar : scratch_w_.data());
    note();
  }

  // out = J u (output_size() values).
  void jvp(const double* u, double* out) {
    work_->reset_rescaled();
    work_->jvp(*spec_, *opt_, col_.x, a_, col_.f, col_.g, u, out);
    note();
  }

 private:
  void note() {
    if (col_.rescaled != nullptr) col_.rescaled->merge(work_->rescaled());
  }

  SinkhornOperator* work_;
  const SinkhornSpec* spec_;
  const SinkhornOptions* opt_;
  const double* a_;
  Column col_;
  std::vector<double> scratch_b_, scratch_w_;
};

static_assert(is_column_operator<SinkhornColumnView>::value,
              "SinkhornColumnView must meet the operator contract (operator.hpp)");

// The gradients of the user's inputs from bbar and wbar summed over columns
// (targets() values each): raw target weights, of which b = raw / sum(raw)
// with sum(raw) = raw_sum (raw_grad), and target values in the user's order
// (target_grad).
inline void sinkhorn_target_gradients(const SinkhornSpec& spec, const double* bbar,
                                      const double* wbar, double raw_sum, double* raw_grad,
                                      double* target_grad) {
  const SinkhornProblem& first = spec.problem;
  const std::size_t m = first.y.size();
  // b = raw / sum(raw): the gauge constant of b's gradient cancels here
  const double mean_b = simplex_gauge(first.b.data(), bbar, m);
  for (std::size_t l = 0; l < m; ++l) raw_grad[l] = (bbar[l] - mean_b) / raw_sum;
  for (std::size_t l = 0; l < m; ++l) {
    target_grad[spec.target_order.empty() ? l : spec.target_order[l]] = wbar[l];
  }
}

}  // namespace diffrank
