# Soft sort and soft rank (Blondel et al. 2020), isotonic regression and the
# Spearman loss, against brute-force references written here.

# The references below work in the units of x, so these tests call the
# operators with scale = "none" unless they test the scaling itself (the
# package's default, scale = "spacing", is tested at the end of the file).
# Many use an eps that pools every value on purpose: the warning that says so
# is tested on its own, and muffled here.
unpooled <- function(expr) {
  withCallingHandlers(expr, warning = function(w) {
    if (grepl("nearly constant", conditionMessage(w))) invokeRestart("muffleWarning")
  })
}
soft_rank <- function(x, eps = 1, reg = "l2", decreasing = FALSE, scale = "none", ...) {
  unpooled(diffrank::soft_rank(x, eps, reg, decreasing, scale, ...))
}
soft_sort <- function(x, eps = 1, reg = "l2", decreasing = FALSE, scale = "none", ...) {
  unpooled(diffrank::soft_sort(x, eps, reg, decreasing, scale, ...))
}
soft_rank_fn <- function(x, eps = 1, reg = "l2", decreasing = FALSE, scale = "none", ...) {
  unpooled(diffrank::soft_rank_fn(x, eps, reg, decreasing, scale, ...))
}
soft_sort_fn <- function(x, eps = 1, reg = "l2", decreasing = FALSE, scale = "none", ...) {
  unpooled(diffrank::soft_sort_fn(x, eps, reg, decreasing, scale, ...))
}
soft_rank_vjp <- function(x, v, eps = 1, reg = "l2", decreasing = FALSE, scale = "none", ...) {
  diffrank::soft_rank_vjp(x, v, eps, reg, decreasing, scale, ...)
}
soft_sort_vjp <- function(x, v, eps = 1, reg = "l2", decreasing = FALSE, scale = "none", ...) {
  diffrank::soft_sort_vjp(x, v, eps, reg, decreasing, scale, ...)
}

# --- references -------------------------------------------------------------

# All permutations of 1:n (rows).
perms <- function(n) {
  if (n == 1L) return(matrix(1L, 1L, 1L))
  p <- perms(n - 1L)
  do.call(rbind, lapply(seq_len(n), function(i) cbind(i, ifelse(p >= i, p + 1L, p))))
}

# Optimality certificate of a projection p of z onto the permutahedron of w,
# checked against every vertex q (a permutation of w): the projection is the
# point of the polytope where <gradient, q - p> >= 0 for all q. L2: the
# gradient of 0.5 ||p - z||^2 is p - z. KL (p = log mu, mu in P(exp(w))): the
# gradient of KL(mu, exp(z)) is log(mu) - z, vertices are permutations of
# exp(w). Returns the most negative scaled inner product (about 0 if optimal)
# and whether p lies on the polytope's hyperplane.
projection_certificate <- function(p, z, w, reg) {
  P <- perms(length(z))
  if (reg == "l2") {
    grad <- p - z
    mu <- p
    verts <- matrix(w[P], nrow(P))
  } else {
    grad <- p - z
    mu <- exp(p)
    verts <- matrix(exp(w)[P], nrow(P))
  }
  inner <- drop(sweep(verts, 2, mu) %*% grad)
  list(worst = min(inner) / max(1, sqrt(sum(grad^2)) * max(abs(verts))),
       sum_gap = abs(sum(mu) - sum(verts[1, ])) / max(1, abs(sum(mu))))
}

# Plain PAV for the decreasing KL problem: pool the first violating pair
# until none is left (quadratic, fine for small n).
lse <- function(a) max(a) + log(sum(exp(a - max(a))))
kl_iso_reference <- function(s, w) {
  blocks <- as.list(seq_along(s))
  val <- function(b) lse(s[b]) - lse(w[b])
  repeat {
    v <- vapply(blocks, val, 0)
    k <- which(diff(v) >= 0)
    if (length(k) == 0L) break
    k <- k[1L]
    blocks[[k]] <- c(blocks[[k]], blocks[[k + 1L]])
    blocks[[k + 1L]] <- NULL
  }
  rep(vapply(blocks, val, 0), lengths(blocks))
}

# Soft rank and soft sort from section 3 of the spec, with stats::isoreg for
# the L2 isotonic step and kl_iso_reference for the KL one.
ref_rank <- function(x, eps, reg = "l2", decreasing = FALSE) {
  if (decreasing) x <- -x
  n <- length(x)
  o <- order(x, decreasing = TRUE)
  s <- x[o] / eps
  rho <- n:1
  out <- numeric(n)
  if (reg == "l2") {
    v <- -stats::isoreg(-(s - rho))$yf
    out[o] <- s - v
  } else {
    v <- kl_iso_reference(s, log(rho))
    out[o] <- exp(s - v)
  }
  out
}
ref_sort <- function(x, eps, reg = "l2", decreasing = FALSE) {
  sgn <- if (!decreasing) -1 else 1
  n <- length(x)
  w <- sort(sgn * x, decreasing = TRUE)
  s <- (n:1) / eps
  v <- if (reg == "l2") -stats::isoreg(-(s - w))$yf else kl_iso_reference(s, w)
  sgn * (s - v)
}

