// quantile_variants.hpp against brute force written from the header's
// comments and R's definitions: the summary of one level (weighted mean,
// R's mean(trim =), median, on the log2 scale), the block-by-block weighted
// sums, the observed moments, the choice of extreme samples
// (preprocessCore's scores) and normalization through a subset of features.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <diffrank/quantile_variants.hpp>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "helpers.hpp"

namespace {

using namespace testing_helpers;

const double kNaN = std::numeric_limits<double>::quiet_NaN();

// R's median(v).
double r_median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

// R's mean(v, trim = trim) for 0 < trim, and weighted.mean(v, w) for trim 0.
double r_summary(std::vector<double> v, const std::vector<double>& w, double trim) {
  const std::size_t n = v.size();
  if (trim <= 0.0) {
    double s = 0.0, t = 0.0;
    for (std::size_t j = 0; j < n; ++j) {
      s += w[j] * v[j];
      t += w[j];
    }
    return s / t;
  }
  if (trim >= 0.5) return r_median(v);
  const std::size_t lo = static_cast<std::size_t>(std::floor(n * trim)) + 1, hi = n + 1 - lo;
  std::sort(v.begin(), v.end());
  double s = 0.0;
  for (std::size_t j = lo - 1; j < hi; ++j) s += v[j];
  return s / static_cast<double>(hi - lo + 1);
}

double summarize(std::vector<double> v, const std::vector<double>& w, double trim, bool geometric) {
  return diffrank::summarize_level(v.data(), w.data(), v.size(), trim, geometric);
}

TEST(QuantileVariants, SummarizeLevelIsRsMeanTrimmedMeanOrMedian) {
  std::mt19937_64 rng(91);
  for (std::size_t m = 1; m <= 12; ++m) {
    for (bool ties : {false, true}) {
      std::vector<double> v = ties ? integers(m, rng, 3) : normals(m, rng, 3.0);
      for (double& x : v) x += 10.0;  // positive, for the log2 scale
      const std::vector<double> w = uniforms(m, rng, 0.1, 3.0);
      for (double trim : {0.0, 0.1, 0.2, 0.25, 1.0 / 3.0, 0.49, 0.5, 0.8}) {
        const std::string label = "m " + std::to_string(m) + " trim " + std::to_string(trim) +
                                  (ties ? " ties" : "");
        const double expected = r_summary(v, w, trim);
        EXPECT_NEAR(summarize(v, w, trim, false), expected, 1e-14 * std::abs(expected)) << label;
        std::vector<double> logs(v);
        for (double& x : logs) x = std::log2(x);
        const double geo = std::exp2(r_summary(logs, w, trim));
        EXPECT_NEAR(summarize(v, w, trim, true), geo, 1e-14 * geo) << label << " geometric";
      }
    }
  }
  // the median of an even number of values, the trimmed mean of a few
  EXPECT_EQ(summarize({4.0, 1.0, 3.0, 2.0}, {1, 1, 1, 1}, 0.5, false), 2.5);
  EXPECT_EQ(summarize({100.0, 1.0, 2.0, 3.0, -50.0}, {1, 1, 1, 1, 1}, 0.2, false), 2.0);
  // weights: only their ratios matter
  EXPECT_NEAR(summarize({1.0, 4.0}, {1.0, 3.0}, 0.0, false), 3.25, 1e-15);
  EXPECT_NEAR(summarize({1.0, 4.0}, {10.0, 30.0}, 0.0, false), 3.25, 1e-15);
  EXPECT_NEAR(summarize({2.0, 8.0}, {1.0, 1.0}, 0.0, true), 4.0, 1e-15);
}

// The samples added one at a time give summarize_level()'s value to the
// last bit, and the weighted (geometric) mean written out.
TEST(QuantileVariants, WeightedSumsRepeatSummarizeLevel) {
  std::mt19937_64 rng(92);
  const std::size_t levels = 17, samples = 9;
  std::vector<std::vector<double>> qf(samples);
  for (auto& col : qf) {
    col = uniforms(levels, rng, 0.5, 50.0);
    std::sort(col.begin(), col.end());
  }
  const std::vector<double> w = uniforms(samples, rng, 0.2, 2.0);
  for (bool geometric : {false, true}) {
    std::vector<long double> sum(levels, 0.0L);
    long double total = 0.0L;
    for (std::size_t j = 0; j < samples; ++j) {
      // in two blocks of levels, as the glue feeds a matrix
      diffrank::add_weighted_sample(qf[j].data(), 10, w[j], geometric, sum.data());
      diffrank::add_weighted_sample(qf[j].data() + 10, levels - 10, w[j], geometric,
                                    sum.data() + 10);
      total += w[j];
    }
    for (std::size_t i = 0; i < levels; ++i) {
      std::vector<double> v(samples);
      double num = 0.0, den = 0.0;
      for (std::size_t j = 0; j < samples; ++j) {
        v[j] = qf[j][i];
        num += w[j] * (geometric ? std::log(v[j]) : v[j]);
        den += w[j];
      }
      const double direct = geometric ? std::exp(num / den) : num / den;
      const double value = diffrank::weighted_level_value(sum[i], total, geometric);
      EXPECT_EQ(value, summarize(v, w, 0.0, geometric)) << "level " << i;
      EXPECT_NEAR(value, direct, 1e-14 * direct) << "level " << i;
    }
  }
}

TEST(QuantileVariants, ObservedMeanVarianceSkipsMissingValues) {
  std::mt19937_64 rng(93);
  for (std::size_t p : {2u, 3u, 10u, 1000u}) {
    std::vector<double> x = normals(p, rng, 4.0);
    for (double& v : x) v += 1e3;  // a mean far from 0
    std::bernoulli_distribution miss(0.3);
    for (std::size_t i = 2; i < p; ++i) {
      if (miss(rng)) x[i] = kNaN;
    }
    long double sum = 0.0L, squares = 0.0L;
    std::size_t count = 0;
    for (double v : x) {
      if (std::isnan(v)) continue;
      sum += v;
      ++count;
    }
    const long double mean = sum / count;
    for (double v : x) {
      if (!std::isnan(v)) squares += (v - mean) * (v - mean);
    }
    const double var = static_cast<double>(squares / (count - 1));
    double m = 0.0, s = 0.0;
    diffrank::observed_mean_variance(x.data(), p, m, s);
    EXPECT_NEAR(m, static_cast<double>(mean), 1e-14 * std::abs(static_cast<double>(mean)))
        << "p " << p;
    EXPECT_NEAR(s, var, 1e-12 * var) << "p " << p;
  }
  double m = 0.0, s = 0.0;
  const std::vector<double> small = {1.0, kNaN, 2.0, 6.0};
  diffrank::observed_mean_variance(small.data(), small.size(), m, s);
  EXPECT_EQ(m, 3.0);
  EXPECT_EQ(s, 7.0);  // (4 + 1 + 9) / 2
}

// Removal by the sorted scores: without ties, the n_remove largest scores;
// with ties, as the header says (and preprocessCore does), each of the
// n_remove largest scores removes the first sample with that score, so a
// tied score removes one sample however often it appears.
std::vector<double> removed_by_sorting(const std::vector<double>& score, std::size_t n_remove) {
  const std::size_t n = score.size();
  std::vector<double> sorted(score);
  std::sort(sorted.begin(), sorted.end(), std::greater<double>());
  std::vector<double> w(n, 1.0);
  for (std::size_t r = 0; r < std::min(n_remove, n); ++r) {
    const std::size_t first = std::find(score.begin(), score.end(), sorted[r]) - score.begin();
    w[first] = 0.0;
  }
  return w;
}

TEST(QuantileVariants, RemoveLargestFollowsTheSortedScores) {
  std::mt19937_64 rng(94);
  for (std::size_t n : {1u, 2u, 5u, 11u}) {
    for (bool ties : {false, true}) {
      const std::vector<double> score = ties ? integers(n, rng, 3) : normals(n, rng);
      for (std::size_t n_remove = 0; n_remove <= n + 1; ++n_remove) {
        std::vector<double> w(n, 1.0);
        diffrank::detail::remove_largest(score, n_remove, w.data());
        EXPECT_EQ(w, removed_by_sorting(score, n_remove))
            << "n " << n << " remove " << n_remove << (ties ? " ties" : "");
        if (!ties) {
          // distinct scores: exactly the min(n_remove, n) largest are removed
          std::vector<std::size_t> order(n);
          std::iota(order.begin(), order.end(), 0);
          std::sort(order.begin(), order.end(),
                    [&](std::size_t a, std::size_t b) { return score[a] > score[b]; });
          for (std::size_t r = 0; r < n; ++r) {
            EXPECT_EQ(w[order[r]], r < n_remove ? 0.0 : 1.0) << "n " << n << " r " << r;
          }
        }
      }
    }
  }
  // a tie at the top: two removals, but only the first of the tied samples
  std::vector<double> w(4, 1.0);
  diffrank::detail::remove_largest({1.0, 5.0, 5.0, 2.0}, 2, w.data());
  EXPECT_EQ(w, (std::vector<double>{1.0, 0.0, 1.0, 1.0}));
}

// preprocessCore's scores, written out from the header's comments: for
// sample j, sum over k != j of var_j / var_k + var_k / var_j, and
// |sum over k != j of (mean_k - mean_j)|. Distinct scores only.
std::vector<double> brute_extreme(const std::vector<double>& mean, const std::vector<double>& var,
                                  diffrank::Extreme rule, std::size_t n_remove) {
  const std::size_t n = mean.size();
  std::vector<double> vs(n, 0.0), ms(n, 0.0), w(n, 1.0);
  for (std::size_t j = 0; j < n; ++j) {
    double diff = 0.0;
    for (std::size_t k = 0; k < n; ++k) {
      if (k == j) continue;
      vs[j] += var[j] / var[k] + var[k] / var[j];
      diff += mean[k] - mean[j];
    }
    ms[j] = std::abs(diff);
  }
  auto by = [&](const std::vector<double>& s) {
    std::vector<std::size_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return s[a] > s[b]; });
    return order;
  };
  if (rule == diffrank::Extreme::none || n_remove == 0) return w;
  std::size_t by_var = 0, by_mean = 0;
  if (rule == diffrank::Extreme::variance) by_var = n_remove;
  if (rule == diffrank::Extreme::mean) by_mean = n_remove;
  if (rule == diffrank::Extreme::both) {
    by_var = (n_remove + 1) / 2;  // ceil(n_remove / 2) by variance
    by_mean = n_remove / 2;       // then floor(n_remove / 2) by mean
  }
  const std::vector<std::size_t> vo = by(vs), mo = by(ms);
  for (std::size_t r = 0; r < by_var && r < n; ++r) w[vo[r]] = 0.0;
  // by mean: the largest mean scores among the samples still kept
  std::size_t removed = 0;
  for (std::size_t r = 0; r < n && removed < by_mean; ++r) {
    if (w[mo[r]] == 0.0) continue;
    w[mo[r]] = 0.0;
    ++removed;
  }
  return w;
}

