// Glue for soft sort, soft rank and isotonic regression; arguments are
// checked in R/soft_sort.R. Every column of a matrix is one vector.
#include <Rcpp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <diffrank/isotonic.hpp>
#include <diffrank/permutahedron.hpp>
#include <string>
#include <vector>

#include "parallel.h"

namespace {

diffrank::SoftSettings make_settings(const std::string& kind, const std::string& reg,
                                     bool descending, double eps, bool scale_sd) {
  diffrank::SoftSettings s;
  if (kind == "rank") {
    s.kind = diffrank::SoftKind::rank;
  } else if (kind == "sort") {
    s.kind = diffrank::SoftKind::sort;
  } else {
    Rcpp::stop("unknown operator \"%s\"", kind);
  }
  if (reg == "l2") {
    s.reg = diffrank::Regularization::l2;
  } else if (reg == "kl") {
    s.reg = diffrank::Regularization::kl;
  } else {
    Rcpp::stop("`reg` must be \"l2\" or \"kl\", not \"%s\".", reg);
  }
  s.descending = descending;
  s.eps = eps;
  s.scale_sd = scale_sd;
  return s;
}

// Columns per interrupt check, and per task, for vectors of length n.
std::size_t batch_size(std::size_t n) {
  return std::max<std::size_t>(16, (std::size_t(1) << 22) / std::max<std::size_t>(n, 1));
}
std::size_t grain_size(std::size_t n) {
  return std::max<std::size_t>(1, 2048 / std::max<std::size_t>(n, 1));
}

void stop_overflow(const std::vector<char>& failed, const diffrank::SoftSettings& s) {
  const auto it = std::find(failed.begin(), failed.end(), 1);
  if (it == failed.end()) return;
  const int column = static_cast<int>(it - failed.begin()) + 1;
  if (s.kind == diffrank::SoftKind::rank) {
    Rcpp::stop("`x / eps` overflows (column %d): use a larger `eps` or scale = \"sd\".", column);
  }
  Rcpp::stop(
      "`x` or `length(x) / eps` exceeds 1e300 in magnitude (column %d): rescale `x` or "
      "use a larger `eps`.",
      column);
}

struct SoftState {
  std::size_t n = 0;
  std::vector<diffrank::SoftOperator> ops;
};

SoftState* get_state(SEXP state) {
  Rcpp::XPtr<SoftState> ptr(state);
  if (ptr.get() == nullptr) {
    Rcpp::stop(
        "This soft operator object was saved and reloaded: its derivative state is gone; "
        "recompute it.");
  }
  return ptr.get();
}

}  // namespace

// 0 if every value of x is finite, 1 if some value is NA or NaN, else 2 if
// some value is infinite: the argument checks of soft sorts in one pass over
// the data instead of three (anyNA, min and max), which for a 100 x 256
// matrix cost as much as a tenth of the soft ranks themselves.
// [[Rcpp::export(rng = false)]]
int nonfinite_kind_cpp(Rcpp::NumericVector x) {
  const double* p = x.begin();
  const std::size_t n = x.size();
  // A value is not finite when its exponent bits are all ones: a branch-free
  // first pass on the bit patterns, which the compiler vectorizes.
  constexpr std::uint64_t exponent = 0x7FF0000000000000ULL;
  std::uint64_t all_ones = 0;
  for (std::size_t i = 0; i < n; ++i) {
    std::uint64_t b;
    std::memcpy(&b, p + i, sizeof b);
    all_ones |= static_cast<std::uint64_t>((b & exponent) == exponent);
  }
  if (all_ones == 0) return 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (std::isnan(p[i])) return 1;
  }
  return 2;
}

// Soft rank or soft sort of every column of x, an n x (length(x) / n) matrix
// given as a plain vector (so that a vector is not copied into a matrix);
// returns a plain vector of the same length.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericVector soft_forward_cpp(Rcpp::NumericVector x, int nrow, std::string kind,
                                     std::string reg, bool descending, double eps, bool scale_sd,
                                     int threads) {
  const std::size_t n = nrow, m = n == 0 ? 0 : x.size() / n;
  const diffrank::SoftSettings s = make_settings(kind, reg, descending, eps, scale_sd);
  Rcpp::NumericVector out(Rcpp::no_init(x.size()));
  const double* xp = x.begin();
  double* op = out.begin();
  std::vector<char> failed(m, 0);
  diffrank_glue::parallel_for(
      m, threads,
      [&](std::size_t j0, std::size_t j1) {
        diffrank::SoftOperator soft;
        for (std::size_t j = j0; j < j1; ++j) {
          if (!soft.forward(xp + j * n, n, s, op + j * n)) failed[j] = 1;
        }
      },
      grain_size(n), batch_size(n));
  stop_overflow(failed, s);
  return out;
}

// v^T J for every column: the forward pass and the product in one go; x and
// v as in soft_forward_cpp.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericVector soft_vjp_cpp(Rcpp::NumericVector x, Rcpp::NumericVector v, int nrow,
                                 std::string kind, std::string reg, bool descending, double eps,
                                 bool scale_sd, int threads) {
  const std::size_t n = nrow, m = n == 0 ? 0 : x.size() / n;
  const diffrank::SoftSettings s = make_settings(kind, reg, descending, eps, scale_sd);
  Rcpp::NumericVector out(Rcpp::no_init(x.size()));
  const double* xp = x.begin();
  const double* vp = v.begin();
  double* op = out.begin();
  std::vector<char> failed(m, 0);
  diffrank_glue::parallel_for(
      m, threads,
      [&](std::size_t j0, std::size_t j1) {
        diffrank::SoftOperator soft;
        for (std::size_t j = j0; j < j1; ++j) {
          // no value written: the product alone fills the output column
          if (!soft.forward(xp + j * n, n, s, nullptr)) {
            failed[j] = 1;
            continue;
          }
          soft.vjp(vp + j * n, op + j * n);
        }
      },
      grain_size(n), batch_size(n));
  stop_overflow(failed, s);
  return out;
}

