// Glue for soft sort, soft rank and isotonic regression; arguments are
// checked in R/soft_sort.R. Every column of a matrix is one vector.
#include <Rcpp.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <diffrank/isotonic.hpp>
#include <diffrank/permutahedron.hpp>
#include <initializer_list>
#include <string>
#include <vector>

#include "glue.h"
#include "operator_glue.h"
#include "parallel.h"

namespace {

// The settings of a soft operator from the options list of R/soft_sort.R:
// kind, reg, decreasing, eps and scale.
diffrank::SoftSettings make_settings(const Rcpp::List& options) {
  using diffrank_glue::option;
  using diffrank_glue::parse_choice;
  diffrank::SoftSettings s;
  s.kind = parse_choice<diffrank::SoftKind>(option<std::string>(options, "kind"), "kind",
                                            {{"rank", diffrank::SoftKind::rank},
                                             {"sort", diffrank::SoftKind::sort}});
  s.reg = parse_choice<diffrank::Regularization>(option<std::string>(options, "reg"), "reg",
                                                 {{"l2", diffrank::Regularization::l2},
                                                  {"kl", diffrank::Regularization::kl}});
  s.scale = parse_choice<diffrank::SoftScale>(option<std::string>(options, "scale"), "scale",
                                              {{"none", diffrank::SoftScale::none},
                                               {"sd", diffrank::SoftScale::sd},
                                               {"spacing", diffrank::SoftScale::spacing},
                                               {"local", diffrank::SoftScale::local}});
  s.descending = option<bool>(options, "decreasing");
  s.eps = option<double>(options, "eps");
  return s;
}

using SoftState = diffrank_glue::ColumnStates<diffrank::SoftOperator>;

// What a forward pass of one column reports to R: fine, overflow (an error),
// or a result near its constant eps -> infinity limit (a warning).
enum ColumnStatus : char { column_ok = 0, column_overflow = 1, column_near_constant = 2 };

// near_constant_fraction of R/checks.R
constexpr double near_constant_fraction = 0.01;

char column_status(bool ok, const diffrank::SoftOperator& soft) {
  if (!ok) return column_overflow;
  return soft.near_constant(near_constant_fraction) ? column_near_constant : column_ok;
}

// The forward pass of every column of x (n x m, column-major) into out, and
// each column's status.
std::vector<char> forward_columns(const double* xp, std::size_t n, std::size_t m,
                                  const diffrank::SoftSettings& s, int threads, double* op) {
  std::vector<char> status(m, 0);
  diffrank_glue::parallel_columns(
      m, threads, diffrank_glue::column_cuts(n), [&](std::size_t j0, std::size_t j1) {
        diffrank::SoftOperator soft;
        for (std::size_t j = j0; j < j1; ++j) {
          status[j] = column_status(soft.forward(xp + j * n, n, s, op + j * n), soft);
        }
      });
  return status;
}

// Columns near their constant limit, for the warning of R/soft_sort.R.
int count_near_constant(const std::vector<char>& status) {
  return static_cast<int>(std::count(status.begin(), status.end(), column_near_constant));
}

void stop_overflow(const std::vector<char>& failed, const diffrank::SoftSettings& s) {
  const auto it = std::find(failed.begin(), failed.end(), column_overflow);
  if (it == failed.end()) return;
  const int column = static_cast<int>(it - failed.begin()) + 1;
  if (s.kind == diffrank::SoftKind::rank) {
    Rcpp::stop("`x / eps` overflows (column %d): use a larger `eps` or `scale = \"spacing\"`.", column);
  }
  Rcpp::stop(
      "`x` or `length(x) / eps` exceeds 1e300 in magnitude (column %d): rescale `x` or "
      "use a larger `eps`.",
      column);
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

namespace {

// The one string of a character vector of length 1 without attributes, else
// null; `whole` (the default vector of choices, also without attributes)
// gives its first element.
const char* single_choice(SEXP value, std::initializer_list<const char*> choices) {
  if (TYPEOF(value) != STRSXP || ATTRIB(value) != R_NilValue) return nullptr;
  const R_xlen_t n = XLENGTH(value);
  if (n == static_cast<R_xlen_t>(choices.size()) && n > 1) {
    R_xlen_t k = 0;
    for (const char* c : choices) {
      if (STRING_ELT(value, k) == NA_STRING || std::strcmp(CHAR(STRING_ELT(value, k)), c) != 0) {
        return nullptr;
      }
      ++k;
    }
    return *choices.begin();
  }
  if (n != 1 || STRING_ELT(value, 0) == NA_STRING) return nullptr;
  const char* v = CHAR(STRING_ELT(value, 0));
  for (const char* c : choices) {
    if (std::strcmp(v, c) == 0) return c;
  }
  return nullptr;
}

// A single number that is not NA (integer or double, no class), as double.
bool single_number(SEXP value, double& out) {
  if (OBJECT(value) || Rf_xlength(value) != 1) return false;  // XLENGTH() errors on NULL
  if (TYPEOF(value) == REALSXP) {
    out = REAL(value)[0];
    return !std::isnan(out);
  }
  if (TYPEOF(value) == INTSXP && INTEGER(value)[0] != NA_INTEGER) {
    out = INTEGER(value)[0];
    return true;
  }
  return false;
}

}  // namespace

// soft_rank() and soft_sort() in one call from R, for the common case: x a
// plain double vector or matrix of finite values, eps a finite number >= 0,
// reg and scale a valid choice (or the whole default vector), decreasing TRUE
// or FALSE and threads a whole number >= 1; the result is shaped and named as
// R/soft_sort.R shapes it. R-level checks cost more than the soft rank of a
// short vector, so these checks run here, with the same rules. Returns NULL,
// having computed nothing or thrown the result away, in every other case
// (any argument that fails a check, non-finite x, an overflow, a column
// near its constant limit): R/soft_sort.R then takes its full path, whose
// checks and warnings name the argument.
// [[Rcpp::export(rng = false)]]
SEXP soft_forward_quick_cpp(SEXP kind, SEXP x, SEXP eps, SEXP reg, SEXP decreasing, SEXP scale,
                            SEXP threads) {
  diffrank::SoftSettings s;
  const char* k = single_choice(kind, {"rank", "sort"});
  const char* r = single_choice(reg, {"l2", "kl"});
  if (k == nullptr) return R_NilValue;
  const char* sc = k[0] == 'r' ? single_choice(scale, {"local", "spacing", "sd", "none"})
                               : single_choice(scale, {"spacing", "sd", "none"});
  if (r == nullptr || sc == nullptr) return R_NilValue;
  s.kind = k[0] == 'r' ? diffrank::SoftKind::rank : diffrank::SoftKind::sort;
  s.reg = r[0] == 'l' ? diffrank::Regularization::l2 : diffrank::Regularization::kl;
  s.scale = sc[0] == 'n'   ? diffrank::SoftScale::none
            : sc[0] == 'l' ? diffrank::SoftScale::local
            : sc[1] == 'd' ? diffrank::SoftScale::sd
                           : diffrank::SoftScale::spacing;
  if (TYPEOF(decreasing) != LGLSXP || XLENGTH(decreasing) != 1 ||
      LOGICAL(decreasing)[0] == NA_LOGICAL) {
    return R_NilValue;
  }
  s.descending = LOGICAL(decreasing)[0] != 0;
  double th = 0.0;
  if (!single_number(eps, s.eps) || !(s.eps >= 0.0 && std::isfinite(s.eps))) return R_NilValue;
  if (!single_number(threads, th) || !(th >= 1.0 && std::isfinite(th)) || th != std::round(th)) {
    return R_NilValue;
  }
  const int nthreads = static_cast<int>(std::min(th, double(diffrank_glue::max_threads)));
  if (TYPEOF(x) != REALSXP || OBJECT(x)) return R_NilValue;
  const R_xlen_t len = XLENGTH(x);
  SEXP dim = Rf_getAttrib(x, R_DimSymbol);
  const bool matrix = dim != R_NilValue;
  if (matrix && (TYPEOF(dim) != INTSXP || XLENGTH(dim) != 2)) return R_NilValue;
  const R_xlen_t nrow = matrix ? INTEGER(dim)[0] : len;
  if (len < 1 || len > INT_MAX || nrow < 1) return R_NilValue;
  const double* xp = REAL(x);
  if (nonfinite_kind_cpp(x) != 0) return R_NilValue;

  const std::size_t n = static_cast<std::size_t>(nrow), m = static_cast<std::size_t>(len) / n;
  Rcpp::NumericVector out(Rcpp::no_init(len));
  const std::vector<char> status = forward_columns(xp, n, m, s, nthreads, out.begin());
  if (std::find_if(status.begin(), status.end(), [](char c) { return c != column_ok; }) !=
      status.end()) {
    return R_NilValue;
  }
  const bool rank = s.kind == diffrank::SoftKind::rank;
  if (!matrix) {
    if (rank) {
      SEXP names = Rf_getAttrib(x, R_NamesSymbol);
      if (names != R_NilValue) out.attr("names") = names;
    }
    return out;
  }
  out.attr("dim") = dim;
  SEXP dn = Rf_getAttrib(x, R_DimNamesSymbol);
  if (dn != R_NilValue && !rank) {
    if (VECTOR_ELT(dn, 1) == R_NilValue) return out;  // no column names: no dimnames
    Rcpp::List sort_dn(Rf_shallow_duplicate(dn));
    sort_dn[0] = R_NilValue;
    out.attr("dimnames") = sort_dn;
    return out;
  }
  if (dn != R_NilValue) out.attr("dimnames") = dn;
  return out;
}

// Soft rank or soft sort of every column of x, an n x (length(x) / n) matrix
// given as a plain vector (so that a vector is not copied into a matrix);
// returns a plain vector of the same length.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericVector soft_forward_cpp(Rcpp::NumericVector x, int nrow, Rcpp::List options,
                                     int threads) {
  const std::size_t n = nrow, m = n == 0 ? 0 : x.size() / n;
  const diffrank::SoftSettings s = make_settings(options);
  Rcpp::NumericVector out(Rcpp::no_init(x.size()));
  const std::vector<char> failed = forward_columns(x.begin(), n, m, s, threads, out.begin());
  stop_overflow(failed, s);
  out.attr("near_constant") = count_near_constant(failed);
  return out;
}

// v^T J for every column: the forward pass and the product in one go; x and
// v as in soft_forward_cpp.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericVector soft_vjp_cpp(Rcpp::NumericVector x, Rcpp::NumericVector v, int nrow,
                                 Rcpp::List options, int threads) {
  const std::size_t n = nrow, m = n == 0 ? 0 : x.size() / n;
  const diffrank::SoftSettings s = make_settings(options);
  Rcpp::NumericVector out(Rcpp::no_init(x.size()));
  const double* xp = x.begin();
  const double* vp = v.begin();
  double* op = out.begin();
  std::vector<char> failed(m, 0);
  diffrank_glue::parallel_columns(m, threads, diffrank_glue::column_cuts(n),
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
                                  });
  stop_overflow(failed, s);
  return out;
}

