// suquan.hpp against brute force written from the header's top comment: the
// losses (a direct sum, central differences), the penalties, the
// normalization Psi_f and its adjoint (the bilinear form f' u(w) = w' Psi_f(x)),
// the operator of method "svd" as an explicit matrix, the projection onto C
// against an enumeration of C's faces, the roughness prox and the f step
// against projected gradient runs, the optimality conditions of the linear
// models, lambda_max, and method "bnd" (J never increases, and the fit does
// not depend on how the executor runs the chunks).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <diffrank/suquan.hpp>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace sq = diffrank::suquan;
using sq::Family;
using sq::Index;
using sq::Matrix;
using sq::Vector;

const Family kFamilies[] = {Family::gaussian, Family::binomial, Family::multinomial};

std::string name(Family family) {
  return family == Family::gaussian ? "gaussian"
                                    : (family == Family::binomial ? "binomial" : "multinomial");
}

Index classes(Family family) { return family == Family::multinomial ? 3 : 1; }

Matrix normal_matrix(Index rows, Index cols, std::mt19937_64& rng, double sd = 1.0) {
  std::normal_distribution<double> d(0.0, sd);
  Matrix m(rows, cols);
  for (Index c = 0; c < cols; ++c) {
    for (Index r = 0; r < rows; ++r) m(r, c) = d(rng);
  }
  return m;
}

Vector normal_vector(Index n, std::mt19937_64& rng, double sd = 1.0) {
  return normal_matrix(n, 1, rng, sd).col(0);
}

// Labels of the family for n samples from a score: values (gaussian), 0/1
// (binomial) or one-hot rows of three classes (multinomial).
Matrix labels(Family family, const Vector& score) {
  const Index n = score.size();
  Matrix Y = Matrix::Zero(n, classes(family));
  for (Index i = 0; i < n; ++i) {
    if (family == Family::gaussian) {
      Y(i, 0) = score[i];
    } else if (family == Family::binomial) {
      Y(i, 0) = score[i] > 0.0 ? 1.0 : 0.0;
    } else {
      Y(i, score[i] < -0.5 ? 0 : (score[i] < 0.5 ? 1 : 2)) = 1.0;
    }
  }
  return Y;
}

// A random target with mean 0 and mean square 1 (the standardized start).
Vector standardized_target(Index p, std::mt19937_64& rng) {
  Vector f = normal_vector(p, rng);
  std::sort(f.data(), f.data() + p);
  f.array() -= f.mean();
  return f / std::sqrt(f.squaredNorm() / static_cast<double>(p));
}

// Each entry's 0-based midrank within its column: the number of smaller
// entries plus half the number of other equal entries.
Matrix midranks(const Matrix& x) {
  Matrix h(x.rows(), x.cols());
  for (Index i = 0; i < x.cols(); ++i) {
    for (Index j = 0; j < x.rows(); ++j) {
      double less = 0.0, equal = 0.0;
      for (Index l = 0; l < x.rows(); ++l) {
        if (l == j) continue;
        less += x(l, i) < x(j, i);
        equal += x(l, i) == x(j, i);
      }
      h(j, i) = less + 0.5 * equal;
    }
  }
  return h;
}

// Fractional positions in [0, p - 1]: uniform values, whole and half
// numbers, and both ends.
Matrix random_positions(Index p, Index n, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> real(0.0, static_cast<double>(p - 1));
  std::uniform_int_distribution<int> kind(0, 4), whole(0, static_cast<int>(p - 1));
  Matrix h(p, n);
  for (Index i = 0; i < n; ++i) {
    for (Index j = 0; j < p; ++j) {
      const int k = kind(rng);
      const double w = whole(rng);
      h(j, i) = k <= 1 ? real(rng)
                       : (k == 2 ? w
                                 : (k == 3 ? std::min(w + 0.5, static_cast<double>(p - 1))
                                           : (j % 2 == 0 ? 0.0 : static_cast<double>(p - 1))));
    }
  }
  return h;
}

// f at the fractional position h, written plainly: linear interpolation
// between the two neighbouring entries, the last entry at h = p - 1.
double value_at(const Vector& f, double h) {
  const Index p = f.size();
  const double below = std::floor(h);
  const Index lo = static_cast<Index>(below);
  if (lo >= p - 1) return f[p - 1];
  const double t = h - below;
  return (1.0 - t) * f[lo] + t * f[lo + 1];
}

// The matrix A of sample i: Psi_f(x_i) = A f, row j holding the weights of
// the positions around position(j, i).
Matrix interpolation_matrix(const Matrix& position, Index i) {
  const Index p = position.rows();
  Matrix A = Matrix::Zero(p, p);
  for (Index j = 0; j < p; ++j) {
    for (Index m = 0; m < p; ++m) {
      Vector e = Vector::Zero(p);
      e[m] = 1.0;
      A(j, m) = value_at(e, position(j, i));
    }
  }
  return A;
}

Matrix plain_normalize(const Matrix& position, const Vector& f) {
  Matrix z(position.rows(), position.cols());
  for (Index i = 0; i < position.cols(); ++i) {
    for (Index j = 0; j < position.rows(); ++j) z(j, i) = value_at(f, position(j, i));
  }
  return z;
}

// One sample's loss, written from the definitions.
double plain_loss(Family family, const Matrix& Y, const Matrix& eta, Index i) {
  if (family == Family::gaussian) return 0.5 * (eta(i, 0) - Y(i, 0)) * (eta(i, 0) - Y(i, 0));
  if (family == Family::binomial) return std::log(1.0 + std::exp(eta(i, 0))) - Y(i, 0) * eta(i, 0);
  double sum = 0.0, dot = 0.0;
  for (Index k = 0; k < Y.cols(); ++k) {
    sum += std::exp(eta(i, k));
    dot += Y(i, k) * eta(i, k);
  }
  return std::log(sum) - dot;
}

double plain_mean_loss(Family family, const Matrix& Y, const Matrix& eta) {
  double total = 0.0;
  for (Index i = 0; i < Y.rows(); ++i) total += plain_loss(family, Y, eta, i);
  return total / static_cast<double>(Y.rows());
}

double plain_roughness(const Vector& f) {
  double total = 0.0;
  for (Index k = 2; k < f.size(); ++k) total += std::pow(f[k] - 2.0 * f[k - 1] + f[k - 2], 2);
  return total;
}

// J of the header's comment, from the positions, written plainly.
double plain_objective(Family family, const Matrix& position, const Matrix& Y, const Vector& f,
                       const Matrix& w, const Vector& b, double lambda, double alpha,
                       double smooth) {
  const Index n = position.cols(), p = position.rows(), K = Y.cols();
  Matrix eta(n, K);
  for (Index i = 0; i < n; ++i) {
    for (Index k = 0; k < K; ++k) {
      double g = b[k];
      for (Index j = 0; j < p; ++j) g += w(j, k) * value_at(f, position(j, i));
      eta(i, k) = g;
    }
  }
  double l2 = 0.0, l1 = 0.0;
  for (Index k = 0; k < K; ++k) {
    for (Index j = 0; j < p; ++j) {
      l2 += w(j, k) * w(j, k);
      l1 += std::abs(w(j, k));
    }
  }
  return plain_mean_loss(family, Y, eta) + lambda * ((1.0 - alpha) * l2 + alpha * l1) +
         smooth * plain_roughness(f);
}