TEST(QuantileVariants, ExtremeWeightsArePreprocessCoresChoice) {
  std::mt19937_64 rng(95);
  using diffrank::Extreme;
  for (std::size_t n : {2u, 3u, 4u, 6u, 9u}) {
    for (int trial = 0; trial < 5; ++trial) {
      const std::vector<double> mean = normals(n, rng), var = uniforms(n, rng, 0.2, 5.0);
      for (Extreme rule : {Extreme::none, Extreme::variance, Extreme::mean, Extreme::both}) {
        for (std::size_t n_remove = 0; n_remove < n; ++n_remove) {
          std::vector<double> w(n, -1.0);
          diffrank::extreme_weights_from_moments(mean.data(), var.data(), n, rule, n_remove,
                                                 w.data());
          EXPECT_EQ(w, brute_extreme(mean, var, rule, n_remove))
              << "n " << n << " rule " << static_cast<int>(rule) << " remove " << n_remove
              << " trial " << trial;
        }
      }
    }
  }
  // a small case by hand: sample 3 has by far the largest variance, sample
  // 0 the most distant mean; "both" with two removals drops each of them
  const std::vector<double> mean = {9.0, 0.0, 0.5, 1.0}, var = {1.0, 1.2, 0.9, 20.0};
  std::vector<double> w(4);
  diffrank::extreme_weights_from_moments(mean.data(), var.data(), 4, Extreme::both, 2, w.data());
  EXPECT_EQ(w, (std::vector<double>{0.0, 1.0, 1.0, 0.0}));
  diffrank::extreme_weights_from_moments(mean.data(), var.data(), 4, Extreme::variance, 1, w.data());
  EXPECT_EQ(w, (std::vector<double>{1.0, 1.0, 1.0, 0.0}));
  diffrank::extreme_weights_from_moments(mean.data(), var.data(), 4, Extreme::mean, 1, w.data());
  EXPECT_EQ(w, (std::vector<double>{0.0, 1.0, 1.0, 1.0}));
  // "both" where the most extreme mean is also the most extreme variance:
  // that sample is skipped and the next mean is taken
  const std::vector<double> var2 = {20.0, 1.2, 0.9, 1.0};
  diffrank::extreme_weights_from_moments(mean.data(), var2.data(), 4, Extreme::both, 2, w.data());
  EXPECT_EQ(w, brute_extreme(mean, var2, Extreme::both, 2));
  EXPECT_EQ(w[0], 0.0);
  EXPECT_EQ(std::count(w.begin(), w.end(), 0.0), 2);
}

