// exact_sum.hpp: sums that are exact whatever the order of their terms, and
// their mean rounded once. Checked on sums whose exact value is known, on the
// rounding of a mean against its exact integer form, and on order, splits,
// merges and the byte format.
#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <diffrank/exact_sum.hpp>
#include <limits>
#include <random>
#include <vector>

namespace {

using diffrank::ExactSum;

double mean_of(const std::vector<double>& terms, std::uint64_t count) {
  ExactSum s;
  for (double t : terms) s.add(t);
  return s.mean(count);
}

std::uint64_t bits_of(double x) {
  std::uint64_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}

TEST(ExactSum, KnownSums) {
  EXPECT_EQ(mean_of({}, 3), 0.0);
  EXPECT_EQ(mean_of({1.0, 2.0, 3.0}, 3), 2.0);
  // 0.1 + 0.2 + 0.3 is 0.6000000000000001 in floating point; the exact sum
  // of these three doubles, 0.60000000000000000555, rounds to 0.6
  EXPECT_EQ(mean_of({0.1, 0.2, 0.3}, 1), 0.6);
  // cancellation that floating point loses
  EXPECT_EQ(mean_of({1e300, 1.0, -1e300}, 3), 1.0 / 3.0);
  EXPECT_EQ(mean_of({1e308, 1e308, 1e308}, 3), 1e308);  // the sum overflows a double
  EXPECT_EQ(mean_of({DBL_MAX, DBL_MAX}, 2), DBL_MAX);
  EXPECT_EQ(mean_of({DBL_MAX, -DBL_MAX, 5.0}, 1), 5.0);
  EXPECT_EQ(mean_of({-2.5, -0.5}, 2), -1.5);
  // an exact zero is +0, also from -0 terms and from cancellation
  EXPECT_EQ(bits_of(mean_of({-0.0, -0.0}, 2)), bits_of(0.0));
  EXPECT_EQ(bits_of(mean_of({-3.0, 3.0}, 2)), bits_of(0.0));
}

TEST(ExactSum, SubnormalsRoundToNearestEven) {
  const double tiny = std::numeric_limits<double>::denorm_min();
  EXPECT_EQ(mean_of({tiny, tiny}, 2), tiny);
  EXPECT_EQ(mean_of({tiny}, 2), 0.0);               // half the smallest: to even, 0
  EXPECT_EQ(mean_of({3 * tiny}, 2), 2 * tiny);      // 1.5: to even, 2
  EXPECT_EQ(mean_of({5 * tiny}, 2), 2 * tiny);      // 2.5: to even, 2
  EXPECT_EQ(mean_of({tiny, tiny, tiny}, 4), tiny);  // 0.75: up
  EXPECT_EQ(mean_of({DBL_MIN, -tiny}, 1), DBL_MIN - tiny);
  EXPECT_EQ(mean_of({-tiny}, 3), -0.0);
}

TEST(ExactSum, InvalidTermsGiveNaN) {
  EXPECT_TRUE(std::isnan(mean_of({1.0, std::numeric_limits<double>::infinity()}, 2)));
  EXPECT_TRUE(std::isnan(mean_of({std::nan(""), 1.0}, 2)));
  EXPECT_TRUE(std::isnan(mean_of({1.0}, 0)));
}

// The mean of integers times 2^-40 against its exact form: x is the nearest
// double to S / n iff |x n - S| < n ulp(x) / 2, or equal with an even x.
TEST(ExactSum, MeanIsCorrectlyRounded) {
  std::mt19937_64 rng(7);
  __extension__ typedef __int128 int128;
  for (int trial = 0; trial < 2000; ++trial) {
    const std::uint64_t n = 1 + rng() % 999;
    ExactSum s;
    int128 exact = 0;
    for (std::uint64_t j = 0; j < n; ++j) {
      const std::int64_t k = static_cast<std::int64_t>(rng() >> 14) - (std::int64_t{1} << 49);
      s.add(std::ldexp(static_cast<double>(k), -40));
      exact += k;
    }
    const double x = s.mean(n);
    int e;
    const double frac = std::frexp(x, &e);
    if (x == 0) {
      EXPECT_LT(static_cast<double>(exact < 0 ? -exact : exact), static_cast<double>(n));
      continue;
    }
    // x = m 2^(e - 53), m an integer of 53 bits: in units of 2^-100 all
    // terms are integers below 2^127
    const std::int64_t m = static_cast<std::int64_t>(std::ldexp(frac, 53));
    const int scale = e - 53 + 100;
    ASSERT_GE(scale, 1) << "the test's values are too small for integer checks";
    ASSERT_LE(scale, 60) << "the test's values are too large for integer checks";
    const int128 xn = static_cast<int128>(m) * static_cast<int128>(n) << scale;
    const int128 gap = xn - (exact << 60);
    const int128 half_ulp_n = static_cast<int128>(n) << (scale - 1);
    const int128 abs_gap = gap < 0 ? -gap : gap;
    if (abs_gap == half_ulp_n) {
      EXPECT_EQ(m % 2, 0) << "a tie must round to even";
    } else {
      EXPECT_LT(abs_gap, half_ulp_n) << "trial " << trial;
    }
  }
}

// Terms of every magnitude, summed in any order, in parts merged in any
// order, and through the byte format: the same bits.
TEST(ExactSum, OrderSplitsAndBytesDoNotMatter) {
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> unit(-1.0, 1.0);
  std::uniform_int_distribution<int> exponent(-1074, 1000);
  std::vector<double> terms(3000);
  for (double& t : terms) t = std::ldexp(unit(rng), exponent(rng));
  terms.push_back(DBL_MAX);
  terms.push_back(-DBL_MAX);
  terms.push_back(std::numeric_limits<double>::denorm_min());
  const double reference = mean_of(terms, terms.size());
  ASSERT_TRUE(std::isfinite(reference));
  for (int trial = 0; trial < 20; ++trial) {
    std::shuffle(terms.begin(), terms.end(), rng);
    EXPECT_EQ(bits_of(mean_of(terms, terms.size())), bits_of(reference));
    // three parts, merged in reverse, the middle one through bytes
    const std::size_t a = rng() % terms.size(), b = a + rng() % (terms.size() - a);
    std::vector<ExactSum> parts(3);
    for (std::size_t i = 0; i < terms.size(); ++i) parts[i < a ? 0 : (i < b ? 1 : 2)].add(terms[i]);
    std::vector<ExactSum> carried(1);
    const std::vector<ExactSum> middle(1, parts[1]);
    const std::vector<unsigned char> bytes = diffrank::exact_sums_to_bytes(middle);
    ASSERT_TRUE(diffrank::add_exact_sums_from_bytes(bytes.data(), bytes.size(), carried));
    ExactSum merged = parts[2];
    merged.add(carried[0]);
    merged.add(parts[0]);
    EXPECT_EQ(bits_of(merged.mean(terms.size())), bits_of(reference));
  }
}

TEST(ExactSum, BytesAreChecked) {
  std::vector<ExactSum> sums(2);
  sums[0].add(1.5);
  sums[1].add(-1e-300);
  sums[1].add(1e300);
  const std::vector<unsigned char> bytes = diffrank::exact_sums_to_bytes(sums);
  std::vector<ExactSum> wrong_size(3), truncated(2), back(2);
  EXPECT_FALSE(diffrank::add_exact_sums_from_bytes(bytes.data(), bytes.size(), wrong_size));
  EXPECT_FALSE(diffrank::add_exact_sums_from_bytes(bytes.data(), bytes.size() - 1, truncated));
  ASSERT_TRUE(diffrank::add_exact_sums_from_bytes(bytes.data(), bytes.size(), back));
  EXPECT_EQ(back[0].mean(1), 1.5);
  EXPECT_EQ(back[1].mean(1), 1e300);
  EXPECT_EQ(back[1].windows(), 2u);
}

}  // namespace
