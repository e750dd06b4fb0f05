// The compile-time operator contract of operator.hpp: every family's column
// object meets it, and a type that lacks a product does not.
#include <gtest/gtest.h>

#include <cstddef>
#include <diffrank/operator.hpp>
#include <diffrank/permutahedron.hpp>
#include <diffrank/perturb.hpp>
#include <diffrank/sinkhorn_operator.hpp>
#include <diffrank/sorting_network.hpp>

namespace {

struct SizesOnly {
  std::size_t input_size() const { return 1; }
  std::size_t output_size() const { return 1; }
};

struct NoJvp : SizesOnly {
  void vjp(const double*, double*) {}
};

struct Complete : NoJvp {
  void jvp(const double*, double*) const {}
};

}  // namespace

TEST(OperatorContract, EveryFamilyMeetsIt) {
  EXPECT_TRUE(diffrank::is_column_operator<diffrank::SoftOperator>::value);
  EXPECT_TRUE(diffrank::is_column_operator<diffrank::PerturbedOperator>::value);
  EXPECT_TRUE(diffrank::is_column_operator<diffrank::SinkhornColumnView>::value);
  EXPECT_TRUE(diffrank::is_column_operator<diffrank::NetworkOperator>::value);
  EXPECT_TRUE(diffrank::has_jacobian<diffrank::SoftOperator>::value);
  EXPECT_TRUE(diffrank::has_jacobian<diffrank::PerturbedOperator>::value);
  EXPECT_FALSE(diffrank::has_jacobian<diffrank::SinkhornColumnView>::value);
}

TEST(OperatorContract, ATypeWithoutAProductDoesNotMeetIt) {
  EXPECT_FALSE(diffrank::is_column_operator<SizesOnly>::value);
  EXPECT_FALSE(diffrank::is_column_operator<NoJvp>::value);
  EXPECT_TRUE(diffrank::is_column_operator<Complete>::value);
  EXPECT_FALSE(diffrank::is_column_operator<double>::value);
}
