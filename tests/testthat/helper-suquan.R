# Samples whose labels depend on the ranks of 16 genes through a true target
# f_true: "step" (only the top 20 % of each sample's ranks matter, far from the
# mean quantiles) or "normal" (the normal quantiles, which are the mean
# quantiles of normal data: plain quantile normalization has the right
# target). Multinomial labels cut the score into three classes.
simulate_suquan <- function(n, p = 60, seed = 1, family = "binomial", target = "step") {
  set.seed(seed)
  x <- matrix(rnorm(p * n), p, n, dimnames = list(paste0("g", seq_len(p)), NULL))
  f_true <- switch(target,
                   step = as.numeric(seq_len(p) > 0.8 * p),
                   normal = qnorm(ppoints(p)))
  w_true <- c(rep(1, 8), rep(-1, 8), rep(0, p - 16))
  ranks <- apply(x, 2, rank)
  g <- colSums(w_true * matrix(f_true[ranks], p))
  g <- (g - mean(g)) / sd(g)
  noise <- rnorm(n, sd = 0.3)
  y <- switch(family,
    binomial = factor(ifelse(g + noise > 0, "high", "low"), levels = c("low", "high")),
    gaussian = g + noise,
    multinomial = cut(g + noise, c(-Inf, -0.5, 0.5, Inf), labels = c("low", "mid", "high")))
  list(x = x, y = y, f_true = f_true)
}

# The target a fit starts from: the mean quantiles, centred, with mean square 1.
standardized <- function(f) {
  f <- f - mean(f)
  f / sqrt(mean(f^2))
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

# lambda_max as glmnet defines it, from the normalized data z (features x
# samples) and the labels as an n x K matrix.
reference_lambda_max <- function(z, Y, alpha) {
  centred <- sweep(Y, 2, colMeans(Y))
  max(abs(z %*% centred)) / ncol(z) / max(alpha, 1e-3)
}

# The operator of method "svd" as a dense p x pK matrix, for small p.
reference_svd_matrix <- function(x, Y) {
  p <- nrow(x)
  C <- sweep(Y, 2, colMeans(Y)) / nrow(Y)
  ranks <- apply(x, 2, rank)
  M <- matrix(0, p, p * ncol(Y))
  for (i in seq_len(ncol(x))) {
    for (k in seq_len(ncol(Y))) {
      M[cbind(ranks[, i], (k - 1) * p + seq_len(p))] <-
        M[cbind(ranks[, i], (k - 1) * p + seq_len(p))] + C[i, k]
    }
  }
  M
}
