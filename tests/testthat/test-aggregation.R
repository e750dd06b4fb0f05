# Rank aggregation (R/aggregation.R, aggregation.hpp): the exact Kemeny
# ranking against enumeration of every ranking, the local search against its
# own optimality condition, Borda and Copeland against transcriptions of
# their definitions, with ties, missing items and weights.

all_orders <- function(p) {
  if (p == 1L) return(matrix(1L))
  q <- all_orders(p - 1L)
  do.call(cbind, lapply(seq_len(p), function(i) rbind(i, apply(q, 2, function(o) setdiff(seq_len(p), i)[o]))))
}

# above[a, b]: summed weights of the rankings with a strictly above b
bf_above <- function(r, w = rep(1, ncol(r)), missing = "bottom") {
  if (missing == "bottom") r[is.na(r)] <- Inf
  p <- nrow(r)
  above <- matrix(0, p, p)
  for (k in seq_len(ncol(r))) {
    above <- above + w[k] * outer(r[, k], r[, k], function(a, b) !is.na(a) & !is.na(b) & a < b)
  }
  above
}

bf_disagreement <- function(above, order) {
  sum(vapply(seq_along(order), function(i) sum(above[order[-seq_len(i)], order[i]]), numeric(1)))
}

# every item ranked by at least one ranking
random_partial_rankings <- function(p, count, ties = TRUE, missing = TRUE) {
  repeat {
    r <- replicate(count, {
      v <- if (ties) sample(p, p, replace = TRUE) else sample(p)
      if (missing) v[sample(p, sample(0:(p - 2), 1))] <- NA
      v
    })
    if (all(rowSums(!is.na(r)) > 0)) break
  }
  rownames(r) <- paste0("i", seq_len(p))
  r
}

test_that("the exact Kemeny ranking has the least disagreement of all rankings", {
  set.seed(1)
  orders <- all_orders(6)
  for (case in 1:6) {
    r <- random_partial_rankings(6, 7)
    w <- if (case %% 2 == 0) runif(ncol(r)) else NULL
    for (missing in c("bottom", "ignore")) {
      fit <- aggregate_rankings(r, "kemeny", missing = missing, weights = w)
      above <- bf_above(r, w %||% rep(1, ncol(r)), missing)
      all_d <- apply(orders, 2, bf_disagreement, above = above)
      expect_equal(fit$disagreement, min(all_d), tolerance = 1e-12)
      expect_equal(bf_disagreement(above, order(fit$ranking)), min(all_d), tolerance = 1e-12)
      expect_true(fit$exact)
      expect_identical(fit$items, rownames(r)[order(fit$ranking)])
    }
  }
})

test_that("beyond 16 items the local search leaves no improving move", {
  set.seed(2)
  r <- random_partial_rankings(40, 9)
  fit <- aggregate_rankings(r, "kemeny")
  expect_false(fit$exact)
  above <- bf_above(r)
  top <- order(fit$ranking)
  d <- bf_disagreement(above, top)
  expect_equal(fit$disagreement, d)
  # no single item moved anywhere lowers the disagreement
  for (i in seq_along(top)) {
    for (t in seq_along(top)) {
      moved <- append(top[-i], top[i], after = t - 1L)
      expect_gte(bf_disagreement(above, moved), d - 1e-9)
    }
  }
  # and it is no worse than Borda's or Copeland's ranking
  expect_lte(d, aggregate_rankings(r, "borda")$disagreement)
  expect_lte(d, aggregate_rankings(r, "copeland")$disagreement)
})

test_that("Borda and Copeland follow their definitions", {
  set.seed(3)
  r <- random_partial_rankings(8, 5)
  w <- c(1, 2, 0.5, 1, 3)
  p <- nrow(r)
  # bottom: missing items share the positions below the ranked ones
  filled <- apply(r, 2, function(v) {
    out <- rank(v, ties.method = "average", na.last = "keep")
    out[is.na(v)] <- (sum(!is.na(v)) + 1 + p) / 2
    out
  })
  score <- unname(drop(filled %*% w) / sum(w))
  fit <- aggregate_rankings(r, "borda", weights = w)
  expect_equal(unname(fit$score), score)
  expect_identical(unname(fit$ranking), as.double(rank(score, ties.method = "first")))
  # ignore: normalized ranks over the rankings that rank the item
  normalized <- apply(r, 2, function(v) (rank(v, ties.method = "average", na.last = "keep") - 0.5) / sum(!is.na(v)))
  score <- vapply(seq_len(p), function(i) {
    k <- !is.na(normalized[i, ])
    sum(normalized[i, k] * w[k]) / sum(w[k])
  }, numeric(1))
  expect_equal(unname(aggregate_rankings(r, "borda", "ignore", weights = w)$score), score)
  # Copeland: majority wins, half for a draw, ties broken by Borda
  above <- bf_above(r, w)
  wins <- vapply(seq_len(p), function(a) sum(above[a, -a] > above[-a, a]) +
                   0.5 * sum(above[a, -a] == above[-a, a]), numeric(1))
  fit <- aggregate_rankings(r, "copeland", weights = w)
  expect_equal(unname(fit$score), wins)
  borda <- rank(aggregate_rankings(r, "borda", weights = w)$score, ties.method = "first")
  expect_identical(fit$items, rownames(r)[order(-wins, borda)])
})