// f in C = {non-decreasing, sum 0, norm <= radius}, up to rounding.
void expect_in_c(const Vector& f, double radius, const std::string& label) {
  for (Index j = 1; j < f.size(); ++j) EXPECT_GE(f[j], f[j - 1]) << label << " j " << j;
  EXPECT_NEAR(f.sum(), 0.0, 1e-13 * (1.0 + f.cwiseAbs().sum())) << label;
  EXPECT_LE(f.norm(), radius * (1.0 + 1e-14)) << label;
}

// The Euclidean projection onto C by enumeration of C's faces. The centred
// non-decreasing vectors are the cone of the centred steps s_m (m = 1 ..
// p - 1: 1 from position m on, minus its mean) with coefficients a_m >= 0
// (a_m = f_m - f_{m-1}). The projection y lies in the relative interior of
// one face, spanned by {s_m : m in S}, and is then also the projection onto
// (span of that face) intersected with the ball: the projection onto the
// subspace, scaled into the ball. Every such candidate that is
// non-decreasing lies in C, so the closest of them is y.
// With weights d, the same in the metric ||v||_d^2 = sum_k d_k v_k^2 (the
// Euclidean case after v -> D^{1/2} v): C = {non-decreasing, d'v = 0,
// ||v||_d <= radius}, the steps centred by their weighted mean.
class FaceProjector {
 public:
  FaceProjector(Index p, double radius, Vector weight = Vector())
      : radius_(radius), weight_(weight.size() == p ? weight : Vector(Vector::Ones(p))) {
    const Index steps = p - 1;
    const Matrix D = weight_.asDiagonal();
    for (std::uint32_t mask = 0; mask < (1u << steps); ++mask) {
      std::vector<Index> in;
      for (Index m = 1; m < p; ++m) {
        if (mask & (1u << (m - 1))) in.push_back(m);
      }
      Matrix B(p, static_cast<Index>(in.size()));
      for (Index c = 0; c < B.cols(); ++c) {
        const double mean = weight_.tail(p - in[c]).sum() / weight_.sum();
        for (Index j = 0; j < p; ++j) B(j, c) = (j >= in[c] ? 1.0 : 0.0) - mean;
      }
      faces_.push_back(B.cols() == 0
                           ? Matrix(Matrix::Zero(p, p))
                           : Matrix(B * (B.transpose() * D * B).inverse() * B.transpose() * D));
    }
  }
  Vector operator()(const Vector& x) const {
    Vector best = Vector::Zero(x.size());
    double best_distance = std::numeric_limits<double>::infinity();
    for (const Matrix& P : faces_) {
      Vector y = P * x;
      const double norm = this->norm(y);
      if (norm > radius_) y *= radius_ / norm;
      bool monotone = true;
      for (Index j = 1; j < y.size(); ++j) monotone = monotone && y[j] >= y[j - 1] - 1e-13;
      const double distance = this->norm(x - y);
      if (monotone && distance < best_distance) {
        best_distance = distance;
        best = y;
      }
    }
    return best;
  }
  double norm(const Vector& v) const { return std::sqrt(weight_.dot(v.cwiseAbs2())); }

 private:
  double radius_;
  Vector weight_;
  std::vector<Matrix> faces_;
};

// The same projection written as the textbook steps (valid for any p):
// centre, pool adjacent violators, scale into the ball.
Vector plain_projection(const Vector& x, double radius) {
  const Index p = x.size();
  const double mean = x.mean();
  std::vector<double> sums, counts;
  for (Index j = 0; j < p; ++j) {
    sums.push_back(x[j] - mean);
    counts.push_back(1.0);
    while (sums.size() > 1 &&
           sums[sums.size() - 2] / counts[counts.size() - 2] > sums.back() / counts.back()) {
      sums[sums.size() - 2] += sums.back();
      counts[counts.size() - 2] += counts.back();
      sums.pop_back();
      counts.pop_back();
    }
  }
  Vector y(p);
  Index j = 0;
  for (std::size_t block = 0; block < sums.size(); ++block) {
    for (int c = 0; c < static_cast<int>(counts[block]); ++c) y[j++] = sums[block] / counts[block];
  }
  const double norm = y.norm();
  return norm > radius ? Vector(y * (radius / norm)) : y;
}

// A random point of C: sorted, centred, of norm at most the radius.
Vector random_feasible(Index p, double radius, std::mt19937_64& rng) {
  Vector f = normal_vector(p, rng);
  std::sort(f.data(), f.data() + p);
  f.array() -= f.mean();
  const double norm = f.norm();
  std::uniform_real_distribution<double> length(0.0, radius);
  return norm > 0.0 ? Vector(f * (length(rng) / norm)) : f;
}

// The Hessian 2 D'D of roughness(f) = ||D f||^2 (D: second differences).
Matrix roughness_hessian(Index p) {
  Matrix D = Matrix::Zero(std::max<Index>(p - 2, 0), p);
  for (Index k = 0; k + 2 < p; ++k) {
    D(k, k) = 1.0;
    D(k, k + 1) = -2.0;
    D(k, k + 2) = 1.0;
  }
  return 2.0 * D.transpose() * D;
}

double largest_eigenvalue(const Matrix& symmetric) {
  return Eigen::SelfAdjointEigenSolver<Matrix>(symmetric).eigenvalues().maxCoeff();
}

// ---------------------------------------------------------------------------

TEST(SuquanLoss, MeanLossIsTheDirectSumAndItsDerivatives) {
  std::mt19937_64 rng(101);
  const Index n = 9;
  for (Family family : kFamilies) {
    const Index K = classes(family);
    const Matrix Y = labels(family, normal_vector(n, rng));
    const Matrix eta = normal_matrix(n, K, rng, 2.0);
    Matrix grad, curv;
    const double value = sq::mean_loss(family, Y, eta, &grad, &curv);
    const double expected = plain_mean_loss(family, Y, eta);
    EXPECT_NEAR(value, expected, 1e-14 * std::abs(expected)) << name(family);
    EXPECT_EQ(sq::mean_loss(family, Y, eta), value) << name(family);
    ASSERT_EQ(grad.rows(), n);
    ASSERT_EQ(grad.cols(), K);
    ASSERT_EQ(curv.rows(), n);
    ASSERT_EQ(curv.cols(), K);
    // the gradient: central differences of the mean loss in each link; the
    // curvature: central differences of the gradient in the same link
    const double h = 1e-5;
    for (Index i = 0; i < n; ++i) {
      for (Index k = 0; k < K; ++k) {
        Matrix up = eta, down = eta;
        up(i, k) += h;
        down(i, k) -= h;
        const double fd =
            (plain_mean_loss(family, Y, up) - plain_mean_loss(family, Y, down)) / (2 * h);
        EXPECT_NEAR(grad(i, k), fd, 1e-9) << name(family) << " i " << i << " k " << k;
        Matrix g_up, g_down;
        sq::mean_loss(family, Y, up, &g_up);
        sq::mean_loss(family, Y, down, &g_down);
        const double fd2 = (g_up(i, k) - g_down(i, k)) / (2 * h);
        EXPECT_NEAR(curv(i, k), fd2, 1e-9) << name(family) << " i " << i << " k " << k;
        EXPECT_GT(curv(i, k), 0.0) << name(family);
      }
    }
  }
  // large links: finite, and the direct sum where it is still finite
  Matrix eta(4, 1), Y(4, 1);
  eta << 700.0, -700.0, 40.0, -40.0;
  Y << 0.0, 1.0, 1.0, 0.0;
  const double value = sq::mean_loss(Family::binomial, Y, eta);
  EXPECT_NEAR(value, (700.0 + 700.0 + std::log1p(std::exp(-40.0)) * 2) / 4, 1e-12);
  Matrix eta3(2, 3), Y3 = Matrix::Zero(2, 3);
  eta3 << 1000.0, 999.0, -5.0, -1000.0, -1001.0, -1002.0;
  Y3(0, 1) = 1.0;
  Y3(1, 0) = 1.0;
  const double lse0 = 1000.0 + std::log(1.0 + std::exp(-1.0) + std::exp(-1005.0));
  const double lse1 = -1000.0 + std::log(1.0 + std::exp(-1.0) + std::exp(-2.0));
  EXPECT_NEAR(sq::mean_loss(Family::multinomial, Y3, eta3), ((lse0 - 999.0) + (lse1 + 1000.0)) / 2,
              1e-12);
}

