// Glue for the Sinkhorn sorting operators; arguments are checked in
// R/sinkhorn.R. Columns of x are independent problems spread over threads;
// with fewer columns than threads, the threads share the rows of each problem
// instead (SinkhornOptions::run_parts), with the same results.
// An operator (inst/include/diffrank/sinkhorn_operator.hpp) is described by
// the R wrapper and kept, with the potentials of the forward pass, in one
// state behind a handle for the VJP and JVP.
#include <Rcpp.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <diffrank/sinkhorn_operator.hpp>
#include <functional>
#include <string>
#include <vector>

#include "glue.h"
#include "operator_glue.h"
#include "parallel.h"

namespace {

// An operator's spec and, per column, the input and the potentials of the
// forward pass (column j's f at j * f_size(), g at j * g_size()).
struct SinkhornState {
  diffrank::SinkhornSpec spec;
  std::size_t columns = 0;
  std::vector<double> x, a, f, g;
};

diffrank::SinkhornOutput parse_output(const std::string& kind) {
  using diffrank::SinkhornOutput;
  return diffrank_glue::parse_choice<SinkhornOutput>(kind, "kind",
                                                     {{"rank", SinkhornOutput::rank},
                                                      {"cdf", SinkhornOutput::cdf},
                                                      {"sort", SinkhornOutput::sort},
                                                      {"quantile", SinkhornOutput::quantile},
                                                      {"topk", SinkhornOutput::topk},
                                                      {"normalize", SinkhornOutput::normalize},
                                                      {"plan", SinkhornOutput::plan}});
}

// The options of one run: those of the state, with the rows of each problem
// shared by `threads` threads when the columns are too few to keep them busy
// (then the caller runs the columns on one thread). Returns whether it did.
bool share_rows(diffrank::SinkhornOptions& opt, std::size_t columns, int threads) {
  const int usable = diffrank_glue::usable_threads(threads);
  if (usable <= 1 || columns >= static_cast<std::size_t>(usable)) return false;
  opt.parts = static_cast<std::size_t>(usable);
  opt.run_parts = [usable](std::size_t parts, const std::function<void(std::size_t)>& body) {
    auto range = [&](std::size_t begin, std::size_t end) {
      for (std::size_t p = begin; p < end; ++p) body(p);
    };
    diffrank_glue::run_range(parts, usable, 1, range);
  };
  return true;
}

std::vector<double> as_vector(SEXP x) {
  if (Rf_isNull(x)) return {};
  Rcpp::NumericVector v(x);
  return std::vector<double>(v.begin(), v.end());
}

// The options list of R/sinkhorn.R: eps, power, tol, max_iter, scale,
// progress, decreasing, target_order (1-based, or NULL) (and, optionally,
// banded and warm_start).
void read_options(const Rcpp::List& options, diffrank::SinkhornSpec& spec) {
  using diffrank_glue::option;
  spec.opt.eps = option<double>(options, "eps");
  spec.opt.power = option<double>(options, "power");
  spec.opt.tol = option<double>(options, "tol");
  spec.opt.max_iter = option<int>(options, "max_iter");
  spec.squash = diffrank_glue::parse_choice<bool>(option<std::string>(options, "scale"), "scale",
                                                  {{"squash", true}, {"none", false}});
  if (options.containsElementNamed("decreasing")) {
    spec.decreasing = option<bool>(options, "decreasing");
  }
  if (options.containsElementNamed("target_order") && !Rf_isNull(options["target_order"])) {
    const Rcpp::IntegerVector order(options["target_order"]);
    for (int k : order) spec.target_order.push_back(static_cast<std::size_t>(k - 1));
  }
  // for tests and benchmarks: every kernel entry instead of the band, and eps
  // scaling instead of the warm start from the hard sort
  if (options.containsElementNamed("banded")) spec.opt.banded = option<bool>(options, "banded");
  if (options.containsElementNamed("warm_start")) {
    spec.opt.warm_start = option<bool>(options, "warm_start");
    spec.opt.scaling = !spec.opt.warm_start;
  }
  // a warm start that stalls is solved again by eps scaling
  spec.opt.rescue = !options.containsElementNamed("rescue") || option<bool>(options, "rescue");
}

// The transport problem of sinkhorn_problems() (R/sinkhorn.R): the one
// element of `problems`.
void read_problem(const Rcpp::List& problems, diffrank::SinkhornSpec& spec) {
  if (problems.size() != 1) Rcpp::stop("one Sinkhorn problem expected");
  const Rcpp::List description(problems[0]);
  diffrank::SinkhornProblem& pr = spec.problem;
  pr.y = as_vector(description["y"]);
  pr.b = as_vector(description["b"]);
  pr.whole_plan = spec.output == diffrank::SinkhornOutput::plan;
  // 1-based target indices of a quantile's levels; NULL for every other kind
  if (!Rf_isNull(description["rows"])) {
    for (int r : Rcpp::IntegerVector(description["rows"])) {
      pr.rows.push_back(static_cast<std::size_t>(r - 1));
    }
  }
  if (Rcpp::as<bool>(description["cumsum"])) {
    pr.set_cumsum_weights();
  } else {
    pr.w = as_vector(description["w"]);
  }
}

// Columns per batch: the main thread checks for an interrupt (and updates the
// progress line) between batches, so a batch is kept to about 1e7 kernel
// entries per iteration (a fraction of a second), between one column per
// thread and 64 columns.
std::size_t columns_per_batch(const SinkhornState& st, int threads) {
  const double entries =
      static_cast<double>(st.spec.n) * static_cast<double>(st.spec.problem.y.size());
  const double fit = 1e7 / std::max(entries, 1.0);
  const double columns = std::min(64.0, std::max(static_cast<double>(threads), fit));
  return static_cast<std::size_t>(columns);
}

// The options of a run and how its columns are cut: over threads, or one
// after another with the rows of each shared by the threads (share_rows);
// interrupts are polled inside long columns too.
struct ColumnRun {
  diffrank::SinkhornOptions opt;
  int threads = 1;
  diffrank_glue::ColumnCuts cuts{1, 1};
};

ColumnRun column_run(const SinkhornState& st, int threads,
                     diffrank_glue::InterruptPoll& interrupt) {
  ColumnRun run;
  run.opt = st.spec.opt;
  run.opt.poll = interrupt.callback();
  run.threads = share_rows(run.opt, st.columns, threads) ? 1 : threads;
  run.cuts = {1, columns_per_batch(st, run.threads)};
  return run;
}

// Column j of a stored state through the operator contract (VJP and JVP),
// with the thread's workspace.
diffrank::SinkhornColumnView column_view(const SinkhornState& st, const ColumnRun& run,
                                         std::size_t j, diffrank::SinkhornOperator& work,
                                         double* bbar, double* wbar,
                                         diffrank::SinkhornRescaled* rescaled) {
  const diffrank::SinkhornSpec& spec = st.spec;
  return diffrank::SinkhornColumnView(work, spec, run.opt, st.a.data(),
                                      {st.x.data() + j * spec.n, st.f.data() + j * spec.f_size(),
                                       st.g.data() + j * spec.g_size(), bbar, wbar, rescaled});
}

Rcpp::List rescaled_flags(const std::vector<diffrank::SinkhornRescaled>& rescaled,
                          const char* direction) {
  diffrank::SinkhornRescaled any;
  for (const diffrank::SinkhornRescaled& r : rescaled) any.merge(r);
  return Rcpp::List::create(Rcpp::Named("x_scaled") = any.x,
                            Rcpp::Named(direction) = any.direction,
                            Rcpp::Named("target_scaled") = any.target);
}

}  // namespace