test_that("gene lists as a list of character vectors", {
  lists <- list(s1 = c("TP53", "MYC", "EGFR", "KRAS"), s2 = c("MYC", "TP53", "KRAS"),
                s3 = c("TP53", "EGFR", "MYC", "PTEN"), s4 = c("MYC", "TP53", "PTEN", "EGFR"))
  fit <- aggregate_rankings(lists)
  r <- cbind(s1 = c(1, 2, 3, 4, NA), s2 = c(2, 1, NA, 3, NA), s3 = c(1, 3, 2, NA, 4),
             s4 = c(2, 1, 4, NA, 3))
  rownames(r) <- c("TP53", "MYC", "EGFR", "KRAS", "PTEN")
  expect_identical(fit, aggregate_rankings(r))
  expect_identical(fit$items[1:2], c("TP53", "MYC"))
  expect_output(print(fit), "Kemeny consensus of 4 rankings of 5 items")
  expect_output(print(fit), "the exact minimum")
  # the Mallows method: the same centre, with its dispersion
  m <- aggregate_rankings(lists, "mallows")
  expect_identical(m$ranking, fit$ranking)
  expect_s3_class(m$model, "mallows_model")
  expect_output(print(m), "Mallows dispersion theta")
})

test_that("complete rankings: Kemeny equals the Mallows centre and the summed Kendall distance", {
  set.seed(4)
  r <- rmallows(50, c(x = 2, y = 1, z = 4, w = 3, v = 5), theta = 0.3)
  fit <- aggregate_rankings(r)
  expect_equal(fit$ranking, mallows_model(r)$consensus)
  expect_equal(fit$disagreement,
               sum(diffrank:::kendall_distances_cpp(r, unname(fit$ranking), 1L)))
})

test_that("the default is Kemeny up to 2,000 items and Borda beyond", {
  set.seed(5)
  small <- replicate(3, sample(50))
  expect_identical(aggregate_rankings(small)$method, "kemeny")
  expect_identical(aggregate_rankings(small), aggregate_rankings(small, "kemeny"))
  large <- replicate(3, sample(2001))
  expect_identical(aggregate_rankings(large), aggregate_rankings(large, "borda"))
  expect_output(print(aggregate_rankings(large)), "Borda consensus")
})

test_that("one item, one ranking, constant rankings", {
  expect_equal(unname(aggregate_rankings(matrix(1, 1, 3))$ranking), 1)
  one <- aggregate_rankings(c(a = 3, b = 1, c = 2))
  expect_identical(one$items, c("b", "c", "a"))
  expect_identical(one$disagreement, 0)
  tied <- aggregate_rankings(matrix(1, 4, 3, dimnames = list(letters[1:4], NULL)))
  expect_identical(tied$items, letters[1:4])
  expect_identical(tied$disagreement, 0)
})

test_that("clear errors for bad rankings", {
  expect_error(aggregate_rankings(list()), "`x` as a list must hold rankings")
  expect_error(aggregate_rankings(list(c("a", "a"))), "element 1")
  expect_error(aggregate_rankings(list("a", 1)), "element 2")
  expect_error(aggregate_rankings(cbind(c(1, Inf))), "infinite values")
  expect_error(aggregate_rankings(cbind(c(1, 2), c(NA, NA))), "Ranking 2 of `x` ranks no item")
  expect_error(aggregate_rankings(cbind(a = c(1, NA), b = c(2, NA))), "ranked by no ranking")
  expect_error(aggregate_rankings(cbind(1:2), method = "best"), "`method` must be one of")
  expect_error(aggregate_rankings(cbind(1:2), missing = "top"), "`missing` must be one of")
  expect_error(aggregate_rankings(cbind(1:2, 2:1), weights = c(1, -1)), "`weights`")
  expect_error(aggregate_rankings(cbind(1:2, 2:1), weights = 1), "`weights`")
  expect_error(aggregate_rankings(cbind(1:2, 2:1), weights = c(0, 0)), "`weights`")
  expect_error(aggregate_rankings(cbind(c(1, 1, 2)), "mallows"), "top-k list")
  expect_error(aggregate_rankings(cbind(1:2), "mallows", missing = "ignore"), "`missing` must be \"bottom\"")
  expect_error(aggregate_rankings(cbind(1:2), foo = 1), "Unknown argument `foo`")
  x <- cbind(c(2, 1, NA), c(1, 2, 3))
  before <- x
  aggregate_rankings(x)
  expect_identical(x, before)
})
