// Glue for quantile matrix factorization; arguments are checked in R/qmf.R,
// which also adds the penalties and runs the optimizers. Rows of a batch are
// independent problems spread over threads; V's gradient is reduced
// afterwards in row order, so results do not depend on the number of threads.
#include <Rcpp.h>

#include <algorithm>
#include <cstddef>
#include <diffrank/qmf.hpp>
#include <string>
#include <vector>

#include "glue.h"
#include "parallel.h"

namespace {

diffrank::QmfSettings qmf_settings(const Rcpp::List& options, std::size_t n, std::size_t k,
                                   std::size_t m) {
  using diffrank_glue::option;
  diffrank::QmfSettings s;
  s.loss = diffrank_glue::parse_choice<diffrank::QmfLoss>(
      option<std::string>(options, "loss"), "loss",
      {{"squared", diffrank::QmfLoss::squared}, {"kl", diffrank::QmfLoss::kl}});
  s.n = n;
  s.k = k;
  s.m = m;
  s.learn_weights = option<bool>(options, "learn_weights");
  s.map_data = option<bool>(options, "map_data");
  s.opt.eps = option<double>(options, "eps");
  s.opt.tol = option<double>(options, "sinkhorn_tol");
  s.opt.max_iter = option<int>(options, "sinkhorn_max_iter");
  // Newton steps from the first iteration: with few targets (a dense Schur
  // complement of m - 1 unknowns) one step costs about two Sinkhorn
  // iterations and converges in two or three, where Sinkhorn iterations
  // alone need ten or more at the default eps (bench/qmf.R's KL fits: 12
  // iterations per row and evaluation, 3 with this)
  if (m <= 400) s.opt.newton_after = 0;
  return s;
}

// d x V-gradient: out[, i] = sum over the batch, in batch order, of
// u_r * zbar_r[i]; columns in parallel, each summed by one thread.
void reduce_v_gradient(const Rcpp::NumericMatrix& U, const Rcpp::IntegerVector& rows,
                       const std::vector<double>& zbar, std::size_t n, int threads,
                       Rcpp::NumericMatrix& out) {
  const std::size_t d = U.nrow(), k = U.ncol(), B = rows.size();
  const double* up = U.begin();
  const int* rp = rows.begin();
  double* op = out.begin();
  diffrank_glue::parallel_for(n, threads, [&](std::size_t i0, std::size_t i1) {
    for (std::size_t i = i0; i < i1; ++i) {
      double* oi = op + i * k;
      for (std::size_t b = 0; b < B; ++b) {
        const double zb = zbar[b * n + i];
        const double* u = up + static_cast<std::size_t>(rp[b] - 1);
        for (std::size_t l = 0; l < k; ++l) oi[l] += u[l * d] * zb;
      }
    }
  }, 16);
}

}  // namespace

