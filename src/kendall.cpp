// Glue for the Kendall, Mallows and weighted Kendall kernels; arguments are
// checked in R/kendall.R.
#include <Rcpp.h>

#include <algorithm>
#include <cstdint>
#include <diffrank/kendall.hpp>
#include <string>
#include <utility>
#include <vector>

#include "glue.h"
#include "parallel.h"

namespace {

// Every column of a features x samples matrix, ranked once.
struct Profiles {
  std::size_t n = 0, count = 0;
  std::vector<std::uint32_t> order, rank;
  std::vector<std::size_t> q, distinct;
  diffrank::RankedProfile at(std::size_t j) const {
    return {order.data() + j * n, rank.data() + j * n, q[j], distinct[j]};
  }
  bool complete(std::size_t j) const { return q[j] == n; }
};

// With top > 0, each column is cut to a top-`top` list (keep_top).
Profiles rank_columns(const Rcpp::NumericMatrix& x, std::size_t top, int threads) {
  Profiles p;
  p.n = x.nrow();
  p.count = x.ncol();
  p.order.resize(p.n * p.count);
  p.rank.resize(p.n * p.count);
  p.q.resize(p.count);
  p.distinct.resize(p.count);
  const double* xp = x.begin();
  diffrank_glue::parallel_for(p.count, threads, [&](std::size_t j0, std::size_t j1) {
    diffrank::RankScratch scratch;
    for (std::size_t j = j0; j < j1; ++j) {
      diffrank::RankedProfile r = diffrank::rank_profile(
          xp + j * p.n, p.n, p.order.data() + j * p.n, p.rank.data() + j * p.n, scratch);
      diffrank::keep_top(r, p.rank.data() + j * p.n, top);
      p.q[j] = r.q;
      p.distinct[j] = r.distinct;
    }
  }, 1, diffrank_glue::timed_batches);
  return p;
}

enum class Kernel { tau_a, tau_b, mallows, weighted };

struct Spec {
  Kernel kernel = Kernel::tau_b;
  double lambda = 1.0;
  bool normalized = true;
  diffrank::WeightKind weights = diffrank::WeightKind::product;
  const double* u = nullptr;
  // Missing items interleaved at random among the observed ones (the
  // convolution Kendall kernel) rather than left out of the pair.
  bool interleave = false;
  // Mallows kernel averaged over the orders of tied items (top-k lists):
  // mallows_ties_exponent with distances over `pairs` and the table G of
  // lambda / pairs.
  bool average_ties = false;
  double pairs = 1.0;
  std::vector<double> mean_q_factorial_logs;
};

Spec parse_spec(const std::string& kernel, double lambda, bool normalized, const double* u,
                bool interleave = false) {
  Spec s;
  s.interleave = interleave;
  s.lambda = lambda;
  s.normalized = normalized;
  s.u = u;
  using diffrank::WeightKind;
  // The weighted kernels are named by their weighting of a pair of positions.
  const std::pair<Kernel, WeightKind> choice =
      diffrank_glue::parse_choice<std::pair<Kernel, WeightKind>>(
          kernel, "kernel",
          {{"tau_a", {Kernel::tau_a, WeightKind::product}},
           {"tau_b", {Kernel::tau_b, WeightKind::product}},
           {"mallows", {Kernel::mallows, WeightKind::product}},
           {"product", {Kernel::weighted, WeightKind::product}},
           {"additive", {Kernel::weighted, WeightKind::additive}},
           {"average", {Kernel::weighted, WeightKind::average}}});
  s.kernel = choice.first;
  s.weights = choice.second;
  return s;
}

// The kernel between profile a of one set and profile b of another; self_a and
// self_b are the weighted kernels of a and b with themselves (when complete).
double evaluate(const Spec& spec, std::size_t n, const diffrank::RankedProfile& a, bool a_complete,
                double self_a, const diffrank::RankedProfile& b, bool b_complete, double self_b,
                diffrank::KendallScratch& s, diffrank::PartialScratch& partial) {
  if (spec.interleave && !(a_complete && b_complete)) {
    const diffrank::KendallCounts c = diffrank::kendall_counts(a, b, b, s);
    const double raw = diffrank::interleaved_kendall(a, b, n, c, partial);
    if (spec.kernel == Kernel::tau_a) {
      return raw / static_cast<double>(diffrank::pairs_of(static_cast<std::int64_t>(n)));
    }
    if (!(self_a > 0.0 && self_b > 0.0)) return diffrank::nan_value();
    return raw / diffrank::geometric_mean(self_a, self_b);
  }
  if (spec.kernel != Kernel::weighted) {
    const diffrank::KendallCounts c = diffrank::kendall_counts(a, b, b, s);
    if (spec.kernel == Kernel::tau_a) return diffrank::tau_a(c);
    if (spec.kernel == Kernel::tau_b) return diffrank::tau_b(c);
    if (!spec.average_ties) return diffrank::mallows(c, spec.lambda, spec.normalized);
    if (c.n0 == 0) return diffrank::nan_value();
    return std::exp(diffrank::mallows_ties_exponent(a, b, c, spec.lambda, spec.pairs,
                                                    spec.mean_q_factorial_logs, s.yblock.data()));
  }
  const double raw = diffrank::weighted_kendall(a, b, b, spec.weights, spec.u, s);
  if (!spec.normalized) return raw;
  if (!(a_complete && b_complete)) {
    // Compared on the items observed in both, so normalized on them too.
    self_a = diffrank::weighted_kendall(a, a, b, spec.weights, spec.u, s);
    self_b = diffrank::weighted_kendall(b, b, a, spec.weights, spec.u, s);
  }
  if (!(self_a > 0.0 && self_b > 0.0)) return diffrank::nan_value();
  return raw / diffrank::geometric_mean(self_a, self_b);
}

// Weighted kernels of the complete profiles of p with themselves, for
// normalizing (0 for the others, and for every profile when the kernel is not
// a normalized weighted one); for tau-b with interleaved missing items, the
// convolution kernel of every profile with itself.
std::vector<double> self_kernels(const Spec& spec, const Profiles& p, int threads) {
  std::vector<double> out(p.count, 0.0);
  if (spec.interleave && spec.kernel == Kernel::tau_b) {
    diffrank_glue::parallel_for(
        p.count, threads,
        [&](std::size_t j0, std::size_t j1) {
          diffrank::PartialScratch s;
          s.reserve(p.n);
          for (std::size_t j = j0; j < j1; ++j) {
            out[j] = diffrank::interleaved_kendall_self(p.at(j), p.n, s);
          }
        },
        1, diffrank_glue::timed_batches);
    return out;
  }
  if (spec.kernel != Kernel::weighted || !spec.normalized) return out;
  diffrank_glue::parallel_for(p.count, threads, [&](std::size_t j0, std::size_t j1) {
    diffrank::KendallScratch s;
    s.reserve_weighted(p.n);
    for (std::size_t j = j0; j < j1; ++j) {
      if (!p.complete(j)) continue;
      const diffrank::RankedProfile r = p.at(j);
      out[j] = diffrank::weighted_kendall(r, r, r, spec.weights, spec.u, s);
    }
  }, 1, diffrank_glue::timed_batches);
  return out;
}

// The pairs (i, j) of profiles of px and py numbered t = 0, 1, ...: for a
// symmetric matrix (py is px) the upper triangle row by row, else column by
// column; operator()(t0, t1) writes the kernels of pairs t0..t1-1 into the
// column-major matrix o (both triangles when symmetric).
struct PairRange {
  const Spec& spec;
  const Profiles &px, &py;
  const std::vector<double>&self_x, &self_y;
  bool symmetric;
  double* o;