// Linear interpolation of the increasing v at 0-based position h.
double at(const std::vector<double>& v, double h) {
  const std::size_t lo = static_cast<std::size_t>(std::floor(h));
  if (lo + 1 >= v.size()) return v.back();
  return v[lo] + (h - static_cast<double>(lo)) * (v[lo + 1] - v[lo]);
}

// The level of v among the sorted subset values s (q of them): the distinct
// values at the mean 0-based rank of their tie block over q - 1, linear in
// between, constant beyond.
double brute_level(const std::vector<double>& s, double v) {
  const std::size_t q = s.size();
  std::vector<double> values, levels;
  for (std::size_t k = 0; k < q;) {
    std::size_t e = k;
    while (e < q && s[e] == s[k]) ++e;
    values.push_back(s[k]);
    levels.push_back(q == 1 ? 0.5 : 0.5 * static_cast<double>(k + e - 1) / (q - 1.0));
    k = e;
  }
  if (v <= values.front()) return levels.front();
  if (v >= values.back()) return levels.back();
  std::size_t d = 0;
  while (values[d + 1] <= v) ++d;
  return levels[d] + (v - values[d]) / (values[d + 1] - values[d]) * (levels[d + 1] - levels[d]);
}

TEST(QuantileVariants, SubsetLevelsInterpolateTheMeanRanks) {
  std::mt19937_64 rng(96);
  for (std::size_t q : {1u, 2u, 5u, 12u}) {
    for (bool ties : {false, true}) {
      std::vector<double> s = ties ? integers(q, rng, 4) : normals(q, rng);
      std::sort(s.begin(), s.end());
      diffrank::SubsetLevels levels;
      levels.fit(s.data(), q);
      std::vector<double> probes = uniforms(40, rng, s.front() - 1.0, s.back() + 1.0);
      for (double v : s) probes.push_back(v);
      for (double v : probes) {
        const double expected = brute_level(s, v);
        EXPECT_NEAR(levels.level_of(v), expected, 1e-15)
            << "q " << q << " v " << v << (ties ? " ties" : "");
      }
      EXPECT_EQ(levels.level_of(s.front() - 100.0), brute_level(s, s.front()));
      EXPECT_EQ(levels.level_of(s.back() + 100.0), brute_level(s, s.back()));
    }
  }
  // by hand: values 1, 2, 2, 4 have levels 0, 1.5 / 3, 1.5 / 3, 1
  const std::vector<double> s = {1.0, 2.0, 2.0, 4.0};
  diffrank::SubsetLevels levels;
  levels.fit(s.data(), 4);
  EXPECT_EQ(levels.level_of(2.0), 0.5);
  EXPECT_NEAR(levels.level_of(1.5), 0.25, 1e-16);
  EXPECT_NEAR(levels.level_of(3.0), 0.75, 1e-16);
  EXPECT_EQ(levels.level_of(0.0), 0.0);
  EXPECT_EQ(levels.level_of(9.0), 1.0);
}