TEST(SuquanPenalty, PenaltyAndRoughnessAreTheirFormulas) {
  std::mt19937_64 rng(102);
  const Matrix w = normal_matrix(6, 3, rng);
  for (double alpha : {0.0, 0.25, 1.0}) {
    for (double lambda : {0.0, 0.7, 3.0}) {
      double l2 = 0.0, l1 = 0.0;
      for (Index k = 0; k < 3; ++k) {
        for (Index j = 0; j < 6; ++j) {
          l2 += w(j, k) * w(j, k);
          l1 += std::abs(w(j, k));
        }
      }
      const double expected = lambda * ((1.0 - alpha) * l2 + alpha * l1);
      EXPECT_NEAR(sq::penalty(w, lambda, alpha), expected, 1e-14 * (1.0 + expected))
          << "alpha " << alpha << " lambda " << lambda;
    }
  }
  for (Index p : {1, 2, 3, 4, 9}) {
    const Vector f = normal_vector(p, rng);
    double expected = 0.0;
    for (Index k = 0; k + 2 < p; ++k) {
      const double d2 = f[k] - 2.0 * f[k + 1] + f[k + 2];
      expected += d2 * d2;
    }
    EXPECT_NEAR(sq::roughness(f), expected, 1e-14 * (1.0 + expected)) << "p " << p;
    if (p < 3) {
      EXPECT_EQ(sq::roughness(f), 0.0);
    }
    // a straight line has no second differences
    const Vector line = Vector::LinSpaced(p, -1.5, 2.0);
    EXPECT_NEAR(sq::roughness(line), 0.0, 1e-28) << "p " << p;
  }
}

TEST(SuquanNormalize, SplitPositionAndNormalizeAreLinearInterpolation) {
  std::mt19937_64 rng(103);
  for (Index p : {2, 3, 8}) {
    const Vector f = normal_vector(p, rng);
    const Matrix position = random_positions(p, 6, rng);
    for (Index i = 0; i < position.cols(); ++i) {
      for (Index j = 0; j < p; ++j) {
        const double h = position(j, i);
        Index lo = -1;
        double frac = -1.0;
        sq::split_position(h, p - 1, lo, frac);
        EXPECT_EQ(static_cast<double>(lo) + frac, h);
        EXPECT_GE(lo, 0);
        EXPECT_LE(lo, p - 1);
        EXPECT_GE(frac, 0.0);
        EXPECT_LT(frac, 1.0);
        EXPECT_TRUE(lo < p - 1 || frac == 0.0);
        EXPECT_NEAR(sq::interpolate(f, lo, frac), value_at(f, h), 1e-15 * (1.0 + f.norm()))
            << "p " << p << " h " << h;
      }
    }
    Matrix z;
    sq::normalize_to(position, f, z);
    const Matrix expected = plain_normalize(position, f);
    ASSERT_EQ(z.rows(), p);
    ASSERT_EQ(z.cols(), position.cols());
    EXPECT_LE((z - expected).cwiseAbs().maxCoeff(), 1e-15 * (1.0 + f.norm())) << "p " << p;
    // whole positions give the entries themselves
    Matrix whole(p, 1);
    for (Index j = 0; j < p; ++j) whole(j, 0) = static_cast<double>(p - 1 - j);
    sq::normalize_to(whole, f, z);
    for (Index j = 0; j < p; ++j) EXPECT_EQ(z(j, 0), f[p - 1 - j]);
  }
  // midranks of data with ties: a tie of two at ranks 1 and 2 sits at 1.5
  Matrix x(4, 1);
  x << 3.0, 1.0, 3.0, 0.0;
  const Matrix h = midranks(x);
  EXPECT_EQ(h(0, 0), 2.5);
  EXPECT_EQ(h(1, 0), 1.0);
  EXPECT_EQ(h(3, 0), 0.0);
  Vector f(4);
  f << -3.0, -1.0, 1.0, 5.0;
  Matrix z;
  sq::normalize_to(h, f, z);
  EXPECT_EQ(z(0, 0), 3.0);
  EXPECT_EQ(z(2, 0), 3.0);
}

TEST(SuquanNormalize, LinksAndTimesAreTheMatrixProducts) {
  std::mt19937_64 rng(104);
  const Index p = 7, n = 5, K = 3;
  const Matrix z = normal_matrix(p, n, rng);
  const sq::Model model{normal_matrix(p, K, rng), normal_vector(K, rng)};
  Matrix eta;
  sq::links(z, model, eta);
  ASSERT_EQ(eta.rows(), n);
  ASSERT_EQ(eta.cols(), K);
  for (Index i = 0; i < n; ++i) {
    for (Index k = 0; k < K; ++k) {
      double g = model.b[k];
      for (Index j = 0; j < p; ++j) g += z(j, i) * model.w(j, k);
      EXPECT_NEAR(eta(i, k), g, 1e-13);
    }
  }
  const Matrix a = normal_matrix(n, K, rng);
  const Matrix za = sq::times(z, a);
  for (Index j = 0; j < p; ++j) {
    for (Index k = 0; k < K; ++k) {
      double s = 0.0;
      for (Index i = 0; i < n; ++i) s += z(j, i) * a(i, k);
      EXPECT_NEAR(za(j, k), s, 1e-13);
    }
  }
}

// f' u(w_k) = w_k' Psi_f(x_i) for every sample and class, whatever f (the
// identity does not need f in C), and u(w) = A' w.
TEST(SuquanAdjoint, RankWeightsGiveTheBilinearForm) {
  std::mt19937_64 rng(105);
  for (Index p : {2, 5, 9}) {
    const Index n = 6, K = 3;
    const Matrix position = random_positions(p, n, rng);
    const Matrix w = normal_matrix(p, K, rng);
    Matrix u;
    sq::rank_weights(position, w, u);
    ASSERT_EQ(u.rows(), p);
    ASSERT_EQ(u.cols(), n * K);
    for (int draw = 0; draw < 3; ++draw) {
      const Vector f = normal_vector(p, rng, 2.0);
      const Matrix z = plain_normalize(position, f);
      for (Index i = 0; i < n; ++i) {
        for (Index k = 0; k < K; ++k) {
          const double expected = w.col(k).dot(z.col(i));
          EXPECT_NEAR(u.col(i + n * k).dot(f), expected, 1e-14 * (1.0 + w.norm() * f.norm()))
              << "p " << p << " i " << i << " k " << k;
        }
      }
    }
    for (Index i = 0; i < n; ++i) {
      const Matrix A = interpolation_matrix(position, i);
      for (Index k = 0; k < K; ++k) {
        EXPECT_LE((u.col(i + n * k) - A.transpose() * w.col(k)).cwiseAbs().maxCoeff(), 1e-14)
            << "p " << p << " i " << i << " k " << k;
      }
    }
  }
}

