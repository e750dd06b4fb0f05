// nmf.hpp: one multiplicative update of h then w (Lee and Seung 2001, KL
// divergence) against the formulas written as plain dense loops, with and
// without a mask; the same result when columns and rows are split into
// ranges (as the glue splits them over threads); and the generalized KL
// divergence never increasing along the updates.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <diffrank/nmf.hpp>
#include <random>
#include <string>
#include <vector>

#include "helpers.hpp"

namespace {

using namespace testing_helpers;

struct Nmf {
  std::size_t d, n, k;
  std::vector<double> x, mask, w, h;  // x, mask d x n; w d x k; h k x n (column-major)
};

Nmf random_nmf(std::size_t d, std::size_t n, std::size_t k, bool masked, std::mt19937_64& rng) {
  Nmf p{d, n, k, {}, {}, {}, {}};
  p.x = uniforms(d * n, rng, 0.0, 5.0);
  p.w = uniforms(d * k, rng, 0.1, 2.0);
  p.h = uniforms(k * n, rng, 0.1, 2.0);
  if (masked) {
    p.mask.assign(d * n, 1.0);
    std::bernoulli_distribution miss(0.25);
    for (std::size_t e = 0; e < d * n; ++e) {
      if (miss(rng)) p.mask[e] = 0.0;
    }
    // every row and column keeps an observed entry (the masses of the
    // formulas are then positive): the diagonal
    for (std::size_t e = 0; e < std::max(d, n); ++e) p.mask[(e % d) + (e % n) * d] = 1.0;
    for (std::size_t e = 0; e < d * n; ++e) {
      if (p.mask[e] == 0.0) p.x[e] = 0.0;  // x is 0 where the mask is
    }
  }
  return p;
}

double mask_at(const Nmf& p, std::size_t i, std::size_t j) {
  return p.mask.empty() ? 1.0 : p.mask[i + j * p.d];
}

// (w h)[i, j]
double fit_at(const std::vector<double>& w, const std::vector<double>& h, std::size_t d,
              std::size_t k, std::size_t i, std::size_t j) {
  double s = 0.0;
  for (std::size_t l = 0; l < k; ++l) s += w[i + l * d] * h[l + j * k];
  return s;
}

// One update of h then w from the formulas:
//   h[l, j] *= sum_i w[i, l] mask[i, j] x[i, j] / (w h)[i, j] / sum_i w[i, l] mask[i, j]
//   w[i, l] *= sum_j mask[i, j] x[i, j] / (w h)[i, j] h[l, j] / sum_j mask[i, j] h[l, j]
void reference_update(Nmf& p) {
  const std::size_t d = p.d, n = p.n, k = p.k;
  std::vector<double> h(p.h);
  for (std::size_t j = 0; j < n; ++j) {
    for (std::size_t l = 0; l < k; ++l) {
      double num = 0.0, den = 0.0;
      for (std::size_t i = 0; i < d; ++i) {
        const double mk = mask_at(p, i, j);
        num += p.w[i + l * d] * mk * p.x[i + j * d] / fit_at(p.w, p.h, d, k, i, j);
        den += p.w[i + l * d] * mk;
      }
      h[l + j * k] = p.h[l + j * k] * num / den;
    }
  }
  p.h = h;
  std::vector<double> w(p.w);
  for (std::size_t i = 0; i < d; ++i) {
    for (std::size_t l = 0; l < k; ++l) {
      double num = 0.0, den = 0.0;
      for (std::size_t j = 0; j < n; ++j) {
        const double mk = mask_at(p, i, j);
        num += mk * p.x[i + j * d] / fit_at(p.w, p.h, d, k, i, j) * p.h[l + j * k];
        den += mk * p.h[l + j * k];
      }
      w[i + l * d] = p.w[i + l * d] * num / den;
    }
  }
  p.w = w;
}

// One update by the header, columns of h and rows of w in the given ranges
// (cut points, from 0 to n and to d), as the glue drives it.
void header_update(Nmf& p, const std::vector<std::size_t>& h_cuts,
                   const std::vector<std::size_t>& w_cuts) {
  diffrank::KlNmfProblem prob;
  prob.x = p.x.data();
  prob.mask = p.mask.empty() ? nullptr : p.mask.data();
  prob.d = p.d;
  prob.n = p.n;
  prob.k = p.k;
  std::vector<double> column_mass(p.k), row_mass(p.k);
  if (prob.mask == nullptr) diffrank::kl_nmf_column_mass(prob, p.w.data(), column_mass.data());
  for (std::size_t c = 0; c + 1 < h_cuts.size(); ++c) {
    diffrank::kl_nmf_update_h(prob, p.w.data(), column_mass.data(), p.h.data(), h_cuts[c],
                              h_cuts[c + 1]);
  }
  if (prob.mask == nullptr) diffrank::kl_nmf_row_mass(prob, p.h.data(), row_mass.data());
  // ranges in reverse order: each reads only its own rows of w
  for (std::size_t c = w_cuts.size() - 1; c-- > 0;) {
    diffrank::kl_nmf_update_w(prob, p.h.data(), row_mass.data(), p.w.data(), w_cuts[c],
                              w_cuts[c + 1]);
  }
}

double kl_divergence(const Nmf& p) {
  double total = 0.0;
  for (std::size_t j = 0; j < p.n; ++j) {
    for (std::size_t i = 0; i < p.d; ++i) {
      const double mk = mask_at(p, i, j);
      if (mk == 0.0) continue;
      const double x = p.x[i + j * p.d], f = fit_at(p.w, p.h, p.d, p.k, i, j);
      total += (x > 0.0 ? x * std::log(x / f) : 0.0) - x + f;
    }
  }
  return total;
}

TEST(KlNmf, MassesAreColumnAndRowSums) {
  std::mt19937_64 rng(71);
  const Nmf p = random_nmf(6, 9, 3, false, rng);
  diffrank::KlNmfProblem prob;
  prob.x = p.x.data();
  prob.d = p.d;
  prob.n = p.n;
  prob.k = p.k;
  std::vector<double> cm(p.k), rm(p.k);
  diffrank::kl_nmf_column_mass(prob, p.w.data(), cm.data());
  diffrank::kl_nmf_row_mass(prob, p.h.data(), rm.data());
  for (std::size_t l = 0; l < p.k; ++l) {
    double c = 0.0, r = 0.0;
    for (std::size_t i = 0; i < p.d; ++i) c += p.w[i + l * p.d];
    for (std::size_t j = 0; j < p.n; ++j) r += p.h[l + j * p.k];
    EXPECT_NEAR(cm[l], c, 1e-14 * c);
    EXPECT_NEAR(rm[l], r, 1e-14 * r);
  }
}

TEST(KlNmf, OneUpdateIsTheFormula) {
  std::mt19937_64 rng(72);
  struct Size {
    std::size_t d, n, k;
  };
  for (const Size& sz : {Size{5, 7, 2}, Size{12, 4, 3}, Size{1, 6, 1}, Size{9, 11, 4}}) {
    for (bool masked : {false, true}) {
      Nmf p = random_nmf(sz.d, sz.n, sz.k, masked, rng);
      Nmf ref(p);
      reference_update(ref);
      header_update(p, {0, sz.n}, {0, sz.d});
      const std::string label = "d " + std::to_string(sz.d) + " n " + std::to_string(sz.n) +
                                " k " + std::to_string(sz.k) + (masked ? " masked" : "");
      EXPECT_LT(relative_error(p.h, ref.h), 1e-12) << label;
      EXPECT_LT(relative_error(p.w, ref.w), 1e-12) << label;
      for (std::size_t e = 0; e < p.w.size(); ++e) {
        EXPECT_NEAR(p.w[e], ref.w[e], 1e-12 * ref.w[e]) << label;
      }
      for (std::size_t e = 0; e < p.h.size(); ++e) {
        EXPECT_NEAR(p.h[e], ref.h[e], 1e-12 * ref.h[e]) << label;
      }
    }
  }
}

// The glue splits columns of h and rows of w over threads: any split gives
// the same result, bit for bit.
TEST(KlNmf, RangesGiveTheWholeUpdate) {
  std::mt19937_64 rng(73);
  for (bool masked : {false, true}) {
    Nmf whole = random_nmf(10, 13, 3, masked, rng);
    Nmf split(whole);
    for (int it = 0; it < 3; ++it) {
      header_update(whole, {0, 13}, {0, 10});
      header_update(split, {0, 1, 5, 6, 13}, {0, 3, 4, 10});
    }
    EXPECT_EQ(whole.h, split.h) << (masked ? "masked" : "");
    EXPECT_EQ(whole.w, split.w) << (masked ? "masked" : "");
  }
}

// A mask of ones is no mask: the masses summed with the mask are colSums(w)
// and rowSums(h), in the same order, so the updates agree bit for bit.
TEST(KlNmf, MaskOfOnesIsNoMask) {
  std::mt19937_64 rng(74);
  Nmf plain = random_nmf(6, 8, 2, false, rng);
  Nmf ones(plain);
  ones.mask.assign(plain.d * plain.n, 1.0);
  for (int it = 0; it < 3; ++it) {
    header_update(plain, {0, plain.n}, {0, plain.d});
    header_update(ones, {0, ones.n}, {0, ones.d});
  }
  EXPECT_EQ(plain.h, ones.h);
  EXPECT_EQ(plain.w, ones.w);
}

// A column or a row without any observed entry has zero mass: the floor of
// the masses keeps the update finite (no 0 / 0).
TEST(KlNmf, EmptyColumnOrRowStaysFinite) {
  std::mt19937_64 rng(76);
  Nmf p = random_nmf(5, 6, 2, true, rng);
  for (std::size_t i = 0; i < p.d; ++i) {
    p.mask[i + 2 * p.d] = 0.0;  // column 2
    p.x[i + 2 * p.d] = 0.0;
  }
  for (std::size_t j = 0; j < p.n; ++j) {
    p.mask[3 + j * p.d] = 0.0;  // row 3
    p.x[3 + j * p.d] = 0.0;
  }
  for (int it = 0; it < 3; ++it) header_update(p, {0, p.n}, {0, p.d});
  for (double v : p.w) EXPECT_TRUE(std::isfinite(v) && v >= 0.0);
  for (double v : p.h) EXPECT_TRUE(std::isfinite(v) && v >= 0.0);
}

TEST(KlNmf, DivergenceNeverIncreases) {
  std::mt19937_64 rng(75);
  for (bool masked : {false, true}) {
    Nmf p = random_nmf(15, 20, 3, masked, rng);
    double previous = kl_divergence(p);
    const double start = previous;
    for (int it = 0; it < 20; ++it) {
      header_update(p, {0, p.n}, {0, p.d});
      const double now = kl_divergence(p);
      EXPECT_LE(now, previous * (1.0 + 1e-13)) << "iteration " << it << (masked ? " masked" : "");
      previous = now;
    }
    EXPECT_LT(previous, 0.9 * start) << (masked ? "masked" : "");  // and actually decreases
    for (double v : p.w) EXPECT_GT(v, 0.0);
    for (double v : p.h) EXPECT_GT(v, 0.0);
  }
}

}  // namespace
