// Glue for the Sinkhorn sorting operators; arguments are checked in
// R/sinkhorn.R. Columns of x are independent problems spread over threads;
// with fewer columns than threads, the threads share the rows of each problem
// instead (SinkhornOptions::run_parts), with the same results.
// Every operator is a set of transport problems per column (one, or one per
// quantile level), described by the R wrapper and kept, with the potentials
// of the forward pass, in one state behind a handle for the VJP.
#include <Rcpp.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <diffrank/sinkhorn.hpp>
#include <functional>
#include <string>
#include <vector>

#include "glue.h"
#include "parallel.h"

namespace {

enum class Output { rank, cdf, sort, quantile, topk, normalize };

// One transport problem, the same for every column: m sorted targets y with
// weights b; for the row kind, the values w averaged per input value (w =
// cumsum(b) for ranks and CDFs, so that the gradient with respect to b also
// flows through w). For the column kind, `row` is the output row of the
// quantile operator (the middle target), or -1 for sorts (all m rows).
struct Problem {
  std::vector<double> y, b, w;
  bool w_is_cumsum = false;
  int row = -1;
  diffrank::SinkhornTask task(const diffrank::SinkhornOptions& opt, bool squash) const {
    diffrank::SinkhornTask t;
    t.y = y.data();
    t.b = b.data();
    t.m = y.size();
    t.kind = w.empty() ? diffrank::SinkhornKind::col : diffrank::SinkhornKind::row;
    t.w = w.empty() ? nullptr : w.data();
    t.squash = squash;
    t.opt = opt;
    return t;
  }
};

struct SinkhornState {
  Output output = Output::rank;
  diffrank::SinkhornOptions opt;
  bool squash = true;
  std::size_t n = 0, columns = 0, rows_out = 0;
  std::vector<double> x, a;
  std::vector<Problem> problems;
  // potentials of problem p, column j: f at ((p * columns + j) * n), g at
  // offset_g[p] + j * m_p
  std::vector<double> f, g;
  std::vector<std::size_t> offset_g;
};

Output parse_output(const std::string& kind) {
  return diffrank_glue::parse_choice<Output>(kind, "kind",
                                             {{"rank", Output::rank},
                                              {"cdf", Output::cdf},
                                              {"sort", Output::sort},
                                              {"quantile", Output::quantile},
                                              {"topk", Output::topk},
                                              {"normalize", Output::normalize}});
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
// progress (and, optionally, banded and warm_start).
void read_options(const Rcpp::List& options, SinkhornState& st) {
  using diffrank_glue::option;
  st.opt.eps = option<double>(options, "eps");
  st.opt.power = option<double>(options, "power");
  st.opt.tol = option<double>(options, "tol");
  st.opt.max_iter = option<int>(options, "max_iter");
  st.squash = diffrank_glue::parse_choice<bool>(option<std::string>(options, "scale"), "scale",
                                                {{"squash", true}, {"none", false}});
  // for tests and benchmarks: every kernel entry instead of the band, and eps
  // scaling instead of the warm start from the hard sort
  if (options.containsElementNamed("banded")) st.opt.banded = option<bool>(options, "banded");
  if (options.containsElementNamed("warm_start")) {
    st.opt.warm_start = option<bool>(options, "warm_start");
    st.opt.scaling = !st.opt.warm_start;
  }
}

void read_problems(const Rcpp::List& problems, SinkhornState& st) {
  st.problems.resize(problems.size());
  for (R_xlen_t p = 0; p < problems.size(); ++p) {
    const Rcpp::List spec(problems[p]);
    Problem& pr = st.problems[p];
    pr.y = as_vector(spec["y"]);
    pr.b = as_vector(spec["b"]);
    pr.w_is_cumsum = Rcpp::as<bool>(spec["cumsum"]);
    pr.row = Rcpp::as<int>(spec["row"]);
    if (pr.w_is_cumsum) {
      pr.w.resize(pr.b.size());
      double total = 0.0;
      for (std::size_t l = 0; l < pr.b.size(); ++l) pr.w[l] = total += pr.b[l];
    } else {
      pr.w = as_vector(spec["w"]);
    }
  }
}

std::size_t output_rows(const SinkhornState& st) {
  switch (st.output) {
    case Output::sort: return st.problems[0].y.size();
    case Output::quantile: return st.problems.size();
    default: return st.n;
  }
}

// A column with missing values (NaN, which includes NA) is solved on its
// observed values only, their weights renormalized (gather); the other
// buffers carry potentials, cotangents and results between the two orders.
struct Observed : diffrank::ObservedValues {
  std::vector<double> f, v, out, xbar;
};

// Forward pass of problem p on column j: writes the operator's output rows
// of that problem into out (the column of the value) and keeps the
// potentials. For a quantile problem, `means` (when given) receives the mean
// value sent to each of its targets, at the problem's offset in the column.
diffrank::SinkhornStatus forward_one(SinkhornState& st, const diffrank::SinkhornOptions& opt,
                                     std::size_t p, std::size_t j, diffrank::SinkhornColumn& col,
                                     Observed& obs, std::vector<double>& buffer, double* out,
                                     double* means) {
  const Problem& pr = st.problems[p];
  const diffrank::SinkhornTask task = pr.task(opt, st.squash);
  const std::size_t n = st.n, m = pr.y.size();
  const double* xj = st.x.data() + j * n;
  double* f = st.f.data() + (p * st.columns + j) * n;
  double* g = st.g.data() + st.offset_g[p] + j * m;
  const bool row = task.kind == diffrank::SinkhornKind::row;
  diffrank::SinkhornStatus status;
  if (!obs.gather(xj, st.a.data(), n)) {
    buffer.resize(row ? n : m);
    status = col.forward(task, xj, st.a.data(), n, buffer.data(), f, g);
    if (row) std::copy(buffer.begin(), buffer.end(), out);
  } else {
    const std::size_t q = obs.idx.size();
    buffer.resize(row ? q : m);
    obs.f.resize(q);
    status = col.forward(task, obs.x.data(), obs.a.data(), q, buffer.data(), obs.f.data(), g);
    for (std::size_t k = 0; k < q; ++k) f[obs.idx[k]] = obs.f[k];
    if (row) {
      for (std::size_t k = 0; k < q; ++k) out[obs.idx[k]] = buffer[k];
    }
  }
  if (!row) {
    if (pr.row < 0) {
      std::copy(buffer.begin(), buffer.begin() + m, out);
    } else {
      out[p] = buffer[pr.row];
      if (means != nullptr) {
        std::copy(buffer.begin(), buffer.begin() + m, means + st.offset_g[p] / st.columns);
      }
    }
  }
  return status;
}

// CDF values may come out an ulp above 1; ranks are n times the CDF.
void finish_column(const SinkhornState& st, double* out) {
  if (st.output != Output::rank && st.output != Output::cdf) return;
  const double factor = st.output == Output::rank ? static_cast<double>(st.n) : 1.0;
  for (std::size_t i = 0; i < st.n; ++i) {
    if (!std::isnan(out[i])) out[i] = factor * std::min(out[i], 1.0);
  }
}

// Which inputs of a column were rescaled by a power of two for its
// derivatives (see diffrank::range_exponent): R names them when a result is
// still not finite.
struct Rescaled {
  bool x = false, v = false, w = false;
  void note(const diffrank::SinkhornColumn& col) {
    x = x || col.x_exponent() != 0;
    v = v || col.v_exponent() != 0;
    w = w || col.w_exponent() != 0;
  }
};

// VJP of problem p on column j for the cotangent column v: adds to xbar and
// writes the gradients of the problem's b and w into bbar and wbar.
void vjp_one(const SinkhornState& st, const diffrank::SinkhornOptions& opt, std::size_t p,
             std::size_t j, const double* v, diffrank::SinkhornColumn& col, Observed& obs,
             std::vector<double>& cot, double* xbar, double* bbar, double* wbar,
             Rescaled& rescaled) {
  const Problem& pr = st.problems[p];
  const diffrank::SinkhornTask task = pr.task(opt, st.squash);
  const std::size_t n = st.n, m = pr.y.size();
  const bool row = task.kind == diffrank::SinkhornKind::row;
  const double* xj = st.x.data() + j * n;
  const double* f = st.f.data() + (p * st.columns + j) * n;
  const double* g = st.g.data() + st.offset_g[p] + j * m;
  const double factor = st.output == Output::rank ? static_cast<double>(n) : 1.0;
  // the cotangent of this problem's own output (times factor, applied by
  // the core)
  if (row) {
    cot.assign(v, v + n);
  } else if (pr.row < 0) {
    cot.assign(v, v + m);
  } else {
    cot.assign(m, 0.0);
    cot[pr.row] = v[p];
  }
  if (!obs.gather(xj, st.a.data(), n)) {
    col.vjp(task, xj, st.a.data(), n, f, g, cot.data(), xbar, bbar, wbar, factor);
    rescaled.note(col);
    return;
  }
  // missing values get a zero gradient: the output does not depend on them
  const std::size_t q = obs.idx.size();
  obs.f.resize(q);
  obs.xbar.assign(q, 0.0);
  for (std::size_t k = 0; k < q; ++k) obs.f[k] = f[obs.idx[k]];
  if (row) {
    obs.v.resize(q);
    for (std::size_t k = 0; k < q; ++k) obs.v[k] = cot[obs.idx[k]];
  }
  col.vjp(task, obs.x.data(), obs.a.data(), q, obs.f.data(), g, row ? obs.v.data() : cot.data(),
          obs.xbar.data(), bbar, wbar, factor);
  rescaled.note(col);
  for (std::size_t k = 0; k < q; ++k) xbar[obs.idx[k]] += obs.xbar[k];
}

// JVP of problem p on column j for the tangent column u (n values): writes
// the problem's output rows of the column's tangent into out (0 for missing
// values, whose output is constant).
void jvp_one(const SinkhornState& st, const diffrank::SinkhornOptions& opt, std::size_t p,
             std::size_t j, const double* u, diffrank::SinkhornColumn& col, Observed& obs,
             std::vector<double>& buffer, double* out, Rescaled& rescaled) {
  const Problem& pr = st.problems[p];
  const diffrank::SinkhornTask task = pr.task(opt, st.squash);
  const std::size_t n = st.n, m = pr.y.size();
  const bool row = task.kind == diffrank::SinkhornKind::row;
  const double* xj = st.x.data() + j * n;
  const double* f = st.f.data() + (p * st.columns + j) * n;
  const double* g = st.g.data() + st.offset_g[p] + j * m;
  if (!obs.gather(xj, st.a.data(), n)) {
    buffer.resize(row ? n : m);
    col.jvp(task, xj, st.a.data(), n, f, g, u, buffer.data());
    if (row) std::copy(buffer.begin(), buffer.end(), out);
  } else {
    const std::size_t q = obs.idx.size();
    obs.f.resize(q);
    obs.v.resize(q);
    for (std::size_t k = 0; k < q; ++k) {
      obs.f[k] = f[obs.idx[k]];
      obs.v[k] = u[obs.idx[k]];
    }
    buffer.resize(row ? q : m);
    col.jvp(task, obs.x.data(), obs.a.data(), q, obs.f.data(), g, obs.v.data(), buffer.data());
    if (row) {
      std::fill(out, out + n, 0.0);
      for (std::size_t k = 0; k < q; ++k) out[obs.idx[k]] = buffer[k];
    }
  }
  rescaled.note(col);
  if (row) {
    if (st.output == Output::rank) {
      for (std::size_t i = 0; i < n; ++i) out[i] *= static_cast<double>(n);
    }
  } else if (pr.row < 0) {
    std::copy(buffer.begin(), buffer.begin() + m, out);
  } else {
    out[p] = buffer[pr.row];
  }
}

// Columns per batch: the main thread checks for an interrupt (and updates the
// progress line) between batches, so a batch is kept to about 1e7 kernel
// entries per iteration (a fraction of a second), between one column per
// thread and 64 columns.
std::size_t columns_per_batch(const SinkhornState& st, int threads) {
  double entries = 0.0;
  for (const Problem& pr : st.problems) {
    entries += static_cast<double>(st.n) * static_cast<double>(pr.y.size());
  }
  const double fit = 1e7 / std::max(entries, 1.0);
  const double columns = std::min(64.0, std::max(static_cast<double>(threads), fit));
  return static_cast<std::size_t>(columns);
}

}  // namespace

// Forward pass of a Sinkhorn operator on every column of x: the value
// (output rows x columns), the convergence of every column (iterations summed
// and error maximized over its problems) and the state for the VJP.
// [[Rcpp::export(rng = false)]]
Rcpp::List sinkhorn_forward_cpp(Rcpp::NumericMatrix x, Rcpp::NumericVector a, std::string kind,
                                Rcpp::List problems, Rcpp::List options, int threads) {
  Rcpp::XPtr<SinkhornState> handle = diffrank_glue::make_handle(new SinkhornState());
  SinkhornState& st = *handle;
  st.output = parse_output(kind);
  read_options(options, st);
  read_problems(problems, st);
  st.n = x.nrow();
  st.columns = x.ncol();
  st.x.assign(x.begin(), x.end());
  st.a.assign(a.begin(), a.end());
  st.rows_out = output_rows(st);
  std::size_t total_g = 0;
  for (const Problem& pr : st.problems) {
    st.offset_g.push_back(total_g);
    total_g += pr.y.size() * st.columns;
  }
  st.f.assign(st.problems.size() * st.columns * st.n, NA_REAL);
  st.g.assign(total_g, 0.0);

  Rcpp::NumericMatrix value(st.rows_out, st.columns);
  std::fill(value.begin(), value.end(), NA_REAL);
  double* vp = value.begin();
  // the mean value sent to every target of every quantile problem: what
  // R/sinkhorn.R judges a near-constant result by (one level has one value)
  const bool quantile = st.output == Output::quantile;
  const std::size_t means_rows = quantile && st.columns > 0 ? total_g / st.columns : 0;
  Rcpp::NumericMatrix means(means_rows, quantile ? st.columns : 0);
  double* mp = quantile ? means.begin() : nullptr;
  std::vector<diffrank::SinkhornStatus> status(st.columns);
  diffrank_glue::ProgressLine progress(diffrank_glue::option<bool>(options, "progress"),
                                       "Sinkhorn", "columns", st.columns);
  diffrank_glue::InterruptPoll interrupt;
  diffrank::SinkhornOptions opt = st.opt;
  opt.poll = interrupt.callback();
  const int column_threads = share_rows(opt, st.columns, threads) ? 1 : threads;
  diffrank_glue::parallel_batches(
      st.columns, column_threads, 1, columns_per_batch(st, column_threads),
      [&](std::size_t j0, std::size_t j1) {
        diffrank::SinkhornColumn col;
        Observed obs;
        std::vector<double> buffer;
        for (std::size_t j = j0; j < j1; ++j) {
          diffrank::SinkhornStatus& s = status[j];
          s.converged = true;
          s.error = 0.0;
          for (std::size_t p = 0; p < st.problems.size(); ++p) {
            const diffrank::SinkhornStatus one =
                forward_one(st, opt, p, j, col, obs, buffer, vp + j * st.rows_out,
                            mp == nullptr ? nullptr : mp + j * means_rows);
            s.iterations += one.iterations;
            s.error = std::max(s.error, one.error);
            s.converged = s.converged && one.converged;
            s.entries += one.entries;
          }
          finish_column(st, vp + j * st.rows_out);
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
// column order, for the target weights b (of the single problem, before the
// normalization b = raw / sum(raw), whose sum is `raw_sum`) and for the
// target values w (normalize only).
// [[Rcpp::export(rng = false)]]
Rcpp::List sinkhorn_vjp_cpp(SEXP state, Rcpp::NumericMatrix v, double raw_sum, int threads) {
  const SinkhornState& st = *diffrank_glue::handle_state<SinkhornState>(state);
  const std::size_t n = st.n, columns = st.columns;
  Rcpp::NumericMatrix xbar(n, columns);
  // per column, the b and w gradients of the first problem (the only one
  // except for quantiles, whose targets are not parameters)
  const std::size_t m = st.problems[0].y.size();
  std::vector<double> bbar(m * columns, 0.0), wbar(m * columns, 0.0);
  const double* vp = v.begin();
  double* xb = xbar.begin();
  std::vector<Rescaled> rescaled(columns);
  diffrank_glue::InterruptPoll interrupt;
  diffrank::SinkhornOptions opt = st.opt;
  opt.poll = interrupt.callback();
  const int column_threads = share_rows(opt, columns, threads) ? 1 : threads;
  diffrank_glue::parallel_batches(
      columns, column_threads, 1, columns_per_batch(st, column_threads),
      [&](std::size_t j0, std::size_t j1) {
        diffrank::SinkhornColumn col;
        Observed obs;
        std::vector<double> cot, scratch_b, scratch_w;
        for (std::size_t j = j0; j < j1; ++j) {
          for (std::size_t p = 0; p < st.problems.size(); ++p) {
            const std::size_t mp = st.problems[p].y.size();
            double* bb = bbar.data() + j * m;
            double* wb = wbar.data() + j * m;
            if (p > 0) {
              scratch_b.assign(mp, 0.0);
              scratch_w.assign(mp, 0.0);
              bb = scratch_b.data();
              wb = scratch_w.data();
            }
            vjp_one(st, opt, p, j, vp + j * st.rows_out, col, obs, cot, xb + j * n, bb, wb,
                    rescaled[j]);
          }
        }
      });

  const Problem& first = st.problems[0];
  Rcpp::NumericVector b_sum(m, 0.0), w_sum(m, 0.0);
  for (std::size_t j = 0; j < columns; ++j) {
    double tail = 0.0;
    for (std::size_t l = m; l-- > 0;) {
      // w = cumsum(b): d/db_l gets every d/dw_k with k >= l
      tail += first.w_is_cumsum ? wbar[j * m + l] : 0.0;
      b_sum[l] += bbar[j * m + l] + tail;
      w_sum[l] += wbar[j * m + l];
    }
  }
  // b = raw / sum(raw): the gauge constant of b's gradient cancels here
  double mean_b = 0.0;
  for (std::size_t l = 0; l < m; ++l) mean_b += first.b[l] * b_sum[l];
  Rcpp::NumericVector raw_grad(m);
  for (std::size_t l = 0; l < m; ++l) raw_grad[l] = (b_sum[l] - mean_b) / raw_sum;
  Rescaled any;
  for (const Rescaled& r : rescaled) {
    any.x = any.x || r.x;
    any.v = any.v || r.v;
    any.w = any.w || r.w;
  }
  return Rcpp::List::create(Rcpp::Named("x") = xbar, Rcpp::Named("target_weights") = raw_grad,
                            Rcpp::Named("target") = w_sum, Rcpp::Named("x_scaled") = any.x,
                            Rcpp::Named("v_scaled") = any.v, Rcpp::Named("target_scaled") = any.w);
}

// Implicit JVP at the stored forward pass for the tangent u of x (n x
// columns): the tangent of the value (output rows x columns), and whether x
// or u were rescaled in some column (see diffrank::range_exponent).
// [[Rcpp::export(rng = false)]]
Rcpp::List sinkhorn_jvp_cpp(SEXP state, Rcpp::NumericMatrix u, int threads) {
  const SinkhornState& st = *diffrank_glue::handle_state<SinkhornState>(state);
  const std::size_t n = st.n, columns = st.columns;
  Rcpp::NumericMatrix value(st.rows_out, columns);
  const double* up = u.begin();
  double* out = value.begin();
  std::vector<Rescaled> rescaled(columns);
  diffrank_glue::InterruptPoll interrupt;
  diffrank::SinkhornOptions opt = st.opt;
  opt.poll = interrupt.callback();
  const int column_threads = share_rows(opt, columns, threads) ? 1 : threads;
  diffrank_glue::parallel_batches(
      columns, column_threads, 1, columns_per_batch(st, column_threads),
      [&](std::size_t j0, std::size_t j1) {
        diffrank::SinkhornColumn col;
        Observed obs;
        std::vector<double> buffer;
        for (std::size_t j = j0; j < j1; ++j) {
          for (std::size_t p = 0; p < st.problems.size(); ++p) {
            jvp_one(st, opt, p, j, up + j * n, col, obs, buffer, out + j * st.rows_out,
                    rescaled[j]);
          }
        }
      });
  Rescaled any;
  for (const Rescaled& r : rescaled) {
    any.x = any.x || r.x;
    any.v = any.v || r.v;
    any.w = any.w || r.w;
  }
  return Rcpp::List::create(Rcpp::Named("value") = value, Rcpp::Named("x_scaled") = any.x,
                            Rcpp::Named("u_scaled") = any.v, Rcpp::Named("target_scaled") = any.w);
}

// Reference VJP by differentiating `iterations` dense iterations (one column,
// one problem), for tests.
// [[Rcpp::export(rng = false)]]
Rcpp::List sinkhorn_unrolled_cpp(Rcpp::NumericVector x, Rcpp::NumericVector a,
                                 Rcpp::List problem, Rcpp::List options, int iterations,
                                 Rcpp::NumericVector v) {
  SinkhornState st;
  read_options(options, st);
  read_problems(Rcpp::List::create(problem), st);
  const Problem& pr = st.problems[0];
  diffrank::SinkhornTask task = pr.task(st.opt, st.squash);
  const std::size_t n = x.size(), m = pr.y.size();
  const std::size_t rows_v = task.kind == diffrank::SinkhornKind::row ? n : m;
  Rcpp::NumericVector value(rows_v), xbar(n), bbar(m), wbar(m);
  diffrank::SinkhornColumn col;
  col.vjp_unrolled(task, x.begin(), a.begin(), n, iterations, v.begin(), value.begin(),
                   xbar.begin(), bbar.begin(), wbar.begin());
  return Rcpp::List::create(Rcpp::Named("value") = value, Rcpp::Named("x") = xbar,
                            Rcpp::Named("b") = bbar, Rcpp::Named("w") = wbar);
}

// The transport plan of one column (n x m), for small problems and tests.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericMatrix sinkhorn_plan_cpp(Rcpp::NumericVector x, Rcpp::NumericVector a,
                                      Rcpp::List problem, Rcpp::List options) {
  SinkhornState st;
  read_options(options, st);
  read_problems(Rcpp::List::create(problem), st);
  diffrank::SinkhornTask task = st.problems[0].task(st.opt, st.squash);
  task.kind = diffrank::SinkhornKind::col;
  const std::size_t n = x.size(), m = task.m;
  Rcpp::NumericMatrix plan(n, m);
  diffrank::SinkhornColumn col;
  col.plan(task, x.begin(), a.begin(), n, plan.begin());
  return plan;
}