# Weighted PAV for non-decreasing fits, the textbook way (block sums).
wpav_reference <- function(y, w) {
  val <- as.list(y); wt <- as.list(w); len <- as.list(rep(1, length(y)))
  i <- 1
  while (i < length(val)) {
    if (val[[i]] > val[[i + 1]]) {
      tw <- wt[[i]] + wt[[i + 1]]
      val[[i]] <- (val[[i]] * wt[[i]] + val[[i + 1]] * wt[[i + 1]]) / tw
      wt[[i]] <- tw; len[[i]] <- len[[i]] + len[[i + 1]]
      val[[i + 1]] <- NULL; wt[[i + 1]] <- NULL; len[[i + 1]] <- NULL
      i <- max(1, i - 1)
    } else {
      i <- i + 1
    }
  }
  rep(unlist(val), unlist(len))
}

grid <- expand.grid(kind = c("rank", "sort"), reg = c("l2", "kl"),
                    decreasing = c(FALSE, TRUE), stringsAsFactors = FALSE)
soft_op <- function(kind) if (kind == "rank") soft_rank else soft_sort
soft_op_fn <- function(kind) if (kind == "rank") soft_rank_fn else soft_sort_fn
ref_op <- function(kind) if (kind == "rank") ref_rank else ref_sort

# --- isotonic regression ----------------------------------------------------

test_that("isotonic_regression() agrees with stats::isoreg and a weighted PAV", {
  set.seed(1)
  for (n in c(1, 2, 7, 100, 3000)) {
    y <- cumsum(rnorm(n)) * 0.2 + rnorm(n)
    expect_equal(isotonic_regression(y), stats::isoreg(y)$yf, tolerance = 1e-12)
    expect_equal(isotonic_regression(y, decreasing = TRUE), -stats::isoreg(-y)$yf,
                 tolerance = 1e-12)
    w <- runif(n, 0.1, 3)
    expect_equal(isotonic_regression(y, weights = w), wpav_reference(y, w), tolerance = 1e-12)
  }
  y <- c(3, 3, 1, 1, 2, 5, 5, 4)   # ties
  expect_equal(isotonic_regression(y), stats::isoreg(y)$yf, tolerance = 1e-14)
  expect_equal(isotonic_regression(c(a = 2, b = 1)), c(a = 1.5, b = 1.5))
  expect_identical(isotonic_regression(numeric(0)), numeric(0))
  expect_error(isotonic_regression(c(1, NA)), "`y` must contain only finite values")
  expect_error(isotonic_regression(1:3, weights = c(1, 0, 1)), "`weights` must be NULL or 3")
  expect_error(isotonic_regression("a"), "`y` must be a numeric vector")
})

# --- forward values -------------------------------------------------------

test_that("soft ranks and sorts match the isotonic-regression reference", {
  set.seed(2)
  for (k in seq_len(nrow(grid))) {
    g <- grid[k, ]
    for (eps in c(1e-3, 0.1, 1, 10, 100)) {
      x <- rnorm(9)
      x[4] <- x[2] + eps / 5   # a near-tie
      got <- soft_op(g$kind)(x, eps = eps, reg = g$reg, decreasing = g$decreasing)
      expect_equal(got, ref_op(g$kind)(x, eps, g$reg, g$decreasing), tolerance = 1e-10,
                   info = paste(g, collapse = " "))
    }
  }
})

test_that("soft ranks and sorts are the projections onto the permutahedron (vertex check)", {
  set.seed(3)
  for (reg in c("l2", "kl")) {
    for (eps in c(0.05, 0.5, 5)) {
      x <- rnorm(5)
      r <- soft_rank(x, eps = eps, reg = reg)
      p <- if (reg == "l2") r else log(r)
      w <- if (reg == "l2") 5:1 else log(5:1)
      cert <- projection_certificate(p, x / eps, w, reg)
      expect_gt(cert$worst, -1e-9)
      expect_lt(cert$sum_gap, 1e-12)
      s <- soft_sort(x, eps = eps, reg = reg, decreasing = TRUE)
      cert <- projection_certificate(s, (5:1) / eps, x, reg)
      expect_gt(cert$worst, -1e-9)
      # any w, any order, through project_permutahedron()
      z <- rnorm(5) * 3
      w <- runif(5, -2, 2)
      cert <- projection_certificate(project_permutahedron(z, w, reg), z, w, reg)
      expect_gt(cert$worst, -1e-9)
      expect_lt(cert$sum_gap, 1e-12)
    }
  }
})