// The operator of method "svd" is M = [sum_i c_i1 A_i' ... sum_i c_iK A_i']
// (p x p K) with Psi_f(x_i) = A_i f.
TEST(SuquanAdjoint, SvdOperatorAndItsTransposeAreExplicitProducts) {
  std::mt19937_64 rng(106);
  for (Index K : {1, 3}) {
    const Index p = 6, n = 8;
    const Matrix position = random_positions(p, n, rng);
    const Matrix c = normal_matrix(n, K, rng);
    Matrix M = Matrix::Zero(p, p * K);
    for (Index i = 0; i < n; ++i) {
      const Matrix A = interpolation_matrix(position, i);
      for (Index k = 0; k < K; ++k) M.block(0, p * k, p, p) += c(i, k) * A.transpose();
    }
    const Vector v = normal_vector(p * K, rng), t = normal_vector(p, rng);
    const Vector Mv = sq::svd_times(position, c, v), Mt = sq::svd_times_transpose(position, c, t);
    ASSERT_EQ(Mv.size(), p);
    ASSERT_EQ(Mt.size(), p * K);
    EXPECT_LE((Mv - M * v).cwiseAbs().maxCoeff(), 1e-13) << "K " << K;
    EXPECT_LE((Mt - M.transpose() * t).cwiseAbs().maxCoeff(), 1e-13) << "K " << K;
    // the adjoint pair: t' (M v) = (M' t)' v
    EXPECT_NEAR(t.dot(Mv), Mt.dot(v), 1e-12 * (1.0 + std::abs(t.dot(Mv)))) << "K " << K;
  }
}

TEST(SuquanProjection, QuantileProjectorIsTheEuclideanProjectionOntoC) {
  std::mt19937_64 rng(107);
  int active = 0, inactive = 0;
  for (Index p = 1; p <= 7; ++p) {
    for (double radius : {0.3, 1.0, 2.5, 100.0}) {
      const FaceProjector reference(p, radius);
      sq::QuantileProjector project(p, radius);
      for (int draw = 0; draw < 12; ++draw) {
        Vector x = normal_vector(p, rng, draw % 3 == 0 ? 0.3 : 2.0);
        if (draw % 4 == 1) {  // ties
          for (Index j = 0; j < p; ++j) x[j] = std::round(x[j]);
        } else if (draw % 4 == 2) {  // already non-decreasing, shifted
          std::sort(x.data(), x.data() + p);
          x.array() += 5.0;
        } else if (draw == 11) {  // decreasing
          std::sort(x.data(), x.data() + p, std::greater<double>());
        }
        const std::string label = "p " + std::to_string(p) + " radius " + std::to_string(radius) +
                                  " draw " + std::to_string(draw);
        Vector y = x;
        project(y);
        ASSERT_EQ(y.size(), p);
        expect_in_c(y, radius, label);
        const Vector expected = reference(x);
        EXPECT_LE((y - expected).cwiseAbs().maxCoeff(), 1e-12 * (1.0 + x.norm())) << label;
        // the textbook steps, the reference of the f step below, agree too
        EXPECT_LE((plain_projection(x, radius) - expected).cwiseAbs().maxCoeff(),
                  1e-12 * (1.0 + x.norm()))
            << label;
        // the variational inequality: no point of C is closer along its direction
        for (int other = 0; other < 20; ++other) {
          const Vector c = random_feasible(p, radius, rng);
          EXPECT_LE((x - y).dot(c - y), 1e-12 * (1.0 + x.squaredNorm())) << label;
        }
        (y.norm() >= radius * (1.0 - 1e-12) ? active : inactive)++;
      }
    }
  }
  EXPECT_GT(active, 20);  // both regimes of the ball were met
  EXPECT_GT(inactive, 20);
}

// argmin over f in C of (L/2) ||f - a||^2 + weight * roughness(f), by
// projected gradient steps (the exact projection by enumeration) until
// nothing moves: the objective is L-strongly convex.
Vector prox_reference(const Vector& a, double L, double weight, const FaceProjector& project) {
  const Index p = a.size();
  const Matrix H = L * Matrix::Identity(p, p) + weight * roughness_hessian(p);
  const double step = 1.0 / largest_eigenvalue(H);
  Vector f = project(a), gradient(p), next(p);
  for (int iter = 0; iter < 100000; ++iter) {
    gradient.noalias() = H * f;
    gradient -= L * a;
    next = project(f - step * gradient);
    const double moved = (next - f).norm();
    f = next;
    if (moved <= 1e-16 * (1.0 + f.norm())) break;
  }
  return f;
}

double prox_objective(const Vector& f, const Vector& a, double L, double weight) {
  return 0.5 * L * (f - a).squaredNorm() + weight * plain_roughness(f);
}

TEST(SuquanProjection, RoughnessProxSolvesItsProblem) {
  std::mt19937_64 rng(108);
  const Index p = 6;
  for (double weight : {0.0, 0.4, 3.0}) {
    for (double radius : {0.4, 10.0}) {
      const FaceProjector project(p, radius);
      sq::RoughnessProx prox(p, weight, radius);
      // one object through several calls: warm starts, and a new L
      // (refactored, with the dual variable rescaled) or the same L again
      for (double L : {1.0, 1.0, 5.0, 0.3, 0.3}) {
        const Vector a = normal_vector(p, rng, 1.5);
        Vector out;
        prox(a, L, out);
        const std::string label = "weight " + std::to_string(weight) + " radius " +
                                  std::to_string(radius) + " L " + std::to_string(L);
        ASSERT_EQ(out.size(), p);
        expect_in_c(out, radius, label);
        const Vector expected = prox_reference(a, L, weight, project);
        const double best = prox_objective(expected, a, L, weight);
        EXPECT_LE((out - expected).cwiseAbs().maxCoeff(), 1e-7) << label;
        EXPECT_NEAR(prox_objective(out, a, L, weight), best, 1e-9 * (1.0 + best)) << label;
        if (weight == 0.0) {  // the plain projection of a
          EXPECT_LE((out - project(a)).cwiseAbs().maxCoeff(), 1e-7) << label;
        }
      }
    }
  }
}

// A problem for the model fits: p features of n samples with ties, the
// labels from three of them, the positions by midranks and a standardized
// target f0.
struct Problem {
  Matrix x, position, Y;
  Vector f0;
};

Problem make_problem(Family family, Index p, Index n, std::mt19937_64& rng) {
  Problem pr;
  pr.x = normal_matrix(p, n, rng);
  for (Index i = 0; i < n; ++i) {
    for (Index j = 0; j < p; ++j) pr.x(j, i) = std::round(4.0 * pr.x(j, i)) / 4.0;  // ties
  }
  Vector score(n);
  std::normal_distribution<double> noise(0.0, 0.5);
  for (Index i = 0; i < n; ++i) {
    score[i] = pr.x(0, i) - pr.x(1, i) + 0.5 * pr.x(2, i) * pr.x(2, i) - 0.5 + noise(rng);
  }
  pr.Y = labels(family, score);
  pr.position = midranks(pr.x);
  pr.f0 = standardized_target(p, rng);
  return pr;
}

// The gradient of the mean loss in (W, b) at a model on fixed features z,
// with the ridge part of the penalty: z G + 2 lambda (1 - alpha) W and the
// column sums of G.
void model_gradient(Family family, const Matrix& Y, const Matrix& z, const sq::Model& model,
                    double lambda, double alpha, Matrix& gw, Vector& gb) {
  Matrix eta = z.transpose() * model.w;
  eta.rowwise() += model.b.transpose();
  Matrix grad;
  sq::mean_loss(family, Y, eta, &grad);
  gw = z * grad + 2.0 * lambda * (1.0 - alpha) * model.w;
  gb = grad.colwise().sum().transpose();
}