  // Row i of the upper triangle starts at pair i nx - i (i - 1) / 2.
  std::size_t row_start(std::size_t i) const { return i * px.count - i * (i - 1) / 2; }

  // The pair numbered t.
  void pair_at(std::size_t t, std::size_t& i, std::size_t& j) const {
    const std::size_t nx = px.count;
    if (!symmetric) {
      i = t % nx;
      j = t / nx;
      return;
    }
    // Largest i with row_start(i) <= t.
    std::size_t lo = 0, hi = nx;
    while (hi - lo > 1) {
      const std::size_t mid = (lo + hi) / 2;
      if (row_start(mid) <= t)
        lo = mid;
      else
        hi = mid;
    }
    i = lo;
    j = i + (t - row_start(i));
  }

  // One scratch per thread would need thread ids; one per range of pairs is
  // cheap next to a range's work, so each call owns its scratch.
  void operator()(std::size_t t0, std::size_t t1) const {
    const std::size_t nx = px.count;
    diffrank::KendallScratch s;
    diffrank::PartialScratch partial;
    if (spec.kernel == Kernel::weighted) {
      s.reserve_weighted(px.n);
    } else {
      s.reserve(px.n);
    }
    if (spec.interleave) partial.reserve(px.n);
    std::size_t i, j;
    pair_at(t0, i, j);
    for (std::size_t t = t0; t < t1; ++t) {
      const double value = evaluate(spec, px.n, px.at(i), px.complete(i), self_x[i], py.at(j),
                                    py.complete(j), self_y[j], s, partial);
      o[i + j * nx] = value;
      if (symmetric) {
        o[j + i * nx] = value;
        if (++j == nx) {
          ++i;
          j = i;
        }
      } else if (++i == nx) {
        i = 0;
        ++j;
      }
    }
  }
};

}  // namespace