test_that("eps = 0 and small eps give the hard operators; huge eps the centroid", {
  set.seed(4)
  x <- c(round(rnorm(30), 1), 0.3, 0.3, 0.3)   # ties
  for (decreasing in c(FALSE, TRUE)) {
    hard_rank <- rank(if (!decreasing) x else -x)
    for (reg in c("l2", "kl")) {
      expect_identical(soft_rank(x, 0, reg, decreasing), hard_rank)
      expect_identical(soft_sort(x, 0, reg, decreasing),
                       sort(x, decreasing = decreasing))
      # below the smallest gap the L2 operators are exactly hard
      expect_equal(soft_rank(x, 1e-3, reg, decreasing), hard_rank, tolerance = 1e-10)
      expect_equal(soft_sort(x, 1e-3, reg, decreasing),
                   sort(x, decreasing = decreasing), tolerance = 1e-10)
      # the pooled limit, with the warning that says so
      expect_warning(pooled <- diffrank::soft_rank(x, 1e9, reg, decreasing, "none"),
                     "nearly constant")
      expect_equal(pooled, rep((length(x) + 1) / 2, length(x)), tolerance = 1e-8)
    }
    expect_warning(pooled <- diffrank::soft_sort(x, 1e12, "l2", decreasing, "none"),
                   "nearly constant")
    expect_equal(pooled, rep(mean(x), length(x)), tolerance = 1e-9)
  }
  # the KL soft sort pools to a log-mean-exp
  expect_warning(pooled <- diffrank::soft_sort(x, 1e12, "kl", TRUE, "none"), "nearly constant")
  expect_equal(pooled, rep(log(mean(exp(x))), length(x)), tolerance = 1e-9)
  expect_warning(pooled <- diffrank::soft_sort(x, 1e12, "kl", FALSE, "none"), "nearly constant")
  expect_equal(pooled, rep(-log(mean(exp(-x))), length(x)), tolerance = 1e-9)
})

test_that("sums, monotonicity and exact ties hold for every eps", {
  set.seed(5)
  n <- 40
  x <- rnorm(n)
  x[c(3, 17, 30)] <- x[8]
  for (k in seq_len(nrow(grid))) {
    g <- grid[k, ]
    for (eps in c(1e-3, 0.1, 1, 10, 100)) {
      out <- soft_op(g$kind)(x, eps = eps, reg = g$reg, decreasing = g$decreasing)
      info <- paste(c(g, eps), collapse = " ")
      if (g$kind == "rank") {
        expect_equal(sum(out), n * (n + 1) / 2, tolerance = 1e-12, info = info)
        expect_identical(length(unique(out[c(3, 8, 17, 30)])), 1L)
        o <- order(if (!g$decreasing) x else -x)
        expect_true(all(diff(out[o]) >= -1e-12), info = info)
        expect_true(all(out > 0))
      } else {
        if (g$reg == "l2") expect_equal(sum(out), sum(x), tolerance = 1e-12, info = info)
        d <- diff(out)
        expect_true(all(if (!g$decreasing) d >= -1e-12 else d <= 1e-12),
                    info = info)
      }
    }
  }
})

test_that("scale = \"sd\" makes the operators scale-free", {
  set.seed(6)
  x <- rnorm(20)
  for (reg in c("l2", "kl")) {
    expect_equal(soft_rank(1000 * x + 5, 0.1, reg, scale = "sd"),
                 soft_rank(x, 0.1, reg, scale = "sd"), tolerance = 1e-10)
    expect_equal(soft_sort(1000 * x, 0.1, reg, scale = "sd"),
                 1000 * soft_sort(x, 0.1, reg, scale = "sd"), tolerance = 1e-10)
  }
  # for L2 it is the same as eps * sd(x)
  expect_equal(soft_rank(x, 0.1, scale = "sd"), soft_rank(x, 0.1 * sd(x)), tolerance = 1e-12)
  expect_equal(soft_sort(x, 0.1, scale = "sd"), soft_sort(x, 0.1 * sd(x)), tolerance = 1e-12)
  # a constant vector is left alone
  expect_equal(soft_rank(rep(2, 4), 1, scale = "sd"), rep(2.5, 4))
})

test_that("extreme values neither overflow nor give NaN (KL with eps = 1e-8, |x| = 1e300)", {
  x <- c(3, -1, 2.5, 7, 2.5 + 1e-9)
  for (reg in c("l2", "kl")) {
    for (decreasing in c(FALSE, TRUE)) {
      r <- soft_rank(x, 1e-8, reg, decreasing)
      expect_true(all(is.finite(r)))
      # the R reference loses digits in exp(s - v) with s near 7e8
      expect_equal(r, ref_rank(x, 1e-8, reg, decreasing), tolerance = 1e-7)
      expect_equal(sum(r), 15, tolerance = 1e-14)
      s <- soft_sort(x, 1e-8, reg, decreasing)
      expect_equal(s, sort(x, decreasing = decreasing), tolerance = 1e-12)
      op <- soft_rank_fn(x, 1e-8, reg, decreasing)
      expect_true(all(is.finite(op$jacobian())))
      big <- c(1e300, -1e300, 5e299, 0, -2e299)
      for (eps in c(1e-8, 1, 1e300)) {
        expect_true(all(is.finite(soft_rank(big, eps, reg, decreasing))))
        expect_true(all(is.finite(soft_sort(big, eps, reg, decreasing))))
        expect_true(all(is.finite(soft_sort_fn(big, eps, reg, decreasing)$jacobian())))
      }
      expect_equal(soft_rank(big, 1, reg, decreasing),
                   rank(if (!decreasing) big else -big))
    }
  }
  expect_equal(soft_sort(c(1e300, -1e300, 5e299), 1e10), rep(5e299 / 3, 3), tolerance = 1e-6)
  expect_error(soft_rank(c(1e300, 0), 1e-10), "`x / eps` overflows")
  expect_error(soft_sort(c(1e301, 0), 1), "`x` or `length\\(x\\) / eps` exceeds 1e300")
})