// Forward pass that keeps one operator per column for later products.
// [[Rcpp::export(rng = false)]]
Rcpp::List soft_state_cpp(Rcpp::NumericVector x, int nrow, Rcpp::List options, int threads) {
  const std::size_t n = nrow, m = n == 0 ? 0 : x.size() / n;
  const diffrank::SoftSettings s = make_settings(options);
  Rcpp::XPtr<SoftState> state = diffrank_glue::make_handle(new SoftState());
  SoftState* st = state.get();
  st->input_size = st->output_size = n;
  st->ops.resize(m);
  Rcpp::NumericVector out(Rcpp::no_init(x.size()));
  const double* xp = x.begin();
  double* op = out.begin();
  std::vector<char> failed(m, 0);
  diffrank_glue::parallel_columns(
      m, threads, diffrank_glue::column_cuts(n), [&](std::size_t j0, std::size_t j1) {
        for (std::size_t j = j0; j < j1; ++j) {
          failed[j] = column_status(st->ops[j].forward(xp + j * n, n, s, op + j * n), st->ops[j]);
        }
      });
  stop_overflow(failed, s);
  out.attr("near_constant") = count_near_constant(failed);
  return Rcpp::List::create(Rcpp::Named("value") = out, Rcpp::Named("state") = state);
}

