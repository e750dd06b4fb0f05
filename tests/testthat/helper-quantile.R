# Brute-force quantile normalization, written for clarity with base R only:
# type-7 quantile functions, approx() for every interpolation, rank() for ties.
# A given target is used at its own length (preprocessCore's rule).
reference_normalize <- function(x, target = NULL, ties = "midrank") {
  p <- nrow(x)
  levels_p <- (seq_len(p) - 1) / (p - 1)
  resample <- function(sorted_values, at) {
    q <- length(sorted_values)
    if (q == 1L) return(rep(sorted_values, length(at)))
    stats::approx((seq_len(q) - 1) / (q - 1), sorted_values, at)$y
  }
  if (is.null(target)) {
    quantiles <- apply(x, 2, function(col) resample(sort(col[!is.na(col)]), levels_p))
    target <- rowMeans(quantiles)
  } else {
    target <- sort(target)
  }
  # the target's own quantile function, linear between its values
  target_at <- function(level) {
    if (length(target) == 1L) return(rep(target, length(level)))
    stats::approx((seq_along(target) - 1) / (length(target) - 1), target, level)$y
  }
  out <- apply(x, 2, function(col) {
    observed <- !is.na(col)
    q <- sum(observed)
    v <- col[observed]
    level <- function(r) if (q == 1L) rep(0.5, length(r)) else (r - 1) / (q - 1)
    col[observed] <- switch(ties,
      midrank = target_at(level(rank(v))),
      first = target_at(level(rank(v, ties.method = "first"))),
      average = stats::ave(target_at(level(rank(v, ties.method = "first"))), v)
    )
    col
  })
  dimnames(out) <- dimnames(x)
  out
}

# A matrix with many ties (values on a coarse grid) and optionally missing values.
tied_matrix <- function(p, n, levels = 12, n_missing = 0, seed = 1) {
  set.seed(seed)
  x <- matrix(sample(levels, p * n, replace = TRUE) + rep(seq_len(n) / 3, each = p), p, n)
  if (n_missing > 0) x[sample(length(x), n_missing)] <- NA
  dimnames(x) <- list(paste0("g", seq_len(p)), paste0("s", seq_len(n)))
  x
}

# Columns near +1e15, -1e15 and 3 whose quantiles cancel at every level: a
# sum in floating point loses the small parts' last bits, differently for each
# order of the columns. The sum of their doubles is known exactly: a value
# minus its column's offset is exact (Sterbenz, or both multiples of 2^-20)
# and a multiple of 2^-20 below 8 in magnitude, so these parts add up exactly.
cancelling_matrix <- function(p, n, seed) {
  set.seed(seed)
  offsets <- rep(c(1e15, -1e15, 3), length.out = n)
  x <- sweep(round(matrix(rnorm(p * n), p, n) * 2^20) / 2^20, 2, offsets, "+")
  exact <- (rowSums(sweep(apply(x, 2, sort), 2, offsets)) + sum(offsets)) / n
  list(x = x, exact_target = exact)
}