// The data term of the QMF objective over the rows `rows` (1-based) of x:
// each row's loss, and with `gradient` the gradients with respect to those
// rows of U (B x k), theta, beta, q, b and phi (m x B each) and to V (k x n,
// summed over the rows); with `fitted` the fitted rows T(U V) and (QMFQ) the
// mapped data S(x) (B x n each) and the potentials of the rows' targets
// (m x B, for the rows' maps as functions, QmfRowMap). theta, beta and phi are m x d (one column
// per feature); beta is NULL for equal weights. QMFQ (option map_data) needs
// phi and the scores (d x n, NaN where x is missing).
// [[Rcpp::export(rng = false)]]
Rcpp::List qmf_rows_cpp(Rcpp::NumericMatrix x, Rcpp::NumericMatrix U, Rcpp::NumericMatrix V,
                        Rcpp::NumericMatrix theta, Rcpp::Nullable<Rcpp::NumericMatrix> beta,
                        Rcpp::Nullable<Rcpp::NumericMatrix> phi,
                        Rcpp::Nullable<Rcpp::NumericMatrix> scores, Rcpp::NumericVector center,
                        Rcpp::NumericVector scale, Rcpp::IntegerVector rows, Rcpp::List options,
                        bool gradient, bool fitted, int threads) {
  const std::size_t d = x.nrow(), n = x.ncol(), k = U.ncol(), m = theta.nrow(), B = rows.size();
  const diffrank::QmfSettings s = qmf_settings(options, n, k, m);
  Rcpp::NumericMatrix beta_m = beta.isNotNull() ? Rcpp::NumericMatrix(beta.get())
                                                : Rcpp::NumericMatrix(0, 0);
  const bool has_beta = beta.isNotNull();
  if (s.map_data && (phi.isNull() || scores.isNull())) Rcpp::stop("QMFQ needs phi and scores");
  Rcpp::NumericMatrix phi_m =
      s.map_data ? Rcpp::NumericMatrix(phi.get()) : Rcpp::NumericMatrix(0, 0);
  Rcpp::NumericMatrix scores_m =
      s.map_data ? Rcpp::NumericMatrix(scores.get()) : Rcpp::NumericMatrix(0, 0);
  const double* php = s.map_data ? phi_m.begin() : nullptr;
  const double* scp = s.map_data ? scores_m.begin() : nullptr;
  Rcpp::NumericVector loss(B);
  Rcpp::NumericMatrix ubar(gradient ? B : 0, k), vbar(gradient ? k : 0, gradient ? n : 0),
      tbar(m, gradient ? B : 0), betabar(m, gradient ? B : 0), qbar(m, gradient ? B : 0),
      bbar(m, gradient ? B : 0), phibar(m, gradient && s.map_data ? B : 0),
      fit(fitted ? B : 0, fitted ? n : 0), mapped(fitted && s.map_data ? B : 0, fitted ? n : 0),
      potentials(m, fitted ? B : 0);
  std::vector<double> zbar(gradient ? B * n : 0), ub(gradient ? B * k : 0);
  std::vector<diffrank::SinkhornStatus> status(B);
  const double *xp = x.begin(), *up = U.begin(), *vp = V.begin(), *tp = theta.begin();
  const double* bp = has_beta ? beta_m.begin() : nullptr;
  const double *cp = center.begin(), *sp = scale.begin();
  const int* rp = rows.begin();
  // raw pointers: workers must not go through Rcpp objects
  double *lossp = loss.begin(), *fitp = fit.begin(), *tbp = tbar.begin(), *betabp = betabar.begin(),
         *qbp = qbar.begin(), *bbp = bbar.begin(), *phibp = phibar.begin(), *mapp = mapped.begin(),
         *potp = potentials.begin();
  diffrank::SinkhornStatus* stp = status.data();
  diffrank_glue::parallel_for(
      B, threads,
      [&](std::size_t b0, std::size_t b1) {
        diffrank::QmfRow row;
        for (std::size_t b = b0; b < b1; ++b) {
          const std::size_t r = static_cast<std::size_t>(rp[b] - 1);
          diffrank::QmfRowInput in;
          in.x = xp + r;
          in.x_stride = d;
          in.u = up + r;
          in.u_stride = d;
          in.theta = tp + r * m;
          in.beta = bp != nullptr ? bp + r * m : nullptr;
          in.phi = php != nullptr ? php + r * m : nullptr;
          in.scores = scp != nullptr ? scp + r : nullptr;
          in.center = cp[r];
          in.scale = sp[r];
          lossp[b] = row.forward(s, vp, in, fitted ? fitp + b : nullptr,
                                 fitted && s.map_data ? mapp + b : nullptr, B, stp + b);
          if (fitted) std::copy(row.target_potentials(), row.target_potentials() + m, potp + b * m);
          if (!gradient) continue;
          diffrank::QmfRowGradient g;
          g.u = ub.data() + b * k;
          g.z = zbar.data() + b * n;
          g.theta = tbp + b * m;
          g.beta = betabp + b * m;
          g.q = qbp + b * m;
          g.b = bbp + b * m;
          g.phi = s.map_data ? phibp + b * m : nullptr;
          row.gradient(s, vp, in, g);
        }
      },
      1, 256);
  if (gradient) {
    for (std::size_t b = 0; b < B; ++b)
      for (std::size_t l = 0; l < k; ++l) ubar[b + l * B] = ub[b * k + l];
    reduce_v_gradient(U, rows, zbar, n, threads, vbar);
  }
  int iterations = 0, unconverged = 0;
  double error = 0.0;
  for (const auto& st : status) {
    iterations += st.iterations;
    unconverged += st.converged ? 0 : 1;
    error = std::max(error, st.error);
  }
  return Rcpp::List::create(
      Rcpp::Named("loss") = loss, Rcpp::Named("u") = ubar, Rcpp::Named("v") = vbar,
      Rcpp::Named("theta") = tbar, Rcpp::Named("beta") = betabar, Rcpp::Named("q") = qbar,
      Rcpp::Named("b") = bbar, Rcpp::Named("phi") = phibar, Rcpp::Named("fitted") = fit,
      Rcpp::Named("mapped") = mapped, Rcpp::Named("potentials") = potentials,
      Rcpp::Named("iterations") = iterations, Rcpp::Named("unconverged") = unconverged,
      Rcpp::Named("error") = error);
}