# --- derivatives --------------------------------------------------------------

test_that("JVP, VJP and Jacobian equal central finite differences", {
  set.seed(7)
  n <- 8
  for (k in seq_len(nrow(grid))) {
    g <- grid[k, ]
    for (scale in c("none", "sd")) {
      for (eps in c(1e-3, 0.1, 1, 10, 100)) {
        x <- rnorm(n)
        x[5] <- x[2] + eps / 7      # closer than eps
        x[7] <- x[3] - eps / 3
        info <- paste(c(g, scale, eps), collapse = " ")
        f <- function(x) soft_op(g$kind)(x, eps, g$reg, g$decreasing, scale)
        op <- soft_op_fn(g$kind)(x, eps, g$reg, g$decreasing, scale)
        J <- op$jacobian()
        Jfd <- fd_jacobian(f, x, 1e-5 * min(eps, 1))
        tol <- 1e-6 * max(1, abs(J))   # 1e-6 relative to the Jacobian's size
        expect_lt(max(abs(J - Jfd)), tol, label = info)
        u <- rnorm(n)
        expect_equal(op$jvp(u), drop(J %*% u), tolerance = 1e-12, info = info)
        expect_equal(unname(op$vjp(u)), drop(crossprod(J, u)), tolerance = 1e-12, info = info)
        vjp_fun <- if (g$kind == "rank") soft_rank_vjp else soft_sort_vjp
        expect_equal(vjp_fun(x, u, eps, g$reg, g$decreasing, scale), op$vjp(u), tolerance = 1e-14)
        expect_identical(op$value, f(x))
      }
    }
  }
})

test_that("derivatives hold at large eps where PAV blocks are long", {
  set.seed(8)
  n <- 60
  x <- rnorm(n)
  for (k in seq_len(nrow(grid))) {
    g <- grid[k, ]
    # sorts pool neighbours once 1 / eps is below their gap, ranks once eps
    # is above it: large eps means long blocks for both
    for (eps in if (g$kind == "rank") c(10, 100) else c(1000, 1e4)) {
      op <- soft_op_fn(g$kind)(x, eps, g$reg, g$decreasing)
      expect_lt(op$diagnostics$n_blocks, 10)   # few long blocks
      J <- op$jacobian()
      Jfd <- fd_jacobian(function(x) soft_op(g$kind)(x, eps, g$reg, g$decreasing), x,
                         1e-5)
      expect_lt(max(abs(J - Jfd)), 1e-6 * max(1, abs(J)), label = paste(c(g, eps), collapse = " "))
    }
  }
  expect_identical(soft_rank_fn(x, 1000)$diagnostics$n_blocks, 1L)
})

test_that("hard operators have the hard derivatives", {
  x <- c(0.4, -1, 2, 0.4)
  expect_equal(soft_rank_fn(x, 0)$jacobian(), matrix(0, 4, 4))
  J <- soft_sort_fn(x, 0)$jacobian()
  expect_equal(J %*% x, matrix(sort(x)))
  expect_equal(sort(colSums(J)), rep(1, 4))
})

test_that("the KL soft sort derivative is a softmax over sorted x inside a block", {
  x <- c(0.2, 0.1, 0.15)
  op <- soft_sort_fn(x, eps = 1000, reg = "kl", decreasing = TRUE)
  expect_identical(op$diagnostics$n_blocks, 1L)
  p <- exp(x) / sum(exp(x))
  expect_equal(op$jacobian(), matrix(p, 3, 3, byrow = TRUE), tolerance = 1e-3)
})

# --- matrices and threads -----------------------------------------------------

test_that("matrices are processed column by column, with dimnames", {
  set.seed(9)
  m <- matrix(rnorm(60), 12, 5, dimnames = list(paste0("g", 1:12), paste0("s", 1:5)))
  v <- matrix(rnorm(60), 12, 5)
  for (k in seq_len(nrow(grid))) {
    g <- grid[k, ]
    out <- soft_op(g$kind)(m, 0.3, g$reg, g$decreasing)
    byc <- vapply(1:5, function(j) soft_op(g$kind)(m[, j], 0.3, g$reg, g$decreasing),
                  numeric(12))
    expect_equal(unname(out), unname(byc), tolerance = 0)
    expect_identical(colnames(out), colnames(m))
    expect_identical(rownames(out), if (g$kind == "rank") rownames(m) else NULL)
    vjp_fun <- if (g$kind == "rank") soft_rank_vjp else soft_sort_vjp
    gr <- vjp_fun(m, v, 0.3, g$reg, g$decreasing)
    expect_identical(dimnames(gr), dimnames(m))
    byc <- vapply(1:5, function(j) vjp_fun(m[, j], v[, j], 0.3, g$reg, g$decreasing),
                  numeric(12))
    expect_equal(unname(gr), unname(byc), tolerance = 0)
    op <- soft_op_fn(g$kind)(m, 0.3, g$reg, g$decreasing)
    jac <- op$jacobian()
    expect_identical(dim(jac), c(12L, 12L, 5L))
    expect_equal(unname(jac[, , 2]), unname(soft_op_fn(g$kind)(m[, 2], 0.3, g$reg,
                                                                 g$decreasing)$jacobian()))
    expect_equal(unname(op$jvp(v)[, 4]), unname(drop(jac[, , 4] %*% v[, 4])), tolerance = 1e-12)
  }
  df <- as.data.frame(m)
  expect_equal(soft_rank(df, 0.3), soft_rank(m, 0.3), ignore_attr = TRUE)
  expect_identical(names(soft_rank(c(a = 1, b = 0), 1)), c("a", "b"))
  expect_null(names(soft_sort(c(a = 1, b = 0), 1)))
})

