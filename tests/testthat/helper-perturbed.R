# References for the perturbed optimizers, written from the definitions with
# base R only.

ref_softmax <- function(theta) {
  e <- exp(theta - max(theta))
  e / sum(e)
}

ref_softmax_jacobian <- function(theta, eps) {
  p <- ref_softmax(theta / eps)
  (diag(p) - tcrossprod(p)) / eps
}

# P(argmax(theta + eps Z) = i) for standard normal Z, by numerical
# integration over the value z of the i-th noise:
# integral of phi(z) prod_{j != i} Phi((theta_i - theta_j) / eps + z) dz.
ref_normal_argmax <- function(theta, eps) {
  vapply(seq_along(theta), function(i) {
    others <- theta[-i]
    integrand <- function(z) {
      vapply(z, function(zz) stats::dnorm(zz) * prod(stats::pnorm((theta[i] - others) / eps + zz)),
             0)
    }
    stats::integrate(integrand, -Inf, Inf, rel.tol = 1e-12)$value
  }, 0)
}

# Central finite differences of f at x: J[i, j] = d f_i / d x_j.
ref_finite_jacobian <- function(f, x, h = 1e-4) {
  columns <- lapply(seq_along(x), function(j) {
    e <- replace(numeric(length(x)), j, h)
    (f(x + e) - f(x - e)) / (2 * h)
  })
  do.call(cbind, columns)
}

# n_rep estimates of the perturbed maximizer with n_samples draws each, as
# the columns of a matrix, and their Jacobians summed.
ref_replicate_perturbed <- function(theta, solver, n_rep, n_samples, ...) {
  values <- matrix(0, length(theta), n_rep)
  jacobian <- 0
  for (r in seq_len(n_rep)) {
    op <- perturbed_fn(theta, solver, n_samples = n_samples, ...)
    values[, r] <- op$value
    jacobian <- jacobian + op$jacobian()
  }
  list(values = values, jacobian = jacobian / n_rep)
}

# Label rankings from a planted affine model: scores W x + b plus normal
# noise of standard deviation `sd`; rankings give 1 to the highest score.
ref_label_ranking <- function(n, w, b, sd, seed) {
  set.seed(seed)
  x <- matrix(stats::rnorm(ncol(w) * n), ncol(w), n)
  scores <- w %*% x + b
  noisy <- scores + matrix(stats::rnorm(nrow(w) * n, sd = sd), nrow(w), n)
  list(x = x, rankings = apply(-noisy, 2, rank), truth = apply(-scores, 2, rank))
}