// The target values (m x d) of theta (m x d).
// [[Rcpp::export(rng = false)]]
Rcpp::NumericMatrix qmf_quantiles_cpp(Rcpp::NumericMatrix theta, Rcpp::NumericVector center,
                                      Rcpp::NumericVector scale, bool positive) {
  const std::size_t m = theta.nrow(), d = theta.ncol();
  Rcpp::NumericMatrix q(m, d);
  for (std::size_t r = 0; r < d; ++r) {
    diffrank::qmf_quantiles(&theta[r * m], m, positive, center[r], scale[r], &q[r * m]);
  }
  return q;
}

// QMFQ's data-side targets (m x d) of phi (m x d), standardized (see qmf.hpp).
// [[Rcpp::export(rng = false)]]
Rcpp::NumericMatrix qmfq_data_targets_cpp(Rcpp::NumericMatrix phi, bool positive) {
  const std::size_t m = phi.nrow(), d = phi.ncol();
  Rcpp::NumericMatrix p(m, d);
  for (std::size_t r = 0; r < d; ++r) {
    diffrank::qmfq_data_targets(&phi[r * m], m, positive, &p[r * m]);
  }
  return p;
}

// Places new samples in a QMF fit, each on its own (QmfPlacer): xnew (d x
// n_new, in the fit's unit), U (d x k), the rows' targets q and potentials
// g (m x d each), start (k x n_new); returns the coordinates V
// (k x n_new) and the fitted values T(U V) (d x n_new). Samples are independent
// problems spread over threads, so results do not depend on their number.
// [[Rcpp::export(rng = false)]]
Rcpp::List qmf_place_cpp(Rcpp::NumericMatrix xnew, Rcpp::NumericMatrix U, Rcpp::NumericMatrix q,
                         Rcpp::NumericMatrix g, double eps, std::string loss, double ridge,
                         Rcpp::NumericMatrix start, double tol, int max_iter, int threads) {
  const std::size_t d = xnew.nrow(), n = xnew.ncol(), k = U.ncol(), m = q.nrow();
  diffrank::QmfPlaceSettings s;
  s.loss = diffrank_glue::parse_choice<diffrank::QmfLoss>(
      loss, "loss", {{"squared", diffrank::QmfLoss::squared}, {"kl", diffrank::QmfLoss::kl}});
  s.k = k;
  s.ridge = ridge;
  s.tol = tol;
  s.max_iter = max_iter;
  const std::vector<double> y = diffrank::qmf_grid(m);
  std::vector<diffrank::QmfRowMap> maps(d);
  for (std::size_t r = 0; r < d; ++r) {
    maps[r].q = &q[r * m];
    maps[r].g = &g[r * m];
    maps[r].y = y.data();
    maps[r].m = m;
    maps[r].eps = eps;
  }
  Rcpp::NumericMatrix V = Rcpp::clone(start);
  Rcpp::NumericVector objective(n);
  Rcpp::IntegerVector iterations(n);
  Rcpp::LogicalVector converged(n);
  Rcpp::NumericMatrix fitted(d, n);
  const double *xp = xnew.begin(), *up = U.begin();
  double *vp = V.begin(), *op = objective.begin(), *fp = fitted.begin();
  std::vector<diffrank::QmfPlaceResult> results(n);
  diffrank_glue::parallel_for(
      n, threads,
      [&](std::size_t i0, std::size_t i1) {
        diffrank::QmfPlacer placer;
        for (std::size_t i = i0; i < i1; ++i) {
          results[i] = placer.place(s, maps, xp + i * d, 1, up, vp + i * k);
          op[i] = results[i].objective;
          diffrank::qmf_map_values(maps, up, k, vp + i * k, fp + i * d, 1);
        }
      },
      1, diffrank_glue::timed_batches);
  for (std::size_t i = 0; i < n; ++i) {
    iterations[i] = results[i].iterations;
    converged[i] = results[i].converged;
  }
  return Rcpp::List::create(
      Rcpp::Named("V") = V, Rcpp::Named("fitted") = fitted, Rcpp::Named("objective") = objective,
      Rcpp::Named("iterations") = iterations, Rcpp::Named("converged") = converged);
}