// Forward pass of a Sinkhorn operator on every column of x: the value
// (output rows x columns), the convergence of every column and the state
// for the VJP.
// [[Rcpp::export(rng = false)]]
Rcpp::List sinkhorn_forward_cpp(Rcpp::NumericMatrix x, Rcpp::NumericVector a, std::string kind,
                                Rcpp::List problems, Rcpp::List options, int threads) {
  Rcpp::XPtr<SinkhornState> handle = diffrank_glue::make_handle(new SinkhornState());
  SinkhornState& st = *handle;
  diffrank::SinkhornSpec& spec = st.spec;
  spec.output = parse_output(kind);
  read_options(options, spec);
  read_problem(problems, spec);
  spec.n = x.nrow();
  st.columns = x.ncol();
  st.x.assign(x.begin(), x.end());
  st.a.assign(a.begin(), a.end());
  const std::size_t rows_out = spec.output_rows(), f_size = spec.f_size(),
                    g_size = spec.g_size();
  st.f.assign(st.columns * f_size, NA_REAL);
  st.g.assign(st.columns * g_size, 0.0);

  Rcpp::NumericMatrix value(rows_out, st.columns);
  std::fill(value.begin(), value.end(), NA_REAL);
  double* vp = value.begin();
  // the mean value sent to every target of every quantile problem: what
  // R/sinkhorn.R judges a near-constant result by (one level has one value)
  const bool quantile = spec.output == diffrank::SinkhornOutput::quantile;
  Rcpp::NumericMatrix means(quantile ? g_size : 0, quantile ? st.columns : 0);
  double* mp = quantile ? means.begin() : nullptr;
  std::vector<diffrank::SinkhornStatus> status(st.columns);
  diffrank_glue::ProgressLine progress(diffrank_glue::option<bool>(options, "progress"),
                                       "Sinkhorn", "columns", st.columns);
  diffrank_glue::InterruptPoll interrupt;
  const ColumnRun run = column_run(st, threads, interrupt);
  diffrank_glue::parallel_batches(
      st.columns, run.threads, run.cuts.grain, run.cuts.batch,
      [&](std::size_t j0, std::size_t j1) {
        diffrank::SinkhornOperator op;
        for (std::size_t j = j0; j < j1; ++j) {
          status[j] =
              op.forward(spec, run.opt, st.x.data() + j * spec.n, st.a.data(), vp + j * rows_out,
                         st.f.data() + j * f_size, st.g.data() + j * g_size,
                         mp == nullptr ? nullptr : mp + j * g_size);
        }
      },
      progress);

  Rcpp::IntegerVector iterations(st.columns);
  Rcpp::NumericVector error(st.columns), entries(st.columns);
  Rcpp::LogicalVector converged(st.columns);
  for (std::size_t j = 0; j < st.columns; ++j) {
    iterations[j] = status[j].iterations;
    error[j] = status[j].error;
    converged[j] = status[j].converged;
    entries[j] = status[j].entries;
  }
  return Rcpp::List::create(Rcpp::Named("value") = value, Rcpp::Named("iterations") = iterations,
                            Rcpp::Named("error") = error, Rcpp::Named("converged") = converged,
                            Rcpp::Named("entries") = entries, Rcpp::Named("state") = handle,
                            Rcpp::Named("means") = means);
}