test_that("results are identical for 1 and 2 threads", {
  set.seed(10)
  m <- matrix(rnorm(30 * 400), 30, 400)
  v <- matrix(rnorm(30 * 400), 30, 400)
  big <- matrix(rnorm(3000 * 4), 3000, 4)   # long vectors: the radix sort path
  for (k in seq_len(nrow(grid))) {
    g <- grid[k, ]
    f <- soft_op(g$kind)
    vjp_fun <- if (g$kind == "rank") soft_rank_vjp else soft_sort_vjp
    expect_identical(f(m, 0.2, g$reg, g$decreasing, threads = 1),
                     f(m, 0.2, g$reg, g$decreasing, threads = 2))
    expect_identical(vjp_fun(m, v, 0.2, g$reg, g$decreasing, "sd", threads = 1),
                     vjp_fun(m, v, 0.2, g$reg, g$decreasing, "sd", threads = 2))
    expect_identical(f(big, 0.01, g$reg, g$decreasing, threads = 1),
                     f(big, 0.01, g$reg, g$decreasing, threads = 2))
    op1 <- soft_op_fn(g$kind)(m, 0.2, g$reg, g$decreasing, threads = 1)
    op2 <- soft_op_fn(g$kind)(m, 0.2, g$reg, g$decreasing, threads = 2)
    expect_identical(op1$jvp(v), op2$jvp(v))
  }
})

test_that("long vectors (radix sort path) match the reference, ties included", {
  skip_on_cran()  # over 5 s
  set.seed(11)
  # the radix sort starts at 32768 values; its tie-breaking on the low bits
  # of the key is exercised by values that differ only there
  y <- c(rnorm(20000), 1 + (1:5000) * 2^-50, 1 + (5000:1) * 2^-51)
  o <- order(-y)
  expect_identical(soft_rank(y, 0, decreasing = TRUE), rank(-y))
  expect_identical(soft_sort(y, 0), sort(y))
  x <- round(rnorm(40000), 2)   # many ties
  expect_identical(soft_rank(x, 0), rank(x))
  expect_equal(soft_rank(x, 0.01), ref_rank(x, 0.01), tolerance = 1e-10)
  # stats::isoreg works with cumulative sums of values near n / eps, so the
  # reference itself is only good to about 1e-7 here
  expect_equal(soft_sort(x, 1, decreasing = TRUE),
               ref_sort(x, 1, decreasing = TRUE), tolerance = 1e-6)
  expect_equal(soft_sort(x, 0.01, decreasing = TRUE), sort(x, decreasing = TRUE),
               tolerance = 1e-14)
  expect_identical(soft_sort(x, 1e-3), sort(x))
  r <- soft_rank(x, 0.05, reg = "kl")
  tied <- which(x == x[1])
  expect_identical(length(unique(r[tied])), 1L)
  expect_identical(soft_sort(c(0, -0, 1, -1), 0), c(-1, 0, 0, 1))
  # skewed inputs crowd the buckets of the short-vector sort
  for (z in list(c(1e300, rnorm(3000), -1e300), exp(20 * rnorm(3000)),
                 c(rep(1, 500), 1 + (1:500) * 2^-52, rnorm(20)))) {
    expect_identical(soft_rank(z, 0), rank(z))
    expect_identical(soft_sort(z, 0, decreasing = TRUE), sort(z, decreasing = TRUE))
  }
})

# --- edge cases and bad input -------------------------------------------------

test_that("length 0 and 1 and constant vectors work", {
  for (kind in c("rank", "sort")) {
    expect_identical(soft_op(kind)(numeric(0), 1), numeric(0))
    expect_identical(soft_op_fn(kind)(numeric(0), 1)$vjp(numeric(0)), numeric(0))
  }
  expect_identical(soft_rank(5, 1), 1)
  expect_identical(soft_sort(5, 1), 5)
  expect_equal(soft_rank_fn(5, 1)$jacobian(), matrix(0, 1, 1))
  expect_equal(soft_sort_fn(5, 1)$jacobian(), matrix(1, 1, 1))
  for (reg in c("l2", "kl")) {
    expect_identical(soft_rank(rep(3, 4), 0.5, reg), rep(2.5, 4))
    expect_equal(soft_sort(rep(3, 4), 0.5, reg), rep(3, 4))
  }
})

