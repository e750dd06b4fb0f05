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