// The subset's observed entries normalized as a column of their own (rank
// levels r / (q - 1) under the ties rule), the others at their level among
// the subset's values, missing entries copied.
std::vector<double> brute_subset(const std::vector<double>& x, const std::vector<int>& in_subset,
                                 const std::vector<double>& target, diffrank::Ties ties) {
  const std::size_t p = x.size(), t = target.size();
  std::vector<double> sub;
  for (std::size_t i = 0; i < p; ++i) {
    if (in_subset[i] != 0 && !std::isnan(x[i])) sub.push_back(x[i]);
  }
  const std::size_t q = sub.size();
  std::vector<double> sorted(sub);
  std::sort(sorted.begin(), sorted.end());
  auto level = [&](double k) { return q == 1 ? 0.5 : k / (q - 1.0); };
  std::vector<double> out(p);
  for (std::size_t i = 0; i < p; ++i) {
    if (std::isnan(x[i])) {
      out[i] = x[i];
      continue;
    }
    if (in_subset[i] == 0) {
      out[i] = at(target, brute_level(sorted, x[i]) * (t - 1.0));
      continue;
    }
    std::size_t below = 0, tied = 0, tied_before = 0;
    for (std::size_t l = 0; l < p; ++l) {
      if (in_subset[l] == 0 || std::isnan(x[l])) continue;
      below += x[l] < x[i];
      tied += x[l] == x[i];
      tied_before += x[l] == x[i] && l < i;
    }
    if (ties == diffrank::Ties::first) {
      out[i] = at(target, level(below + tied_before) * (t - 1.0));
    } else if (ties == diffrank::Ties::midrank) {
      out[i] = at(target, level(below + 0.5 * (tied - 1.0)) * (t - 1.0));
    } else {
      double s = 0.0;
      for (std::size_t k = below; k < below + tied; ++k) s += at(target, level(k) * (t - 1.0));
      out[i] = s / tied;
    }
  }
  return out;
}