test_that("bad input gives clear errors and never modifies x", {
  x <- c(2, 1, 3)
  x0 <- x
  expect_error(soft_rank(x, eps = -1), "`eps` must be a single finite number >= 0, not -1")
  expect_error(soft_rank(x, eps = Inf), "`eps` must be a single finite number")
  expect_error(soft_rank(x, eps = NA), "`eps` must be")
  expect_error(soft_rank(x, eps = c(1, 2)), "`eps` must be")
  expect_error(soft_rank(c(1, NA)), "`x` must not contain missing values")
  expect_error(soft_sort(c(1, NaN)), "`x` must not contain missing values")
  expect_error(soft_rank(c(1, Inf)), "`x` must not contain infinite values")
  expect_error(soft_rank("a"), "`x` must be a numeric vector, matrix or data frame")
  expect_error(soft_rank(x, reg = "l1"), "`reg` must be one of \"l2\", \"kl\"")
  expect_error(soft_rank(x, threads = 0), "`threads` must be a whole number")
  expect_error(soft_rank_vjp(x, 1:2), "`v` must have the shape of `x` \\(a vector of length 3\\)")
  expect_error(soft_rank_vjp(matrix(1:6, 3), 1:6), "`v` must have the shape of `x`")
  expect_error(soft_rank_vjp(x), "`v` is missing")
  expect_error(soft_rank_fn(x)$jvp(c(1, NA, 2)), "`u` must contain only finite values")
  expect_error(soft_rank_vjp(x, c("a", "b", "c")), "`v` must be numeric")
  m <- matrix(c(1, 5, 2, 2), 2)
  m0 <- m
  invisible(soft_rank(m, 0.5, threads = 2))
  invisible(soft_sort_vjp(m, m, 0.5))
  expect_identical(m, m0)
  expect_identical(x, x0)
  # a reloaded object keeps its value but not its derivative state
  op <- soft_rank_fn(x, 0.5)
  f <- tempfile(fileext = ".rds")
  saveRDS(op, f)
  op2 <- readRDS(f)
  expect_identical(op2$value, op$value)
  expect_error(op2$vjp(c(1, 0, 0)), "saved and reloaded")
  expect_output(print(op), "soft_rank of a vector of length 3")
})

# --- projection, path plot ------------------------------------------------------

test_that("project_permutahedron() reproduces the soft operators and checks input", {
  set.seed(12)
  x <- rnorm(6)
  expect_equal(project_permutahedron(x / 0.4, 6:1), soft_rank(x, 0.4), tolerance = 1e-12)
  expect_equal(exp(project_permutahedron(x / 0.4, log(1:6), "kl")), soft_rank(x, 0.4, "kl"),
               tolerance = 1e-12)
  expect_equal(project_permutahedron((6:1) / 0.4, sample(x)),
               soft_sort(x, 0.4, decreasing = TRUE), tolerance = 1e-12)
  expect_error(project_permutahedron(1:3, 1:2), "same length")
  expect_error(project_permutahedron(c(1, NA), 1:2), "`z` must contain only finite values")
})

test_that("plot_soft_path() runs from hard to pooled", {
  x <- c(a = 0.1, b = 0.5, c = 0.52, d = 2)
  path <- plot_soft_path(x, scale = "none", plot = FALSE)
  expect_identical(dim(path$values), c(100L, 4L))
  expect_identical(colnames(path$values), names(x))
  expect_equal(path$values[1, ], rank(x))
  expect_lt(max(abs(path$values[100, ] - 2.5)), 1)
  spath <- plot_soft_path(x, operator = "sort", scale = "none", plot = FALSE)
  expect_equal(spath$values[1, ], sort(unname(x)), tolerance = 1e-12)
  expect_lt(max(abs(spath$values[100, ] - mean(x))), 0.1)
  pdf(NULL)
  on.exit(grDevices::dev.off())
  expect_invisible(plot_soft_path(x, operator = "sort", scale = "none", reg = "kl"))
  expect_error(plot_soft_path(x, eps = c(1, -1)), "`eps` must be a vector of positive")
})

# --- Spearman loss --------------------------------------------------------------

test_that("spearman_loss() has the right value and gradient", {
  set.seed(13)
  pred <- rnorm(15)
  target <- pred + rnorm(15)
  for (reg in c("l2", "kl")) {
    for (scale in c("none", "sd", "spacing")) {
      eps <- c(none = 0.1, sd = 0.05, spacing = 3)[[scale]]
      l <- spearman_loss(pred, target, eps = eps, reg = reg, scale = scale, threads = 1)
      r <- soft_rank(pred, eps, reg, scale = scale)
      expect_equal(l$value, 1 - cor(r, rank(target)), tolerance = 1e-12)
      gfd <- fd_jacobian(function(p) spearman_loss(p, target, eps, reg, scale)$value, pred, 1e-6)
      expect_equal(l$gradient, drop(gfd), tolerance = 1e-6)
    }
  }
  # tends to 1 - Spearman's correlation
  expect_equal(spearman_loss(pred, target, eps = 1e-6, scale = "none")$value,
               1 - cor(pred, target, method = "spearman"), tolerance = 1e-10)
  expect_error(spearman_loss(rep(1, 3), 1:3), "constant")
  expect_error(spearman_loss(1:3, rep(1, 3)), "`response` must not be constant")
  expect_error(spearman_loss(1:3, 1:4), "same length")
})