// Kernel matrix between the columns of x (and those of y when given).
// kernel is "tau_a", "tau_b", "mallows", "product", "additive" or "average";
// u holds the position weights of the weighted kernels (u[0] for the top).
// top > 0 cuts every profile to a top-`top` list; interleave (tau_a and tau_b
// only) takes missing items as interleaved at random (see kendall.hpp).
// [[Rcpp::export(rng = false)]]
Rcpp::NumericMatrix rank_kernel_matrix(Rcpp::NumericMatrix x, Rcpp::Nullable<Rcpp::NumericMatrix> y,
                                       std::string kernel, double lambda, bool normalized,
                                       Rcpp::NumericVector u, int threads, bool progress,
                                       double top = 0, bool interleave = false) {
  Spec spec = parse_spec(kernel, lambda, normalized, u.begin(), interleave);
  if (interleave && spec.kernel != Kernel::tau_a && spec.kernel != Kernel::tau_b) {
    Rcpp::stop("internal: interleaved missing items need a Kendall kernel");
  }
  if (top > 0 && spec.kernel == Kernel::mallows) {
    // Top-k lists are compared on all their items (R/kendall.R admits no
    // missing values here). Normalized, distances are divided by the pairs a
    // list orders, all but those inside its bottom: n0 for k = p.
    const std::int64_t p = x.nrow(), k = static_cast<std::int64_t>(top);
    spec.average_ties = true;
    if (normalized) {
      spec.pairs = static_cast<double>(diffrank::pairs_of(p) - diffrank::pairs_of(p - k));
    }
    spec.mean_q_factorial_logs = diffrank::mean_q_factorial_logs(x.nrow(), lambda / spec.pairs);
  }
  const bool symmetric = y.isNull();
  const std::size_t n = x.nrow(), nx = x.ncol();
  if (static_cast<std::size_t>(u.size()) < n && spec.kernel == Kernel::weighted &&
      spec.weights != diffrank::WeightKind::average) {
    Rcpp::stop("`u` must have one weight per feature.");
  }
  Rcpp::NumericMatrix ym = symmetric ? x : Rcpp::NumericMatrix(y.get());
  const std::size_t ny = ym.ncol();
  // The output is allocated before any C++ buffer: when R cannot allocate it,
  // its error jumps over this frame, and destructors would not run.
  Rcpp::NumericMatrix out(Rcpp::no_init(nx, ny));
  const std::size_t top_k = static_cast<std::size_t>(top);
  const Profiles px = rank_columns(x, top_k, threads);
  Profiles py_store;
  if (!symmetric) py_store = rank_columns(ym, top_k, threads);
  const Profiles& py = symmetric ? px : py_store;

  // Weighted kernels of complete profiles with themselves, for normalizing.
  const std::vector<double> self_x = self_kernels(spec, px, threads);
  const std::vector<double> self_y =
      symmetric ? std::vector<double>() : self_kernels(spec, py, threads);
  const std::vector<double>& sy = symmetric ? self_x : self_y;

  double* o = out.begin();
  const std::size_t total = symmetric ? nx * (nx + 1) / 2 : nx * ny;
  const PairRange pairs{spec, px, py, self_x, sy, symmetric, o};
  auto body_range = [&](std::size_t t0, std::size_t t1) { pairs(t0, t1); };

  // Batches of about a quarter of a second of Kendall work on one thread:
  // interrupts are checked and progress shown between batches, and each batch
  // ends by joining the threads, which costs more when they are short. Ranges
  // of at least a sixteenth of a batch per thread, so that threads share a
  // batch evenly.
  const double per_item = static_cast<double>(n) + 16.0;
  const std::size_t batch = std::max<std::size_t>(4 * static_cast<std::size_t>(threads),
                                                  static_cast<std::size_t>(1.6e7 / per_item));
  const std::size_t grain = std::max<std::size_t>(
      1, std::min(batch, total) / (16 * static_cast<std::size_t>(threads)));
  diffrank_glue::ProgressLine show(progress, "rank kernel", "pairs", total);
  diffrank_glue::parallel_batches(total, threads, grain, batch, body_range, show);
  return out;
}