TEST(QuantileVariants, SubsetNormalizerIsTheBruteForceRule) {
  std::mt19937_64 rng(97);
  diffrank::SubsetNormalizer normalize;  // reused from column to column
  for (std::size_t p : {6u, 15u, 40u}) {
    for (std::size_t t : {std::size_t(1), std::size_t(4), p}) {
      for (bool ties : {false, true}) {
        std::vector<double> x = ties ? integers(p, rng, 5) : normals(p, rng);
        std::vector<int> in_subset(p, 0);
        for (std::size_t i = 0; i < p; i += 2) in_subset[i] = 1;
        x[1] = kNaN;  // missing outside the subset
        x[2] = kNaN;  // and in it
        std::vector<double> target = normals(t, rng, 3.0);
        std::sort(target.begin(), target.end());
        std::size_t q = 0;
        for (std::size_t i = 0; i < p; ++i) q += in_subset[i] != 0 && !std::isnan(x[i]);
        for (diffrank::Ties rule :
             {diffrank::Ties::midrank, diffrank::Ties::average, diffrank::Ties::first}) {
          std::vector<double> out(p, -999.0);
          const std::size_t got =
              normalize(x.data(), p, in_subset.data(), target.data(), t, rule, out.data());
          const std::vector<double> expected = brute_subset(x, in_subset, target, rule);
          const std::string label = "p " + std::to_string(p) + " t " + std::to_string(t) +
                                    " rule " + std::to_string(static_cast<int>(rule)) +
                                    (ties ? " ties" : "");
          EXPECT_EQ(got, q) << label;
          for (std::size_t i = 0; i < p; ++i) {
            if (std::isnan(expected[i])) {
              EXPECT_TRUE(std::isnan(out[i])) << label << " i " << i;
            } else {
              EXPECT_NEAR(out[i], expected[i], 1e-14 * (1.0 + std::abs(expected[i])))
                  << label << " i " << i;
            }
          }
        }
      }
    }
  }
  // no observed subset value: 0, and nothing written
  const std::vector<double> x = {1.0, kNaN, 3.0};
  const std::vector<int> in_subset = {0, 1, 0};
  const std::vector<double> target = {0.0, 1.0};
  std::vector<double> out(3, -5.0);
  EXPECT_EQ(normalize(x.data(), 3, in_subset.data(), target.data(), 2, diffrank::Ties::midrank,
                      out.data()),
            0u);
  EXPECT_EQ(out, (std::vector<double>(3, -5.0)));
}

}  // namespace