TEST(SuquanLinear, RidgeSatisfiesTheOptimalityConditions) {
  std::mt19937_64 rng(109);
  for (Family family : kFamilies) {
    // more features than samples (the span of the samples has fewer
    // dimensions than the features) and fewer
    for (Index p : {25, 4}) {
      const Index n = 18;
      const Problem pr = make_problem(family, p, n, rng);
      Matrix z;
      sq::normalize_to(pr.position, pr.f0, z);
      const sq::Span span = sq::make_span(z);
      for (double lambda : {0.003, 0.2}) {
        for (bool warm : {false, true}) {
          const Index K = classes(family);
          sq::Model model = sq::zero_model(p, K);
          if (warm) model = {normal_matrix(p, K, rng, 0.3), normal_vector(K, rng)};
          sq::fit_ridge(family, pr.Y, lambda, z, span, model);
          Matrix gw;
          Vector gb;
          model_gradient(family, pr.Y, z, model, lambda, 0.0, gw, gb);
          const std::string label = name(family) + " p " + std::to_string(p) + " lambda " +
                                    std::to_string(lambda) + (warm ? " warm" : "");
          // Newton stops when its decrement g' H^-1 g is below 1e-15 (1 + J),
          // which can leave a gradient of sqrt(1e-15 times H's largest
          // eigenvalue), about 1e-8 here
          EXPECT_LE(gw.cwiseAbs().maxCoeff(), 3e-8) << label;
          EXPECT_LE(gb.cwiseAbs().maxCoeff(), 3e-8) << label;
          EXPECT_GT(model.w.cwiseAbs().maxCoeff(), 1e-3) << label;  // not the trivial model
        }
      }
    }
  }
}

TEST(SuquanLinear, ElasticNetSatisfiesTheSubgradientConditions) {
  std::mt19937_64 rng(110);
  for (Family family : kFamilies) {
    for (double alpha : {0.5, 1.0}) {
      const Index p = 15, n = 30, K = classes(family);
      const Problem pr = make_problem(family, p, n, rng);
      Matrix z;
      sq::normalize_to(pr.position, pr.f0, z);
      const double top = sq::lambda_max(pr.position, pr.Y, pr.f0, alpha);
      for (double fraction : {0.3, 0.05}) {
        const double lambda = fraction * top, l1 = lambda * alpha;
        sq::Model model = sq::zero_model(p, K);
        sq::fit_elastic_net(family, pr.Y, lambda, alpha, z, model);
        Matrix gw;
        Vector gb;
        model_gradient(family, pr.Y, z, model, lambda, alpha, gw, gb);
        const std::string label = name(family) + " alpha " + std::to_string(alpha) + " fraction " +
                                  std::to_string(fraction);
        // coordinate descent stops on the decrease of its quadratic model
        // (1e-13 relative), which leaves the conditions met to about 1e-7
        int zeros = 0, nonzeros = 0;
        for (Index k = 0; k < K; ++k) {
          for (Index j = 0; j < p; ++j) {
            const double w = model.w(j, k), g = gw(j, k);
            if (w == 0.0) {
              EXPECT_LE(std::abs(g), l1 + 1e-6) << label << " j " << j << " k " << k;
              ++zeros;
            } else {
              EXPECT_NEAR(g + l1 * (w > 0.0 ? 1.0 : -1.0), 0.0, 1e-6)
                  << label << " j " << j << " k " << k;
              ++nonzeros;
            }
          }
        }
        EXPECT_LE(gb.cwiseAbs().maxCoeff(), 1e-6) << label;
        // both kinds of condition were checked
        EXPECT_GT(zeros, 0) << label;
        EXPECT_GT(nonzeros, 0) << label;
      }
    }
  }
}

TEST(SuquanLinear, LambdaMaxIsWhereTheWeightsVanish) {
  std::mt19937_64 rng(111);
  for (Family family : kFamilies) {
    for (double alpha : {1.0, 0.3}) {
      const Index p = 12, n = 25, K = classes(family);
      const Problem pr = make_problem(family, p, n, rng);
      const std::string label = name(family) + " alpha " + std::to_string(alpha);
      // the formula: max over features and classes of
      // (1/n) |sum_i z_ji (y_ik - mean_k)|, over alpha
      const Matrix z = plain_normalize(pr.position, pr.f0);
      double score = 0.0;
      for (Index k = 0; k < K; ++k) {
        const double mean = pr.Y.col(k).mean();
        for (Index j = 0; j < p; ++j) {
          double s = 0.0;
          for (Index i = 0; i < n; ++i) s += z(j, i) * (pr.Y(i, k) - mean);
          score = std::max(score, std::abs(s) / n);
        }
      }
      const double top = sq::lambda_max(pr.position, pr.Y, pr.f0, alpha);
      EXPECT_NEAR(top, score / alpha, 1e-13 * top) << label;
      // at lambda_max the model is the intercepts alone (exactly at it, the
      // largest score ties with lambda alpha, and rounding may leave a
      // weight of the order of 1e-17; just above it every weight is 0);
      // just below, some weight is not
      sq::Model at = sq::zero_model(p, K), above = sq::zero_model(p, K),
                below = sq::zero_model(p, K);
      sq::fit_elastic_net(family, pr.Y, top, alpha, z, at);
      sq::fit_elastic_net(family, pr.Y, top * (1.0 + 1e-9), alpha, z, above);
      sq::fit_elastic_net(family, pr.Y, top * (1.0 - 1e-3), alpha, z, below);
      EXPECT_LE(at.w.cwiseAbs().maxCoeff(), 1e-15) << label;
      EXPECT_EQ(above.w.cwiseAbs().maxCoeff(), 0.0) << label;
      EXPECT_GT(below.w.cwiseAbs().maxCoeff(), 1e-8) << label;
      // the intercepts at lambda_max fit the labels' means
      Matrix eta = Matrix::Zero(n, K);
      eta.rowwise() += at.b.transpose();
      Matrix grad;
      sq::mean_loss(family, pr.Y, eta, &grad);
      EXPECT_LE(grad.colwise().sum().cwiseAbs().maxCoeff(), 1e-7) << label;
    }
  }
}

// The f step (step (b)): min over f in C and b of mean_loss(u' f + b) +
// smooth * roughness(f), against accelerated projected gradient with a fixed
// step (the textbook projection) run long, and the first-order condition of
// the constrained problem at the f step's output.
struct FProblem {
  Family family;
  Matrix Y, u;
  double radius, smooth;

  Matrix links(const Vector& f, const Vector& b) const {
    const Index n = Y.rows(), K = Y.cols();
    Matrix eta(n, K);
    for (Index k = 0; k < K; ++k) {
      for (Index i = 0; i < n; ++i) eta(i, k) = u.col(i + n * k).dot(f) + b[k];
    }
    return eta;
  }
  double value(const Vector& f, const Vector& b) const {
    return plain_mean_loss(family, Y, links(f, b)) + smooth * plain_roughness(f);
  }
  void gradient(const Vector& f, const Vector& b, Vector& gf, Vector& gb) const {
    const Index n = Y.rows(), K = Y.cols();
    Matrix grad;
    sq::mean_loss(family, Y, links(f, b), &grad);
    gf = smooth * roughness_hessian(f.size()) * f;
    for (Index k = 0; k < K; ++k) {
      for (Index i = 0; i < n; ++i) gf += grad(i, k) * u.col(i + n * k);
    }
    gb = grad.colwise().sum().transpose();
  }
  // A Lipschitz constant of the gradient in (f, b): the loss's curvature
  // (at most 1) times the largest eigenvalue of J'J / n, J the map from
  // (f, b) to the links, plus the roughness's.
  double lipschitz() const {
    const Index n = Y.rows(), K = Y.cols(), p = u.rows();
    Matrix J = Matrix::Zero(n * K, p + K);
    for (Index k = 0; k < K; ++k) {
      for (Index i = 0; i < n; ++i) {
        J.row(i + n * k).head(p) = u.col(i + n * k).transpose();
        J(i + n * k, p + k) = 1.0;
      }
    }
    return largest_eigenvalue(J.transpose() * J) / n +
           smooth * largest_eigenvalue(roughness_hessian(p));
  }
};

