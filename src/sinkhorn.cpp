// Glue for the Sinkhorn sorting operators; arguments are checked in
// R/sinkhorn.R. Columns of x are independent problems spread over threads.
#include <Rcpp.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <diffrank/sinkhorn.hpp>
#include <string>
#include <vector>

#include "parallel.h"

namespace {

struct Inputs {
  diffrank::SinkhornTask task;
  Rcpp::NumericVector y, b, w;
};

void fill_task(Inputs& in, Rcpp::NumericVector y, Rcpp::NumericVector b,
               Rcpp::Nullable<Rcpp::NumericVector> w, double eps, double power, double tol,
               int max_iter, bool squash, bool banded, bool warm_start = true) {
  in.y = y;
  in.b = b;
  in.task.y = in.y.begin();
  in.task.b = in.b.begin();
  in.task.m = y.size();
  if (w.isNotNull()) {
    in.w = Rcpp::NumericVector(w.get());
    in.task.w = in.w.begin();
    in.task.kind = diffrank::SinkhornKind::row;
  } else {
    in.task.kind = diffrank::SinkhornKind::col;
  }
  in.task.squash = squash;
  in.task.opt.eps = eps;
  in.task.opt.power = power;
  in.task.opt.tol = tol;
  in.task.opt.max_iter = max_iter;
  in.task.opt.banded = banded;
  // without the warm start, eps decreases geometrically from 1 to eps instead
  in.task.opt.warm_start = warm_start;
  in.task.opt.scaling = !warm_start;
}

// A column with missing values (NaN, which includes NA) is solved on its
// observed values only, their weights renormalized (gather); the other
// buffers carry potentials, cotangents and results between the two orders.
struct Observed : diffrank::ObservedValues {
  std::vector<double> f, v, out, xbar;
};

}  // namespace

// Forward pass: the operator's values (n x N for the row kind, m x N for the
// column kind, selected by whether w is given), the potentials and the
// convergence information of every column.
// [[Rcpp::export(rng = false)]]
Rcpp::List sinkhorn_forward_cpp(Rcpp::NumericMatrix x, Rcpp::NumericVector a, Rcpp::NumericVector y,
                                Rcpp::NumericVector b, Rcpp::Nullable<Rcpp::NumericVector> w,
                                double eps, double power, double tol, int max_iter, bool squash,
                                int threads, bool banded = true, bool warm_start = true) {
  Inputs in;
  fill_task(in, y, b, w, eps, power, tol, max_iter, squash, banded, warm_start);
  const std::size_t n = x.nrow(), N = x.ncol(), m = in.task.m;
  const std::size_t rows_out = in.task.kind == diffrank::SinkhornKind::row ? n : m;
  Rcpp::NumericMatrix value(rows_out, N), f(n, N), g(m, N);
  Rcpp::IntegerVector iterations(N);
  Rcpp::NumericVector error(N), entries(N);
  Rcpp::LogicalVector converged(N);
  const double* xp = x.begin();
  const double* ap = a.begin();
  double* vp = value.begin();
  double* fp = f.begin();
  double* gp = g.begin();
  std::vector<diffrank::SinkhornStatus> status(N);
  std::fill(value.begin(), value.end(), NA_REAL);
  std::fill(f.begin(), f.end(), NA_REAL);
  const bool row = in.task.kind == diffrank::SinkhornKind::row;
  diffrank_glue::parallel_for(
      N, threads,
      [&](std::size_t j0, std::size_t j1) {
        diffrank::SinkhornColumn col;
        Observed obs;
        for (std::size_t j = j0; j < j1; ++j) {
          if (!obs.gather(xp + j * n, ap, n)) {
            status[j] = col.forward(in.task, xp + j * n, ap, n, vp + j * rows_out, fp + j * n,
                                    gp + j * m);
            continue;
          }
          const std::size_t q = obs.idx.size();
          obs.out.resize(row ? q : m);
          obs.f.resize(q);
          status[j] = col.forward(in.task, obs.x.data(), obs.a.data(), q, obs.out.data(),
                                  obs.f.data(), gp + j * m);
          for (std::size_t k = 0; k < q; ++k) fp[j * n + obs.idx[k]] = obs.f[k];
          if (row) {
            for (std::size_t k = 0; k < q; ++k) vp[j * rows_out + obs.idx[k]] = obs.out[k];
          } else {
            std::copy(obs.out.begin(), obs.out.end(), vp + j * rows_out);
          }
        }
      },
      1, 64);
  for (std::size_t j = 0; j < N; ++j) {
    iterations[j] = status[j].iterations;
    error[j] = status[j].error;
    converged[j] = status[j].converged;
    entries[j] = status[j].entries;
  }
  return Rcpp::List::create(Rcpp::Named("value") = value, Rcpp::Named("f") = f,
                            Rcpp::Named("g") = g, Rcpp::Named("iterations") = iterations,
                            Rcpp::Named("error") = error, Rcpp::Named("converged") = converged,
                            Rcpp::Named("entries") = entries);
}