// Pair counts of Kendall's tau between two vectors, NaN dropped pairwise.
// [[Rcpp::export(rng = false)]]
Rcpp::NumericVector kendall_pair_counts(Rcpp::NumericVector x, Rcpp::NumericVector y) {
  Rcpp::NumericVector out(7);
  out.attr("names") =
      Rcpp::CharacterVector{"n", "n0", "concordant", "discordant", "tied_x", "tied_y", "tied_xy"};
  const diffrank::KendallCounts c = diffrank::PairCounts()(x.begin(), y.begin(), x.size());
  const double counts[] = {static_cast<double>(c.n),          static_cast<double>(c.n0),
                           static_cast<double>(c.concordant), static_cast<double>(c.discordant),
                           static_cast<double>(c.tied_x),     static_cast<double>(c.tied_y),
                           static_cast<double>(c.tied_xy)};
  std::copy(counts, counts + 7, out.begin());
  return out;
}

// The kernel "tau_a", "tau_b" or "mallows" between two vectors of the same
// length (NaN dropped pairwise): rank_kernel_matrix of two one-column
// matrices, without their set-up (the same counts, so the same value).
// [[Rcpp::export(rng = false)]]
double rank_kernel_pair_cpp(Rcpp::NumericVector x, Rcpp::NumericVector y, std::string kernel,
                            double lambda, bool normalized) {
  const Spec spec = parse_spec(kernel, lambda, normalized, nullptr);
  if (spec.kernel == Kernel::weighted) {
    Rcpp::stop("internal: weighted kernel in rank_kernel_pair_cpp");
  }
  if (x.size() != y.size()) Rcpp::stop("internal: vectors of different lengths");
  const diffrank::KendallCounts c = diffrank::PairCounts()(x.begin(), y.begin(), x.size());
  if (spec.kernel == Kernel::tau_a) return diffrank::tau_a(c);
  if (spec.kernel == Kernel::tau_b) return diffrank::tau_b(c);
  return diffrank::mallows(c, spec.lambda, spec.normalized);
}