// The links of a quantile space: eta(i, k) = u_{i + n k}' f + b_k.
void expect_links(const Matrix& eta, const Matrix& u, const Vector& f, const Vector& b) {
  const Index n = eta.rows();
  for (Index i = 0; i < n; ++i) {
    for (Index k = 0; k < eta.cols(); ++k) {
      EXPECT_NEAR(eta(i, k), u.col(i + n * k).dot(f) + b[k], 1e-13);
    }
  }
}

// The two spaces of the f step. FullSpace: the links u' f + b and the
// gradient u g of the links' gradient g, the projection onto C (or the
// roughness prox) and the roughness penalty.
TEST(SuquanQuantiles, FullSpaceIsTheLinksAndTheProjection) {
  std::mt19937_64 rng(116);
  const Index p = 9, n = 5, K = 2;
  const Matrix u = normal_matrix(p, n * K, rng);
  const Vector f = normal_vector(p, rng), b = normal_vector(K, rng);
  for (double smooth : {0.0, 0.3}) {
    const double radius = 1.5;
    sq::FullSpace<sq::Serial> space(u, radius, smooth, sq::Serial{});
    EXPECT_EQ(space.size(), p);
    EXPECT_EQ(space.weights(), nullptr);
    Matrix eta(n, K);
    space.links(f, b, eta);
    expect_links(eta, u, f, b);
    const Matrix g = normal_matrix(n, K, rng);
    Vector grad;
    space.gradient(Eigen::Map<const Vector>(g.data(), n * K), grad);
    Vector expected = Vector::Zero(p);
    for (Index k = 0; k < K; ++k) {
      for (Index i = 0; i < n; ++i) expected += g(i, k) * u.col(i + n * k);
    }
    EXPECT_LE((grad - expected).cwiseAbs().maxCoeff(), 1e-13);
    EXPECT_NEAR(space.penalty(f), smooth * plain_roughness(f), 1e-13 * (1.0 + plain_roughness(f)));
    const Vector target = normal_vector(p, rng, 2.0);
    Vector out;
    space.step(target, 2.0, out);
    expect_in_c(out, radius, "smooth " + std::to_string(smooth));
    if (smooth == 0.0) {
      EXPECT_LE((out - plain_projection(target, radius)).cwiseAbs().maxCoeff(), 1e-13);
    }
  }
}

// BlockSpace: the targets constant on the blocks of equal values of f, one
// value per block: its links and gradient are those of the full space for
// the expanded targets (summed over each block), and its step is the
// projection onto C in the metric of the block sizes.
TEST(SuquanQuantiles, BlockSpaceIsCOnTheBlocks) {
  std::mt19937_64 rng(117);
  const std::vector<Index> sizes = {3, 1, 4, 2, 2};
  const Index m = static_cast<Index>(sizes.size()), p = 12, n = 4, K = 3;
  // a point of C with these blocks
  Vector values = normal_vector(m, rng);
  std::sort(values.data(), values.data() + m);
  Vector f(p);
  Index j = 0;
  for (Index k = 0; k < m; ++k) {
    for (Index c = 0; c < sizes[k]; ++c) f[j++] = values[k];
  }
  f.array() -= f.mean();
  const Matrix u = normal_matrix(p, n * K, rng);
  for (double radius : {0.4, 1.0, 50.0}) {
    sq::BlockSpace blocks(u, f, radius, sq::Serial{});
    ASSERT_EQ(blocks.size(), m);
    ASSERT_NE(blocks.weights(), nullptr);
    for (Index k = 0; k < m; ++k) EXPECT_EQ((*blocks.weights())[k], static_cast<double>(sizes[k]));
    Vector back(p);
    blocks.expand(blocks.values(), back);
    EXPECT_EQ(back, f);
    // links and gradient
    const Vector v = normal_vector(m, rng), b = normal_vector(K, rng);
    Vector full(p);
    blocks.expand(v, full);
    Matrix eta(n, K);
    blocks.links(v, b, eta);
    expect_links(eta, u, full, b);
    const Matrix g = normal_matrix(n, K, rng);
    Vector grad;
    blocks.gradient(Eigen::Map<const Vector>(g.data(), n * K), grad);
    const Vector full_grad = u * Eigen::Map<const Vector>(g.data(), n * K);
    Index first = 0;
    for (Index k = 0; k < m; ++k) {
      EXPECT_NEAR(grad[k], full_grad.segment(first, sizes[k]).sum(), 1e-13);
      first += sizes[k];
    }
    // the step: the projection in the metric of the block sizes
    const FaceProjector reference(m, radius, *blocks.weights());
    for (int draw = 0; draw < 20; ++draw) {
      const Vector target = normal_vector(m, rng, draw % 2 == 0 ? 0.3 : 2.0);
      Vector out;
      blocks.step(target, 1.0, out);
      const std::string label =
          "radius " + std::to_string(radius) + " draw " + std::to_string(draw);
      EXPECT_LE((out - reference(target)).cwiseAbs().maxCoeff(), 1e-12) << label;
      Vector expanded(p);
      blocks.expand(out, expanded);
      expect_in_c(expanded, radius, label);
    }
  }
}

// The minimum of the f step by FISTA with restarts and a fixed step 1 / L
// (the textbook projection), from (f, b), until a step no longer lowers the
// objective or no longer moves.
double reference_f_step(const FProblem& fp, Vector& f, Vector& b) {
  const double L = fp.lipschitz();
  Vector lf = f, lb = b, gf, gb;
  double momentum = 1.0, best = fp.value(f, b);
  for (int iter = 0; iter < 50000; ++iter) {
    fp.gradient(lf, lb, gf, gb);
    const Vector nf = plain_projection(lf - gf / L, fp.radius), nb = lb - gb / L;
    const double next_value = fp.value(nf, nb);
    if (next_value > best) {       // restart from the last point
      if (momentum == 1.0) break;  // a plain step from it no longer helps
      lf = f;
      lb = b;
      momentum = 1.0;
      continue;
    }
    const double next_momentum = 0.5 * (1.0 + std::sqrt(1.0 + 4.0 * momentum * momentum));
    const double beta = (momentum - 1.0) / next_momentum;
    const double moved = (nf - f).norm() + (nb - b).norm();
    lf = nf + beta * (nf - f);
    lb = nb + beta * (nb - b);
    f = nf;
    b = nb;
    momentum = next_momentum;
    best = next_value;
    if (moved <= 1e-15 * fp.radius) break;  // converged to rounding
  }
  return best;
}

// The f step of a problem: u from the ridge model on Psi_f0(x).
FProblem f_problem(Family family, const Problem& pr, double smooth, Vector& b) {
  const Index p = pr.position.rows();
  Matrix z;
  sq::normalize_to(pr.position, pr.f0, z);
  sq::Model model = sq::zero_model(p, classes(family));
  sq::fit_ridge(family, pr.Y, 0.05, z, sq::make_span(z), model);
  FProblem fp{family, pr.Y, Matrix(), pr.f0.norm(), smooth};
  sq::rank_weights(pr.position, model.w, fp.u);
  b = model.b;
  return fp;
}