// J u (transpose = false) or J^T u for every column, from a stored state; u
// and the result are plain vectors of length nrow * ncol.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericVector soft_state_product_cpp(SEXP state, Rcpp::NumericVector u, bool transpose,
                                           int threads) {
  SoftState& st = *diffrank_glue::handle_state<SoftState>(state);
  return diffrank_glue::stored_products(st, u, transpose, threads,
                                        diffrank_glue::column_cuts(st.input_size));
}

// Full Jacobians, n x n x ncol, column-major.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericVector soft_state_jacobian_cpp(SEXP state, int threads) {
  return diffrank_glue::stored_jacobians(*diffrank_glue::handle_state<SoftState>(state), threads);
}

// Numbers of PAV blocks of every column of a stored state.
// [[Rcpp::export(rng = false)]]
Rcpp::IntegerVector soft_state_blocks_cpp(SEXP state) {
  SoftState* st = diffrank_glue::handle_state<SoftState>(state);
  Rcpp::IntegerVector out(st->ops.size());
  for (std::size_t j = 0; j < st->ops.size(); ++j) out[j] = static_cast<int>(st->ops[j].n_blocks());
  return out;
}

// Projection of y onto non-decreasing (or non-increasing) sequences.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericVector isotonic_cpp(Rcpp::NumericVector y, Rcpp::Nullable<Rcpp::NumericVector> weights,
                                 bool decreasing) {
  const std::size_t n = y.size();
  // The R result first: if R cannot allocate it, its error jumps over this
  // frame before any C++ buffer exists.
  Rcpp::NumericVector out(n);
  std::vector<double> yy(y.begin(), y.end());
  if (decreasing) {
    for (auto& v : yy) v = -v;
  }
  std::vector<double> w;
  if (weights.isNotNull()) {
    Rcpp::NumericVector wv(weights.get());
    w.assign(wv.begin(), wv.end());
  }
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
  const diffrank::Regularization r = diffrank_glue::parse_choice<diffrank::Regularization>(
      reg, "reg", {{"l2", diffrank::Regularization::l2}, {"kl", diffrank::Regularization::kl}});
  Rcpp::NumericVector out(z.size());
  diffrank::PermutahedronProjection project;
  project(z.begin(), w.begin(), z.size(), r, out.begin());
  return out;
}
