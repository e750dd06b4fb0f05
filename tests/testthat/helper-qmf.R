# QMF's test model, shared by test-qmf.R and bench/qmf.R: a rank-3 signal
# whose rows go through exp(z / 2), sign(z) |z|^3 or 10 pnorm(z), plus noise
# of sd 0.01.
qmf_three_maps <- function(seed, d = 150, n = 60, k = 3) {
  set.seed(seed)
  z <- matrix(rnorm(d * k), d) %*% matrix(rnorm(k * n), k)
  maps <- list(function(v) exp(v / 2), function(v) sign(v) * abs(v)^3,
               function(v) 10 * pnorm(v))
  kind <- rep_len(1:3, d)
  x <- t(vapply(seq_len(d), function(r) maps[[kind[r]]](z[r, ]), numeric(n)))
  x <- x + 0.01 * matrix(rnorm(d * n), d)
  dimnames(x) <- list(paste0("g", seq_len(d)), paste0("s", seq_len(n)))
  x
}

# The synthetic model of Cuturi, Teboul, Niles-Weed and Vert (2020), shared
# by test-qmf.R and bench/qmf.R: a non-negative rank-k product U V whose rows
# go through a hard quantile map T* onto m random increasing positive levels,
# plus Gaussian noise of `noise` times each row's standard deviation, clipped
# at 0. Returns the data and the noiseless signal T*(U V).
qmf_paper_synthetic <- function(seed, d = 200, n = 100, k = 3, m = 8, noise = 0.1) {
  set.seed(seed)
  z <- matrix(runif(d * k), d) %*% matrix(runif(k * n), k)
  signal <- t(apply(z, 1L, function(v) {
    levels <- cumsum(rexp(m))
    levels[ceiling(rank(v, ties.method = "first") * m / n)]
  }))
  x <- pmax(signal + noise * apply(signal, 1L, stats::sd) * matrix(rnorm(d * n), d), 0)
  dimnames(x) <- dimnames(signal) <- list(paste0("g", seq_len(d)), paste0("s", seq_len(n)))
  list(x = x, signal = signal)
}

# The multiplicative KL updates of kl_nmf_updates() written plainly in R:
# the reference of the C++ core's (inst/include/diffrank/nmf.hpp).
kl_nmf_updates_reference <- function(x, w, h, iterations, mask = NULL) {
  tiny <- 1e-12
  for (it in seq_len(iterations)) {
    ratio <- x / pmax(w %*% h, tiny)
    h_mass <- if (is.null(mask)) colSums(w) else crossprod(w, mask)
    h <- h * crossprod(w, ratio) / pmax(h_mass, tiny)
    ratio <- x / pmax(w %*% h, tiny)
    w_mass <- if (is.null(mask)) rep(rowSums(h), each = nrow(x)) else tcrossprod(mask, h)
    w <- w * tcrossprod(ratio, h) / pmax(w_mass, tiny)
  }
  list(w = w, h = h)
}