// f0 (of a length divisible by 4) averaged over four groups of consecutive
// entries: a point of C with four blocks, as f is after a few rounds.
Vector pooled(const Vector& f0) {
  const Index p = f0.size(), size = p / 4;
  Vector f(p);
  for (Index g = 0; g < 4; ++g) {
    f.segment(g * size, size).setConstant(f0.segment(g * size, size).mean());
  }
  return f;
}

TEST(SuquanQuantiles, FStepReachesTheMinimumOverC) {
  std::mt19937_64 rng(112);
  for (Family family : kFamilies) {
    for (double smooth : {0.0, 0.05}) {
      const Index p = 40, n = 30;
      const Problem pr = make_problem(family, p, n, rng);
      Vector b0;
      const FProblem fp = f_problem(family, pr, smooth, b0);
      const double L = fp.lipschitz();
      for (bool from_blocks : {false, true}) {
        const std::string label = name(family) + " smooth " + std::to_string(smooth) +
                                  (from_blocks ? " from blocks" : "");
        const Vector start_f = from_blocks ? pooled(pr.f0) : pr.f0;
        Vector f = start_f, b = b0;
        const double start = fp.value(f, b);
        sq::fit_quantiles(family, pr.Y, fp.u, fp.radius, smooth, f, b, 1000, 1e-13);
        expect_in_c(f, fp.radius, label);
        const double value = fp.value(f, b);
        EXPECT_LT(value, start) << label;
        Vector rf = start_f, rb = b0;
        const double best = reference_f_step(fp, rf, rb);
        EXPECT_LE(value, best + 1e-10 * std::abs(best)) << label;
        EXPECT_GE(value, best - 1e-8 * std::abs(best)) << label;
        EXPECT_LE((f - rf).norm(), 1e-5 * fp.radius) << label;
        // first-order condition: one projected gradient step from (f, b)
        // moves neither (the gradient mapping vanishes)
        Vector gf, gb;
        fp.gradient(f, b, gf, gb);
        const Vector pf = plain_projection(f - gf / L, fp.radius);
        EXPECT_LE(L * (pf - f).norm(), 1e-7) << label;
        EXPECT_LE(gb.norm(), 1e-7) << label;
      }
    }
  }
}