test_that("a linear model fitted with the Spearman loss ranks the targets well", {
  set.seed(14)
  n <- 200
  X <- cbind(1, matrix(rnorm(n * 4), n, 4))
  beta <- c(0, 2, -1, 0.5, 0)
  y <- exp(drop(X %*% beta)) * (1 + 0.2 * rnorm(n))   # monotone in X beta, skewed
  train <- 1:100
  test <- 101:200
  Xt <- X[train, ]
  loss <- function(b) spearman_loss(Xt %*% b, y[train], eps = 0.05, scale = "sd")
  fit <- stats::optim(c(0, 1, 1, 1, 1), function(b) loss(b)$value,
                      function(b) drop(crossprod(Xt, loss(b)$gradient)),
                      method = "L-BFGS-B")
  expect_identical(fit$convergence, 0L)
  spearman_test <- cor(drop(X[test, ] %*% fit$par), y[test], method = "spearman")
  # baseline: least squares on the raw targets
  ols <- stats::lm.fit(Xt, y[train])$coefficients
  spearman_ols <- cor(drop(X[test, ] %*% ols), y[test], method = "spearman")
  # with this seed: 0.995 against 0.943 for least squares
  expect_gt(spearman_test, 0.98)
  expect_gt(spearman_test, spearman_ols + 0.03)
})

# --- the scale-free default ------------------------------------------------------

test_that("with the defaults, soft ranks and sorts stay close to the hard ones at any scale", {
  set.seed(21)
  for (x in list(runif(5000), 1e-6 * rnorm(300), 1e6 * rexp(1000), rnorm(20))) {
    n <- length(x)
    r <- diffrank::soft_rank(x)
    expect_gt(cor(r, rank(x)), if (n > 20) 0.999 else 0.995)
    expect_lt(mean(abs(r - rank(x))), 0.6)
    s <- diffrank::soft_sort(x)
    expect_gt(cor(s, sort(x)), 0.99)
  }
  # no unit: multiplying or shifting x does not change ranks, and scales sorts
  x <- rnorm(200)
  expect_equal(diffrank::soft_rank(1e5 * x + 3), diffrank::soft_rank(x), tolerance = 1e-9)
  expect_equal(diffrank::soft_sort(1e5 * x), 1e5 * diffrank::soft_sort(x), tolerance = 1e-9)
  # "spacing" is "sd" with x divided by sd(x) / n: eps / n for ranks, eps * n for sorts (L2)
  expect_equal(diffrank::soft_rank(x, eps = 2, scale = "spacing"),
               diffrank::soft_rank(x, 2 / 200, scale = "sd"),
               tolerance = 1e-10)
  expect_equal(diffrank::soft_sort(x, eps = 0.01), diffrank::soft_sort(x, 2, scale = "sd"),
               tolerance = 1e-10)
  # and its derivative includes the dependence of the scale on x
  op <- diffrank::soft_rank_fn(x[1:12], eps = 3, scale = "spacing")
  jfd <- fd_jacobian(function(z) diffrank::soft_rank(z, eps = 3, scale = "spacing"), x[1:12], 1e-6)
  expect_equal(op$jacobian(), jfd, tolerance = 1e-6, ignore_attr = TRUE)
  # the Spearman loss with its defaults is close to 1 - Spearman's correlation
  pred <- rnorm(500)
  response <- pred + rnorm(500)
  expect_equal(spearman_loss(pred, response)$value,
               1 - cor(pred, response, method = "spearman"), tolerance = 1e-3)
  expect_equal(spearman_loss(1e-4 * pred, response)$value, spearman_loss(pred, response)$value,
               tolerance = 1e-10)
})

test_that("a warning says when a result is nearly constant", {
  expect_warning(diffrank::soft_rank(runif(50), eps = 1e4),
                 "soft rank is nearly constant in 1 of 1")
  m <- cbind(rnorm(10), rnorm(10), 1)
  expect_warning(diffrank::soft_sort(m, eps = 1e6), "in 2 of 3 column")
  # constant vectors have no spread to lose; pairs follow the same rule
  expect_silent(diffrank::soft_rank(rep(2, 5), eps = 1e4))
  expect_warning(diffrank::soft_rank(c(1, 2), eps = 1e4), "nearly constant")
  expect_silent(diffrank::soft_rank(c(1, 2)))
  expect_silent(diffrank::soft_rank(rnorm(100)))
  expect_silent(diffrank::soft_rank(rnorm(100), eps = 5))
})

# --- local rank coordinates: one eps at every size ------------------------------

local_draws <- list(
  gaussian = function(n) rnorm(n),
  uniform = function(n) runif(n),
  lognormal = function(n) rlnorm(n, sdlog = 2)
)