// Implicit VJP at the stored forward pass for the cotangent v (output rows x
// columns): the gradient for x (n x columns), and, summed over columns in
// column order, for the raw target weights (before the normalization
// b = raw / sum(raw), whose sum is `raw_sum`) and for the target values in
// the user's order (normalize only).
// [[Rcpp::export(rng = false)]]
Rcpp::List sinkhorn_vjp_cpp(SEXP state, Rcpp::NumericMatrix v, double raw_sum, int threads) {
  const SinkhornState& st = *diffrank_glue::handle_state<SinkhornState>(state);
  const diffrank::SinkhornSpec& spec = st.spec;
  const std::size_t n = spec.n, columns = st.columns, m = spec.targets();
  Rcpp::NumericMatrix xbar(n, columns);
  // per column, the gradients of the first problem's b and w, summed over
  // columns in column order below so that threads do not change the sums
  std::vector<double> bbar(m * columns, 0.0), wbar(m * columns, 0.0);
  const double* vp = v.begin();
  double* xb = xbar.begin();
  std::vector<diffrank::SinkhornRescaled> rescaled(columns);
  diffrank_glue::InterruptPoll interrupt;
  const ColumnRun run = column_run(st, threads, interrupt);
  diffrank_glue::column_products<diffrank::SinkhornOperator>(
      columns, vp, spec.output_rows(), xb, n, true, run.threads, run.cuts,
      [&](std::size_t j, diffrank::SinkhornOperator& work) {
        return column_view(st, run, j, work, bbar.data() + j * m, wbar.data() + j * m,
                           &rescaled[j]);
      });
  std::vector<double> b_sum(m, 0.0), w_sum(m, 0.0);
  for (std::size_t j = 0; j < columns; ++j) {
    for (std::size_t l = 0; l < m; ++l) {
      b_sum[l] += bbar[j * m + l];
      w_sum[l] += wbar[j * m + l];
    }
  }
  Rcpp::NumericVector raw_grad(m), target_grad(m);
  diffrank::sinkhorn_target_gradients(spec, b_sum.data(), w_sum.data(), raw_sum,
                                      raw_grad.begin(), target_grad.begin());
  Rcpp::List out = rescaled_flags(rescaled, "v_scaled");
  out["x"] = xbar;
  out["target_weights"] = raw_grad;
  out["target"] = target_grad;
  return out;
}