// The f step's FISTA never accepts a step that raises the objective: its
// runs with budgets 1, 2, 3, ... are prefixes of one run (deterministic, from
// the same start and L), and their objectives never increase. Through
// fit_quantiles (full steps, then FISTA on the blocks), whatever the budget,
// the objective never ends above its start.
TEST(SuquanQuantiles, FStepNeverRaisesTheObjective) {
  std::mt19937_64 rng(115);
  for (Family family : kFamilies) {
    for (double smooth : {0.0, 0.05}) {
      const Problem pr = make_problem(family, 40, 30, rng);
      Vector b0;
      const FProblem fp = f_problem(family, pr, smooth, b0);
      const double L0 = 0.1 * fp.lipschitz();  // too small: the backtracking doubles it
      for (bool from_blocks : {false, true}) {
        const std::string label = name(family) + " smooth " + std::to_string(smooth) +
                                  (from_blocks ? " from blocks" : "");
        const Vector start_f = from_blocks ? pooled(pr.f0) : pr.f0;
        const double start = fp.value(start_f, b0);
        double previous = start;
        for (int budget = 1; budget <= 40; ++budget) {
          Vector f = start_f, b = b0;
          double current = start, L = L0;
          if (from_blocks && smooth == 0.0) {
            sq::BlockSpace blocks(fp.u, start_f, fp.radius, sq::Serial{});
            Vector v = blocks.values();
            sq::fista(blocks, family, pr.Y, v, b, current, L, budget, 0.0);
            blocks.expand(v, f);
          } else {
            sq::FullSpace<sq::Serial> full(fp.u, fp.radius, smooth, sq::Serial{});
            sq::fista(full, family, pr.Y, f, b, current, L, budget, 0.0);
          }
          const double value = fp.value(f, b);
          const std::string at = label + " budget " + std::to_string(budget);
          EXPECT_NEAR(current, value, 1e-13 * value) << at;
          EXPECT_LE(value, previous * (1.0 + 1e-14)) << at;
          previous = value;
        }
        EXPECT_LT(previous, start * (1.0 - 1e-4)) << label;  // FISTA did move
        for (int budget = 1; budget <= 6; ++budget) {
          Vector f = start_f, b = b0;
          sq::fit_quantiles(family, pr.Y, fp.u, fp.radius, smooth, f, b, budget, 0.0);
          EXPECT_LE(fp.value(f, b), start * (1.0 + 1e-14)) << label << " budget " << budget;
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Method "bnd".

TEST(SuquanBnd, ObjectiveNeverIncreasesAcrossRounds) {
  std::mt19937_64 rng(113);
  for (Family family : kFamilies) {
    for (double alpha : {0.0, 0.6}) {
      for (double smooth : {0.0, 0.02}) {
        const Index p = 24, n = 36;
        const Problem pr = make_problem(family, p, n, rng);
        sq::Options opt;
        opt.family = family;
        opt.lambda = alpha > 0.0 ? 0.1 * sq::lambda_max(pr.position, pr.Y, pr.f0, alpha) : 0.02;
        opt.alpha = alpha;
        opt.smooth = smooth;
        opt.rounds = 8;
        opt.tol = 0.0;  // all the rounds asked for, unless J went up
        const std::string label =
            name(family) + " alpha " + std::to_string(alpha) + " smooth " + std::to_string(smooth);
        const double radius = pr.f0.norm();
        std::vector<sq::Step> steps;
        std::vector<double> reported;
        const sq::Fit fit = sq::alternate(
            pr.position, pr.Y, pr.f0, opt, sq::zero_model(p, classes(family)), nullptr,
            sq::Serial{},
            [&](int r, const Vector& f, const sq::Model& model) {
              EXPECT_EQ(r, static_cast<int>(reported.size())) << label;
              expect_in_c(f, radius, label + " round " + std::to_string(r));
              reported.push_back(plain_objective(family, pr.position, pr.Y, f, model.w, model.b,
                                                 opt.lambda, opt.alpha, opt.smooth));
            },
            [&](const sq::Step& step) { steps.push_back(step); });
        ASSERT_EQ(steps.size(), fit.history.size()) << label;
        ASSERT_GE(steps.size(), 2u) << label;
        for (std::size_t s = 0; s < steps.size(); ++s) {
          EXPECT_EQ(steps[s].objective, fit.history[s].objective) << label;
          if (s > 0) {
            EXPECT_LE(steps[s].objective, steps[s - 1].objective)
                << label << " step " << s << " round " << steps[s].round << " " << steps[s].kind;
          }
        }
        // the rounds' objectives are J of the reported (f, model), and the
        // alternation improved on round 0
        ASSERT_EQ(reported.size(), static_cast<std::size_t>(fit.rounds) + 1) << label;
        std::size_t r = 0;
        for (const sq::Step& step : steps) {
          if (step.kind == 'f' || step.round == 0) {
            EXPECT_NEAR(step.objective, reported[r], 1e-12 * std::abs(reported[r]))
                << label << " round " << r;
            ++r;
          }
        }
        EXPECT_LT(reported.back(), reported.front() * (1.0 - 1e-6)) << label;
        EXPECT_EQ(fit.rounds, 8) << label;
        // fit_bnd is alternate() from the zero model
        std::vector<sq::Step> again;
        const sq::Fit bnd = sq::fit_bnd(pr.position, pr.Y, pr.f0, opt, sq::Serial{},
                                        [&](const sq::Step& step) { again.push_back(step); });
        EXPECT_EQ(bnd.f, fit.f) << label;
        EXPECT_EQ(bnd.model.w, fit.model.w) << label;
        ASSERT_EQ(again.size(), steps.size()) << label;
        for (std::size_t s = 0; s < steps.size(); ++s) {
          EXPECT_EQ(again[s].objective, steps[s].objective) << label;
        }
      }
    }
  }
}

// fit_path: every (lambda, round) pair reported once, in order; the first
// lambda's rounds are those of alternate() from the zero model (the last one
// repeated after convergence), and every lambda's round 0 is the ridge model
// on Psi_f0(x) (its optimality conditions), whatever the warm start.
TEST(SuquanBnd, PathReportsEveryLambdaAndRound) {
  std::mt19937_64 rng(118);
  const Index p = 20, n = 30;
  const Problem pr = make_problem(Family::binomial, p, n, rng);
  sq::Options opt;
  opt.family = Family::binomial;
  opt.rounds = 4;
  opt.tol = 1e-2;  // some lambdas converge before round 4
  const std::vector<double> lambdas = {0.5, 0.1, 0.02};
  struct Entry {
    std::size_t l;
    int r;
    Vector f;
    sq::Model model;
  };
  std::vector<Entry> path;
  sq::fit_path(
      pr.position, pr.Y, pr.f0, lambdas, opt, sq::Serial{},
      [&](std::size_t l, int r, const Vector& f, const sq::Model& model) {
        path.push_back({l, r, f, model});
      },
      [](const sq::Step&) {});
  ASSERT_EQ(path.size(), lambdas.size() * 5);
  for (std::size_t e = 0; e < path.size(); ++e) {
    EXPECT_EQ(path[e].l, e / 5);
    EXPECT_EQ(path[e].r, static_cast<int>(e % 5));
  }
  // the first lambda against alternate()
  sq::Options first = opt;
  first.lambda = lambdas[0];
  std::vector<Entry> rounds;
  const sq::Fit fit = sq::alternate(
      pr.position, pr.Y, pr.f0, first, sq::zero_model(p, 1), nullptr, sq::Serial{},
      [&](int r, const Vector& f, const sq::Model& model) {
        rounds.push_back({0, r, f, model});
      },
      [](const sq::Step&) {});
  ASSERT_GE(rounds.size(), 2u);
  for (int r = 0; r <= 4; ++r) {
    const Entry& expected = r < static_cast<int>(rounds.size()) ? rounds[r] : rounds.back();
    EXPECT_EQ(path[r].f, expected.f) << "round " << r;
    EXPECT_EQ(path[r].model.w, expected.model.w) << "round " << r;
    EXPECT_EQ(path[r].model.b, expected.model.b) << "round " << r;
  }
  int repeated = 0;
  for (std::size_t l = 0; l < lambdas.size(); ++l) {
    const Entry& zero = path[5 * l];
    EXPECT_EQ(zero.f, pr.f0) << "lambda " << lambdas[l];
    const Matrix z = plain_normalize(pr.position, pr.f0);
    Matrix gw;
    Vector gb;
    model_gradient(Family::binomial, pr.Y, z, zero.model, lambdas[l], 0.0, gw, gb);
    EXPECT_LE(gw.cwiseAbs().maxCoeff(), 3e-8) << "lambda " << lambdas[l];
    EXPECT_LE(gb.cwiseAbs().maxCoeff(), 3e-8) << "lambda " << lambdas[l];
    repeated += path[5 * l + 4].f == path[5 * l + 3].f;
  }
  EXPECT_GT(repeated, 0);  // a converged lambda repeated its last fit
  EXPECT_TRUE(fit.converged);
}

// Executors: the chunks in reverse order, one at a time, and on two threads.
struct Reversed {
  std::size_t* calls;
  template <class Body>
  void operator()(std::size_t count, Body&& body) const {
    ++*calls;
    for (std::size_t c = count; c-- > 0;) body(c, c + 1);
  }
};

struct TwoThreads {
  template <class Body>
  void operator()(std::size_t count, Body&& body) const {
    const std::size_t half = count / 2;
    std::thread first([&] {
      if (half > 0) body(std::size_t{0}, half);
    });
    body(half, count);
    first.join();
  }
};

void expect_identical(const sq::Fit& a, const sq::Fit& b, const std::string& label) {
  EXPECT_EQ(a.f, b.f) << label;
  EXPECT_EQ(a.model.w, b.model.w) << label;
  EXPECT_EQ(a.model.b, b.model.b) << label;
  EXPECT_EQ(a.rounds, b.rounds) << label;
  ASSERT_EQ(a.history.size(), b.history.size()) << label;
  for (std::size_t s = 0; s < a.history.size(); ++s) {
    EXPECT_EQ(a.history[s].objective, b.history[s].objective) << label << " step " << s;
    EXPECT_EQ(a.history[s].change, b.history[s].change) << label << " step " << s;
  }
}

// The problem is large enough (p n = 1.1e6) that every loop of the fit goes
// to the executor (below about a million operations it runs on the calling
// thread).
TEST(SuquanBnd, FitDoesNotDependOnTheExecutorsChunking) {
  std::mt19937_64 rng(114);
  const Index p = 4400, n = 250;
  Problem pr;
  pr.x = normal_matrix(p, n, rng);
  Vector score(n);
  for (Index i = 0; i < n; ++i) {
    score[i] = pr.x.col(i).head(50).sum() / std::sqrt(50.0) + pr.x(60, i) * pr.x(60, i) - 1.0;
  }
  pr.Y = labels(Family::binomial, score);
  // the midranks of the columns, by sorting (p is too large for midranks())
  pr.position.resize(p, n);
  for (Index i = 0; i < n; ++i) {
    std::vector<Index> order(p);
    for (Index j = 0; j < p; ++j) order[j] = j;
    std::sort(order.begin(), order.end(),
              [&](Index a, Index b) { return pr.x(a, i) < pr.x(b, i); });
    for (Index r = 0; r < p; ++r) pr.position(order[r], i) = static_cast<double>(r);
  }
  pr.f0 = standardized_target(p, rng);
  for (double alpha : {0.0, 0.5}) {
    sq::Options opt;
    opt.family = Family::binomial;
    opt.alpha = alpha;
    opt.lambda = alpha > 0.0 ? 0.2 * sq::lambda_max(pr.position, pr.Y, pr.f0, alpha) : 0.05;
    opt.smooth = alpha > 0.0 ? 0.01 : 0.0;
    opt.rounds = 2;
    opt.inner_iter = 3;  // short f steps: the test is about the order of the work, not the optimum
    const std::string label = "alpha " + std::to_string(alpha);
    const auto quiet = [](const sq::Step&) {};
    const sq::Fit serial = sq::fit_bnd(pr.position, pr.Y, pr.f0, opt, sq::Serial{}, quiet);
    std::size_t calls = 0;
    const sq::Fit reversed = sq::fit_bnd(pr.position, pr.Y, pr.f0, opt, Reversed{&calls}, quiet);
    EXPECT_GT(calls, 10u) << label;  // the executor was used
    expect_identical(serial, reversed, label + " reversed");
    const sq::Fit threads = sq::fit_bnd(pr.position, pr.Y, pr.f0, opt, TwoThreads{}, quiet);
    expect_identical(serial, threads, label + " two threads");
    EXPECT_EQ(serial.rounds, 2) << label;
  }
}

}  // namespace