// Implicit VJP at the potentials of a forward pass, for the cotangent v (of
// the shape of the forward value): gradients for x (n x N), for b and for w
// (m x N each, b's defined up to a constant per column).
// [[Rcpp::export(rng = false)]]
Rcpp::List sinkhorn_vjp_cpp(Rcpp::NumericMatrix x, Rcpp::NumericVector a, Rcpp::NumericVector y,
                            Rcpp::NumericVector b, Rcpp::Nullable<Rcpp::NumericVector> w,
                            double eps, double power, bool squash, Rcpp::NumericMatrix f,
                            Rcpp::NumericMatrix g, Rcpp::NumericMatrix v, int threads) {
  Inputs in;
  fill_task(in, y, b, w, eps, power, 0.0, 1, squash, true);
  const std::size_t n = x.nrow(), N = x.ncol(), m = in.task.m;
  const bool row = in.task.kind == diffrank::SinkhornKind::row;
  const std::size_t rows_v = row ? n : m;
  Rcpp::NumericMatrix xbar(n, N), bbar(m, N), wbar(m, N);
  const double* xp = x.begin();
  const double* ap = a.begin();
  const double* fp = f.begin();
  const double* gp = g.begin();
  const double* vp = v.begin();
  double* xb = xbar.begin();
  double* bb = bbar.begin();
  double* wb = wbar.begin();
  diffrank_glue::parallel_for(
      N, threads,
      [&](std::size_t j0, std::size_t j1) {
        diffrank::SinkhornColumn col;
        Observed obs;
        for (std::size_t j = j0; j < j1; ++j) {
          if (!obs.gather(xp + j * n, ap, n)) {
            col.vjp(in.task, xp + j * n, ap, n, fp + j * n, gp + j * m, vp + j * rows_v,
                    xb + j * n, bb + j * m, wb + j * m);
            continue;
          }
          // missing values get a zero gradient: the output does not depend on them
          const std::size_t q = obs.idx.size();
          obs.f.resize(q);
          obs.xbar.assign(q, 0.0);
          for (std::size_t k = 0; k < q; ++k) obs.f[k] = fp[j * n + obs.idx[k]];
          const double* vj = vp + j * rows_v;
          if (row) {
            obs.v.resize(q);
            for (std::size_t k = 0; k < q; ++k) obs.v[k] = vj[obs.idx[k]];
            vj = obs.v.data();
          }
          col.vjp(in.task, obs.x.data(), obs.a.data(), q, obs.f.data(), gp + j * m, vj,
                  obs.xbar.data(), bb + j * m, wb + j * m);
          for (std::size_t k = 0; k < q; ++k) xb[j * n + obs.idx[k]] = obs.xbar[k];
        }
      },
      1, 64);
  return Rcpp::List::create(Rcpp::Named("x") = xbar, Rcpp::Named("b") = bbar,
                            Rcpp::Named("w") = wbar);
}

// Reference VJP by differentiating `iterations` dense iterations (one column).
// [[Rcpp::export(rng = false)]]
Rcpp::List sinkhorn_unrolled_cpp(Rcpp::NumericVector x, Rcpp::NumericVector a, Rcpp::NumericVector y,
                                 Rcpp::NumericVector b, Rcpp::Nullable<Rcpp::NumericVector> w,
                                 double eps, double power, bool squash, int iterations,
                                 Rcpp::NumericVector v) {
  Inputs in;
  fill_task(in, y, b, w, eps, power, 0.0, 1, squash, false);
  const std::size_t n = x.size(), m = in.task.m;
  const std::size_t rows_v = in.task.kind == diffrank::SinkhornKind::row ? n : m;
  Rcpp::NumericVector value(rows_v), xbar(n), bbar(m), wbar(m);
  diffrank::SinkhornColumn col;
  col.vjp_unrolled(in.task, x.begin(), a.begin(), n, iterations, v.begin(), value.begin(),
                   xbar.begin(), bbar.begin(), wbar.begin());
  return Rcpp::List::create(Rcpp::Named("value") = value, Rcpp::Named("x") = xbar,
                            Rcpp::Named("b") = bbar, Rcpp::Named("w") = wbar);
}

// The transport plan of one column (n x m), for small problems and tests.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericMatrix sinkhorn_plan_cpp(Rcpp::NumericVector x, Rcpp::NumericVector a,
                                      Rcpp::NumericVector y, Rcpp::NumericVector b, double eps,
                                      double power, double tol, int max_iter, bool squash) {
  Inputs in;
  fill_task(in, y, b, R_NilValue, eps, power, tol, max_iter, squash, true);
  const std::size_t n = x.size(), m = in.task.m;
  Rcpp::NumericMatrix plan(n, m);
  diffrank::SinkhornColumn col;
  col.plan(in.task, x.begin(), a.begin(), n, plan.begin());
  return plan;
}
