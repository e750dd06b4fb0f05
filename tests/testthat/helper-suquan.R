# Samples whose labels depend on the top 20% of each sample's ranks only: the
# true quantile function is a step, far from the mean (normal) quantiles.
simulate_suquan <- function(n, p = 60, seed = 1, family = "binomial") {
  set.seed(seed)
  x <- matrix(rnorm(p * n), p, n, dimnames = list(paste0("g", seq_len(p)), NULL))
  f_true <- as.numeric(seq_len(p) > 0.8 * p)
  w_true <- c(rep(1, 8), rep(-1, 8), rep(0, p - 16))
  ranks <- apply(x, 2, rank)
  g <- colSums(w_true * matrix(f_true[ranks], p))
  y <- if (family == "binomial") {
    factor(ifelse(g + rnorm(n, sd = 0.5) > 0, "high", "low"), levels = c("low", "high"))
  } else {
    g + rnorm(n, sd = 0.3)
  }
  list(x = x, y = y, f_true = f_true)
}

# Ridge-penalized logistic or least-squares regression written directly from
# the objective (1/n) sum loss + lambda ||w||^2, intercept not penalized.
reference_ridge <- function(z, y01, lambda, family) {
  n <- ncol(z)
  if (family == "gaussian") {
    zc <- z - rowMeans(z)
    yc <- y01 - mean(y01)
    w <- solve(zc %*% t(zc) / n + 2 * lambda * diag(nrow(z)), zc %*% yc / n)
    b <- mean(y01 - colSums(w[, 1] * z))
    return(list(w = w[, 1], b = b))
  }
  objective <- function(theta) {
    eta <- colSums(theta[-1] * z) + theta[1]
    mean(pmax(eta, 0) + log1p(exp(-abs(eta))) - y01 * eta) + lambda * sum(theta[-1]^2)
  }
  gradient <- function(theta) {
    eta <- colSums(theta[-1] * z) + theta[1]
    d <- (stats::plogis(eta) - y01) / n
    c(sum(d), z %*% d + 2 * lambda * theta[-1])
  }
  opt <- stats::optim(numeric(nrow(z) + 1), objective, gradient, method = "BFGS",
                      control = list(reltol = 1e-14, maxit = 5000))
  list(w = opt$par[-1], b = opt$par[1])
}