test_that("at the defaults every non-tied vector of 3 or more values has a non-zero Jacobian", {
  skip_on_cran()  # over 5 s
  op <- diffrank::soft_rank_fn(c(3.1, 1.2, 2.5))   # the README's first example
  expect_true(any(op$jacobian() != 0))
  expect_false(isTRUE(all.equal(op$value, c(3, 1, 2))))
  set.seed(31)
  for (draw in local_draws) {
    for (n in c(3:25, 40, 60)) {
      for (rep in 1:20) {
        x <- draw(n)
        expect_true(any(diffrank::soft_rank_fn(x)$jacobian() != 0))
      }
    }
  }
})

test_that("at the defaults one eps means the same mixing at every n and for every distribution", {
  set.seed(32)
  gaps <- function(x) {
    d <- abs(diffrank::soft_rank(x) - rank(x))
    c(mean = mean(d), max = max(d))
  }
  for (draw in local_draws) {
    small <- rowMeans(replicate(300, gaps(draw(3))))
    means <- small[["mean"]]
    for (n in c(100, 1e4, 2e5)) {
      g <- gaps(draw(n))
      expect_gt(g[["mean"]], 0.1)
      expect_lt(g[["mean"]], 3)
      expect_lt(g[["max"]], 20 * g[["mean"]])
      means <- c(means, g[["mean"]])
    }
    expect_lt(max(means) / min(means), 2)
  }
  # the old default pooled the dense centre of large samples into huge blocks
  x <- rnorm(1e4)
  expect_gt(max(abs(diffrank::soft_rank(x, eps = 3, scale = "spacing") - rank(x))), 50)
})

test_that("local rank coordinates: invariances, ties, direction and both limits", {
  set.seed(33)
  x <- rlnorm(300, sdlog = 2)
  expect_equal(diffrank::soft_rank(1e3 * x - 5), diffrank::soft_rank(x), tolerance = 1e-9)
  expect_equal(diffrank::soft_rank(x, decreasing = TRUE), diffrank::soft_rank(-x), tolerance = 1e-9)
  expect_equal(sum(diffrank::soft_rank(x)), 300 * 301 / 2, tolerance = 1e-9)
  expect_identical(order(diffrank::soft_rank(x)), order(x))
  expect_identical(diffrank::soft_rank(x, eps = 0), rank(x))
  expect_warning(big <- diffrank::soft_rank(x, eps = 1e6), "nearly constant")
  expect_equal(big, rep(150.5, 300), tolerance = 1e-3)
  tied <- c(round(rnorm(200), 1), 5, 5)
  r <- diffrank::soft_rank(tied)
  for (v in unique(tied)) expect_equal(length(unique(r[tied == v])), 1L)
  expect_equal(diffrank::soft_rank(c(2, 2, 2)), c(2, 2, 2))
  expect_equal(diffrank::soft_rank(c(1, 2)), diffrank::soft_rank(c(1, 2)))   # two values: one gap
  # huge and tiny values keep finite ranks and derivatives (the derivative of
  # ranks of denormal values exceeds the largest double: only the value is finite)
  for (z in list(c(1e308, -1e308, 1e307, 0, 1), c(1e-300, 2e-300, 4e-300, 0))) {
    op <- diffrank::soft_rank_fn(z)
    expect_true(all(is.finite(op$value)))
    expect_true(all(is.finite(op$jacobian())))
  }
  expect_true(all(is.finite(diffrank::soft_rank(c(5e-324, 1e-323, 0, 2e-323, -5e-324)))))
})

test_that("local rank coordinates: derivatives match finite differences", {
  set.seed(34)
  for (n in c(3, 8, 30, 70)) {
    x <- rlnorm(n)
    for (reg in c("l2", "kl")) {
      for (decreasing in c(FALSE, TRUE)) {
        for (eps in c(0.2, 0.5, 0.9)) {
          f <- function(z) diffrank::soft_rank(z, eps = eps, reg = reg, decreasing = decreasing)
          op <- diffrank::soft_rank_fn(x, eps = eps, reg = reg, decreasing = decreasing)
          jac <- op$jacobian()
          expect_equal(jac, fd_jacobian(f, x, 1e-7), tolerance = 1e-5, ignore_attr = TRUE)
          v <- rnorm(n)
          expect_equal(op$vjp(v), drop(crossprod(jac, v)), tolerance = 1e-10)
          expect_equal(diffrank::soft_rank_vjp(x, v, eps = eps, reg = reg, decreasing = decreasing),
                       drop(crossprod(jac, v)), tolerance = 1e-10)
          expect_equal(op$jvp(v), drop(jac %*% v), tolerance = 1e-10)
        }
      }
    }
  }
})

test_that("the Spearman loss of a strictly monotone relation is near 0, without warnings", {
  set.seed(35)
  u <- runif(200)
  for (f in list(function(u) exp(8 * u), log, function(u) u^3, function(u) -1 / u,
                 function(u) 1e6 * u + 1e9)) {
    expect_silent(loss <- diffrank::spearman_loss(f(u), u))
    expect_lt(loss$value, 0.02)
  }
  # a correlation does not depend on the scale of the ranks: no near-constant warning
  expect_silent(diffrank::spearman_loss(rnorm(50), rnorm(50), eps = 1e6))
})