// Forward pass that keeps one operator per column for later products.
// [[Rcpp::export(rng = false)]]
Rcpp::List soft_state_cpp(Rcpp::NumericVector x, int nrow, std::string kind, std::string reg,
                          bool descending, double eps, bool scale_sd, int threads) {
  const std::size_t n = nrow, m = n == 0 ? 0 : x.size() / n;
  const diffrank::SoftSettings s = make_settings(kind, reg, descending, eps, scale_sd);
  Rcpp::XPtr<SoftState> state(new SoftState(), true);
  state->n = n;
  state->ops.resize(m);
  Rcpp::NumericVector out(Rcpp::no_init(x.size()));
  const double* xp = x.begin();
  double* op = out.begin();
  std::vector<char> failed(m, 0);
  SoftState* st = state.get();
  diffrank_glue::parallel_for(
      m, threads,
      [&](std::size_t j0, std::size_t j1) {
        for (std::size_t j = j0; j < j1; ++j) {
          if (!st->ops[j].forward(xp + j * n, n, s, op + j * n)) failed[j] = 1;
        }
      },
      grain_size(n), batch_size(n));
  stop_overflow(failed, s);
  return Rcpp::List::create(Rcpp::Named("value") = out, Rcpp::Named("state") = state);
}

// J u (transpose = false) or J^T u for every column, from a stored state; u
// and the result are plain vectors of length nrow * ncol.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericVector soft_state_product_cpp(SEXP state, Rcpp::NumericVector u, bool transpose,
                                           int threads) {
  SoftState* st = get_state(state);
  const std::size_t n = st->n, m = st->ops.size();
  if (static_cast<std::size_t>(u.size()) != n * m) {
    Rcpp::stop("`v` must have %d values.", static_cast<int>(n * m));
  }
  Rcpp::NumericVector out(Rcpp::no_init(n * m));
  const double* up = u.begin();
  double* op = out.begin();
  diffrank_glue::parallel_for(
      m, threads,
      [&](std::size_t j0, std::size_t j1) {
        for (std::size_t j = j0; j < j1; ++j) {
          if (transpose) {
            st->ops[j].vjp(up + j * n, op + j * n);
          } else {
            st->ops[j].jvp(up + j * n, op + j * n);
          }
        }
      },
      grain_size(n), batch_size(n));
  return out;
}

// Full Jacobians, n x n x ncol, column-major.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericVector soft_state_jacobian_cpp(SEXP state, int threads) {
  SoftState* st = get_state(state);
  const std::size_t n = st->n, m = st->ops.size();
  Rcpp::NumericVector out(Rcpp::no_init(n * n * m));
  double* op = out.begin();
  diffrank_glue::parallel_for(m, threads, [&](std::size_t j0, std::size_t j1) {
    for (std::size_t j = j0; j < j1; ++j) st->ops[j].jacobian(op + j * n * n);
  });
  out.attr("dim") = Rcpp::IntegerVector::create(n, n, m);
  return out;
}

// Numbers of PAV blocks of every column of a stored state.
// [[Rcpp::export(rng = false)]]
Rcpp::IntegerVector soft_state_blocks_cpp(SEXP state) {
  SoftState* st = get_state(state);
  Rcpp::IntegerVector out(st->ops.size());
  for (std::size_t j = 0; j < st->ops.size(); ++j) out[j] = static_cast<int>(st->ops[j].n_blocks());
  return out;
}

// Projection of y onto non-decreasing (or non-increasing) sequences.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericVector isotonic_cpp(Rcpp::NumericVector y, Rcpp::Nullable<Rcpp::NumericVector> weights,
                                 bool decreasing) {
  const std::size_t n = y.size();
  std::vector<double> yy(y.begin(), y.end());
  if (decreasing) {
    for (auto& v : yy) v = -v;
  }
  std::vector<double> w;
  if (weights.isNotNull()) {
    Rcpp::NumericVector wv(weights.get());
    w.assign(wv.begin(), wv.end());
  }
  Rcpp::NumericVector out(n);
  std::vector<std::uint32_t> bounds(n + 1);
  std::vector<double> scratch(2 * n);
  diffrank::isotonic_increasing(yy.data(), w.empty() ? nullptr : w.data(), n, out.begin(),
                                bounds.data(), scratch.data());
  if (decreasing) {
    for (auto& v : out) v = -v;
  }
  return out;
}

// Projection of z onto the permutahedron of w.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericVector project_permutahedron_cpp(Rcpp::NumericVector z, Rcpp::NumericVector w,
                                              std::string reg) {
  const diffrank::Regularization r =
      reg == "kl" ? diffrank::Regularization::kl : diffrank::Regularization::l2;
  Rcpp::NumericVector out(z.size());
  diffrank::PermutahedronProjection project;
  project(z.begin(), w.begin(), z.size(), r, out.begin());
  return out;
}