// Implicit JVP at the stored forward pass for the tangent u of x (n x
// columns): the tangent of the value (output rows x columns), and whether x
// or u were rescaled in some column (see diffrank::range_exponent).
// [[Rcpp::export(rng = false)]]
Rcpp::List sinkhorn_jvp_cpp(SEXP state, Rcpp::NumericMatrix u, int threads) {
  const SinkhornState& st = *diffrank_glue::handle_state<SinkhornState>(state);
  const diffrank::SinkhornSpec& spec = st.spec;
  const std::size_t n = spec.n, columns = st.columns, rows_out = spec.output_rows();
  Rcpp::NumericMatrix value(rows_out, columns);
  const double* up = u.begin();
  double* out = value.begin();
  std::vector<diffrank::SinkhornRescaled> rescaled(columns);
  diffrank_glue::InterruptPoll interrupt;
  const ColumnRun run = column_run(st, threads, interrupt);
  diffrank_glue::column_products<diffrank::SinkhornOperator>(
      columns, up, n, out, rows_out, false, run.threads, run.cuts,
      [&](std::size_t j, diffrank::SinkhornOperator& work) {
        return column_view(st, run, j, work, nullptr, nullptr, &rescaled[j]);
      });
  Rcpp::List flags = rescaled_flags(rescaled, "u_scaled");
  flags["value"] = value;
  return flags;
}

// Reference VJP by differentiating `iterations` dense iterations (one column,
// one problem), for tests.
// [[Rcpp::export(rng = false)]]
Rcpp::List sinkhorn_unrolled_cpp(Rcpp::NumericVector x, Rcpp::NumericVector a,
                                 Rcpp::List problem, Rcpp::List options, int iterations,
                                 Rcpp::NumericVector v) {
  diffrank::SinkhornSpec spec;
  read_options(options, spec);
  read_problem(Rcpp::List::create(problem), spec);
  const diffrank::SinkhornProblem& pr = spec.problem;
  diffrank::SinkhornTask task = pr.task(spec.opt, spec.squash);
  const std::size_t n = x.size(), m = pr.y.size();
  const std::size_t rows_v = task.kind == diffrank::SinkhornKind::row ? n : m;
  Rcpp::NumericVector value(rows_v), xbar(n), bbar(m), wbar(m);
  diffrank::SinkhornColumn col;
  col.vjp_unrolled(task, x.begin(), a.begin(), n, iterations, v.begin(), value.begin(),
                   xbar.begin(), bbar.begin(), wbar.begin());
  return Rcpp::List::create(Rcpp::Named("value") = value, Rcpp::Named("x") = xbar,
                            Rcpp::Named("b") = bbar, Rcpp::Named("w") = wbar);
}
