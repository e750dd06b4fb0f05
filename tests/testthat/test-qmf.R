# Quantile matrix factorization (Cuturi, Teboul, Niles-Weed and Vert 2020).

# A rank-k signal, each row standardized, mapped row by row through strongly
# non-linear increasing maps, plus a little noise.
qmf_maps <- list(exp = exp, cube = function(v) v^3, step = function(v) 3 * stats::plogis(6 * v))

qmf_simulate <- function(d = 30, n = 50, k = 2, noise = 0.01, seed = 2) {
  set.seed(seed)
  z <- matrix(rnorm(d * k), d) %*% matrix(rnorm(k * n), k)
  z <- z / apply(z, 1L, stats::sd)
  kind <- rep_len(names(qmf_maps), d)
  x <- t(vapply(seq_len(d), function(r) qmf_maps[[kind[r]]](z[r, ]), numeric(n)))
  x <- x + noise * matrix(rnorm(d * n), d)
  dimnames(x) <- list(paste0("g", seq_len(d)), paste0("s", seq_len(n)))
  list(x = x, z = z, kind = kind)
}

qmf_rel_error <- function(x, approx) sqrt(sum((x - approx)^2) / sum(x^2))

# theta (m x d) of target values q (d x m), and the objective as a function
# of the natural parameters: U, V, q and the target weights b (d x m).
qmf_theta_of <- function(prob, q) {
  vapply(seq_len(prob$d), function(r) {
    qmf_theta((q[r, ] - prob$center[r]) / prob$scale[r], prob$positive, floor = 0)
  }, numeric(ncol(q)))
}

qmf_objective_at <- function(prob, U, V, q, b) {
  qmf_evaluate(prob, list(U = U, V = V, theta = qmf_theta_of(prob, q), beta = t(log(b))))
}

qmf_fd <- function(f, at, h = 1e-5) {
  out <- at
  for (i in seq_along(at)) {
    up <- at
    down <- at
    up[i] <- up[i] + h
    down[i] <- down[i] - h
    out[i] <- (f(up) - f(down)) / (2 * h)
  }
  out
}

qmf_rel <- function(a, b) max(abs(a - b)) / max(abs(b))

test_that("the gradient of the objective matches central differences, both losses", {
  set.seed(3)
  x <- exp(matrix(rnorm(10), 5) %*% matrix(rnorm(16), 2))
  x[2, 3] <- NA
  for (loss in c("squared", "kl")) {
    settings <- qmf_settings(dim(x), 2, n_quantiles = 4, eps = 0.05, loss = loss,
                             lambda = 0.01, learn_weights = TRUE,
                             control = list(sinkhorn_tol = 1e-13))
    prob <- qmf_problem(x, settings)
    par <- qmf_init(prob, settings)
    U <- par$U
    V <- par$V
    q <- t(qmf_quantiles_cpp(par$theta + rnorm(length(par$theta), sd = 0.1), prob$center,
                             prob$scale, prob$positive))
    b <- matrix(runif(length(q), 0.5, 1.5), nrow(q))
    b <- b / rowSums(b)
    at <- qmf_objective_at(prob, U, V, q, b)
    value <- function(...) qmf_objective_at(prob, ...)$value
    expect_lt(qmf_rel(at$U, qmf_fd(function(p) value(p, V, q, b), U)), 1e-5)
    expect_lt(qmf_rel(at$V, qmf_fd(function(p) value(U, p, q, b), V)), 1e-5)
    expect_lt(qmf_rel(t(at$q), qmf_fd(function(p) value(U, V, p, b), q)), 1e-5)
    expect_lt(qmf_rel(t(at$b), qmf_fd(function(p) value(U, V, q, p), b)), 1e-5)
    # and with respect to the optimizer's unconstrained parameters
    par <- list(U = U, V = V, theta = qmf_theta_of(prob, q), beta = t(log(b)))
    free <- function(name) {
      function(p) {
        par[[name]] <- p
        qmf_evaluate(prob, par)$value
      }
    }
    ev <- qmf_evaluate(prob, par)
    expect_lt(qmf_rel(ev$theta, qmf_fd(free("theta"), par$theta)), 1e-5)
    expect_lt(qmf_rel(ev$beta, qmf_fd(free("beta"), par$beta)), 1e-5)
  }
})

test_that("fitted values are the Sinkhorn quantile normalization of each row of U V", {
  set.seed(4)
  x <- matrix(rexp(12 * 15), 12, dimnames = list(paste0("g", 1:12), paste0("s", 1:15)))
  fit <- suppressWarnings(qmf(x, rank = 2, n_quantiles = 5, learn_weights = TRUE, max_epochs = 5,
                              verbose = FALSE, control = list(sinkhorn_tol = 1e-12)))
  z <- fit$U %*% fit$V
  for (r in c(1, 7, 12)) {
    ref <- sinkhorn_normalize(z[r, ], target = fit$q[r, ], target_weights = fit$b[r, ],
                              eps = fit$settings$eps, scale = "none", tol = 1e-12)
    expect_equal(unname(fitted(fit)[r, ]), as.vector(ref), tolerance = 1e-8)
  }
  expect_equal(dimnames(fitted(fit)), dimnames(x))
  expect_equal(residuals(fit), x - fitted(fit))
  expect_equal(rowSums(fit$b), rep(1, 12), ignore_attr = TRUE)
  expect_true(all(apply(fit$q, 1L, function(q) all(diff(q) > 0))))
})

test_that("a monotonically distorted low-rank matrix is recovered far better than by SVD or NMF", {
  skip_on_cran()  # over 5 s
  skip_if_not_installed("RcppML")
  s <- qmf_simulate(seed = 2)
  x <- s$x
  k <- 2
  sv <- svd(x, k, k)
  err_svd <- qmf_rel_error(x, sv$u %*% diag(sv$d[1:k]) %*% t(sv$v))
  shift <- min(x)  # NMF needs non-negative data
  nm <- RcppML::nmf(x - shift, k, seed = 1, verbose = FALSE, tol = 1e-8, maxit = 5000)
  nmf_fit <- nm$w %*% diag(nm$d) %*% nm$h
  err_nmf <- qmf_rel_error(x, nmf_fit + shift)
  set.seed(1)
  fit <- suppressWarnings(qmf(x, rank = k, lambda = 1e-3, learn_weights = FALSE,
                              verbose = FALSE))
  # at least 3 times lower (observed: 6.6 and 6.7 times)
  expect_lt(fit$relative_error, err_svd / 3)
  expect_lt(fit$relative_error, err_nmf / 3)
  set.seed(1)
  weighted <- qmf(x, rank = k, lambda = 1e-3, verbose = FALSE)
  expect_lt(weighted$relative_error, err_svd / 10)  # observed: 32 times lower
  # The learned targets follow the true quantile function of each row (of
  # the noiseless values, at the levels of the learned weights, the middle
  # of each target's share). The blur of the soft
  # map pulls the extreme targets of heavy-tailed rows (exp and cube of a
  # Gaussian signal) outwards, so those correlate above 0.95 only (observed:
  # 0.968, with the few targets that the learned weights leave in the far
  # tail); the bounded (step-like) rows above 0.98 (observed: 0.997 and
  # above) and the median row above 0.99 (observed: 0.997).
  correlation <- vapply(seq_len(nrow(x)), function(r) {
    levels <- cumsum(weighted$b[r, ]) - weighted$b[r, ] / 2
    stats::cor(weighted$q[r, ], stats::quantile(qmf_maps[[s$kind[r]]](s$z[r, ]), levels))
  }, numeric(1))
  expect_gt(min(correlation[s$kind == "step"]), 0.98)
  expect_gt(stats::median(correlation), 0.99)
  expect_gt(min(correlation), 0.95)
})

test_that("with an almost affine map (large eps), QMF is no worse than a truncated SVD", {
  set.seed(5)
  x <- matrix(rnorm(30 * 3), 30) %*% matrix(rnorm(3 * 40), 3) +
    matrix(rnorm(30 * 40, sd = 0.5), 30) + 5
  # the SVD of the row-centred data plus the row means: a rank-3 fit with the
  # per-row intercepts that the targets give QMF (better than the plain SVD)
  centred <- x - rowMeans(x)
  sv <- svd(centred, 3, 3)
  err_svd <- qmf_rel_error(x, sv$u %*% diag(sv$d[1:3]) %*% t(sv$v) + rowMeans(x))
  set.seed(1)
  fit <- suppressWarnings(qmf(x, rank = 3, eps = 10, lambda = 0, optimizer = "lbfgs",
                              max_epochs = 300, tol = 1e-8, verbose = FALSE))
  expect_lt(fit$relative_error, err_svd * 1.01)
})

test_that("the default start is the rank-based or the SVD start, whichever has the lower objective", {
  starts_of <- function(x, rank) {
    settings <- qmf_settings(dim(x), rank)
    prob <- qmf_problem(x, settings)
    value <- function(init) {
      qmf_evaluate(prob, qmf_start(prob, settings, init), gradient = FALSE)$value
    }
    list(prob = prob, settings = settings, ranks = value("ranks"), svd = value("svd"))
  }
  # rows through strong monotone maps: the ranks are low-rank, the data not
  x <- qmf_three_maps(1, d = 60, n = 30)
  s <- starts_of(x, 3)
  expect_lt(s$ranks, s$svd)
  expect_identical(attr(qmf_init(s$prob, s$settings), "start"), "ranks")
  # a low-rank signal plus noise, rows of unequal variance: the SVD of the data
  set.seed(8)
  x <- (matrix(rnorm(60 * 3), 60) %*% matrix(rnorm(3 * 30), 3) +
          matrix(rnorm(60 * 30), 60)) * exp(rnorm(60))
  s <- starts_of(x, 3)
  expect_lt(s$svd, s$ranks)
  expect_identical(attr(qmf_init(s$prob, s$settings), "start"), "svd")
  # the SVD start is the truncated SVD of the centred data, in each row's units
  start <- qmf_start(s$prob, s$settings, "svd")
  sv <- svd(x - rowMeans(x), 3, 3)
  expect_equal((start$U %*% start$V) * s$prob$scale,
               sv$u %*% diag(sv$d[1:3]) %*% t(sv$v), tolerance = 1e-10)
  set.seed(1)
  fit <- suppressWarnings(qmf(x, rank = 3, max_epochs = 20, verbose = FALSE))
  expect_identical(fit$start, "svd")
  set.seed(1)
  given <- suppressWarnings(qmf(x, rank = 3, max_epochs = 20, verbose = FALSE,
                               control = list(init = "svd")))
  expect_identical(fit$U, given$U)
  expect_identical(fit$q, given$q)
  expect_identical(given$start, "svd")
  # starting from the best linear fit, the fit leaves less unexplained
  expect_lt(fit$unexplained, fit$svd_unexplained)
  expect_error(qmf(x, rank = 3, control = list(init = "pca")), "control\\$init.*auto")
})

test_that("predict() on the training samples reproduces V, and places new samples", {
  skip_on_cran()  # over 5 s
  set.seed(5)
  x <- exp(matrix(rnorm(40), 20) %*% matrix(rnorm(50), 2) / 2 + matrix(rnorm(500, sd = 0.1), 20))
  dimnames(x) <- list(paste0("g", 1:20), paste0("s", 1:25))
  set.seed(1)
  fit <- suppressWarnings(qmf(x, rank = 2, optimizer = "lbfgs", max_epochs = 500, tol = 1e-10,
                              verbose = FALSE, control = list(sinkhorn_tol = 1e-10)))
  # the fit's gradient is about 1e-4 after 500 iterations: V within 1 %
  again <- predict(fit, x, tol = 1e-12, max_iter = 1000)
  expect_lt(max(abs(t(again) - coef(fit)$V)) / max(abs(coef(fit)$V)), 0.01)
  expect_equal(dimnames(again), rev(dimnames(coef(fit)$V)))
  expect_true(attr(again, "converged"))
  # new samples: rows matched by name, the model unchanged
  before <- coef(fit)
  new <- x[rev(rownames(x)), 1:4] * 1.1
  colnames(new) <- paste0("new", 1:4)
  v_new <- predict(fit, new)
  expect_equal(dim(v_new), c(4L, 2L))  # samples x factors
  expect_equal(rownames(v_new), colnames(new))
  expect_identical(coef(fit), before)
  rec <- predict(fit, new, type = "fitted")
  expect_equal(dimnames(rec), list(rownames(x), colnames(new)))
  expect_lt(qmf_rel_error(new[rownames(x), ], rec), 0.2)
  expect_equal(sample_coordinates(fit, new), v_new, ignore_attr = TRUE)
  expect_identical(predict(fit), t(coef(fit)$V))
})

test_that("predict() places each new sample on its own, through the fit's maps as functions", {
  skip_on_cran()  # over 5 s
  x <- qmf_three_maps(2, n = 75)
  train <- x[, 1:60]
  new <- x[, 61:75]
  set.seed(1)
  fit <- qmf(train, rank = 3, verbose = FALSE)
  # at the training samples, the maps as functions (targets and potentials)
  # give the fitted values: the plan's rows
  prob <- fit$problem
  q <- qmf_quantiles_cpp(fit$par$theta, prob$center, prob$scale, prob$positive)
  at_fit <- qmf_place_cpp(train, fit$par$U, q, t(fit$potentials), prob$options$eps, "squared",
                          0, fit$par$V, 1e-8, 0L, 1L)
  expect_equal(at_fit$fitted, fitted(fit), tolerance = 1e-10, ignore_attr = TRUE)
  # held-out samples at the defaults: far closer than the SVD's projection
  rec <- predict(fit, new, type = "fitted")
  means <- rowMeans(train)
  s <- svd(train - means, nu = 3, nv = 0)
  svd_new <- s$u %*% crossprod(s$u, new - means) + means
  expect_lt(qmf_unexplained(new, rec), qmf_unexplained(new, svd_new) / 3)
  # a sample alone, in another order, with other threads: the same coordinates
  v <- predict(fit, new, threads = 1)
  expect_true(attr(v, "converged"))
  expect_identical(as.vector(predict(fit, new[, 4, drop = FALSE])), as.vector(v[4, ]))
  expect_identical(as.vector(predict(fit, new[, 15:1], threads = 2)[15:1, ]), as.vector(v))
  # predict(type = "fitted") is the maps at the coordinates
  expect_identical(as.vector(rec), as.vector(qmf_place_cpp(
    new, fit$par$U, q, t(fit$potentials), prob$options$eps, "squared", 0, t(v), 1e-8, 0L,
    1L)$fitted))
  # a fit stored without potentials solves the rows' transports again
  old <- fit
  old$potentials <- NULL
  expect_equal(predict(old, new), v, tolerance = 1e-8)
  # the KL loss: non-negative coordinates, and the same alone as in a batch
  counts <- qmf_paper_synthetic(3, d = 60, n = 50)$x
  kl <- suppressWarnings(qmf(counts[, 1:40], rank = 3, loss = "kl", max_epochs = 30,
                             verbose = FALSE))
  v_kl <- predict(kl, counts[, 41:50])
  expect_true(all(v_kl >= 0))
  expect_identical(as.vector(predict(kl, counts[, 43, drop = FALSE])), as.vector(v_kl[3, ]))
  expect_true(all(predict(kl, counts[, 41:50], type = "fitted") > 0))
})

test_that("fits are identical with 1 and 2 threads and reproducible with set.seed", {
  s <- qmf_simulate(d = 40, n = 30, seed = 7)
  run <- function(threads, optimizer) {
    set.seed(11)
    fit <- suppressWarnings(qmf(s$x, rank = 2, batch_size = 8, max_epochs = 4,
                                learn_weights = TRUE, optimizer = optimizer,
                                threads = threads, verbose = FALSE))
    c(coef(fit), list(fitted = fitted(fit), objective = fit$history$objective))
  }
  for (optimizer in c("adam", "lbfgs")) {
    expect_identical(run(1, optimizer), run(2, optimizer))
  }
  expect_identical(run(2, "adam"), run(2, "adam"))
})

test_that("the KL loss keeps U and V non-negative and fits positive values", {
  set.seed(8)
  x <- matrix(rpois(25 * 20, 5 * exp(matrix(runif(50), 25) %*% matrix(runif(40), 2))), 25)
  fit <- suppressWarnings(qmf(x, rank = 2, loss = "kl", max_epochs = 30, verbose = FALSE))
  expect_true(all(fit$U >= 0) && all(fit$V >= 0))
  expect_true(all(fitted(fit) > 0))
  expect_true(all(fit$q[, 1] > 0))
  expect_lt(fit$history$objective[fit$iterations], fit$history$objective[1])
  fit_lbfgs <- suppressWarnings(qmf(x, rank = 2, loss = "kl", optimizer = "lbfgs",
                                    max_epochs = 30, verbose = FALSE))
  expect_true(all(fit_lbfgs$U >= 0) && all(fit_lbfgs$V >= 0))
  expect_error(qmf(x - 10, rank = 2, loss = "kl"), "non-negative")
})

test_that("missing values are left out of the loss and predicted by fitted()", {
  s <- qmf_simulate(d = 20, n = 25, seed = 9)
  x <- s$x
  hidden <- cbind(c(1, 4, 9, 15), c(2, 10, 7, 20))
  x[hidden] <- NA
  set.seed(1)
  fit <- suppressWarnings(qmf(x, rank = 2, max_epochs = 30, verbose = FALSE))
  expect_true(all(is.finite(fitted(fit))))
  expect_true(all(is.na(residuals(fit)[hidden])))
  expect_equal(summary(fit)$missing, 4L)
  # the held-out entries are predicted about as well as the observed ones
  err_hidden <- sqrt(mean((fitted(fit)[hidden] - s$x[hidden])^2))
  expect_lt(err_hidden, 3 * stats::sd(s$x))
  x[1, ] <- NA
  expect_error(qmf(x, rank = 2), "row\\(s\\) with no observed value \\(the first is g1\\)")
})

test_that("bad arguments give errors that name them", {
  x <- qmf_simulate(d = 10, n = 12, seed = 1)$x
  expect_error(qmf(x, rank = 0), "`rank` must be a whole number from 1 to")
  expect_error(qmf(x, rank = 10), "`rank` must be below min\\(nrow\\(x\\), ncol\\(x\\)\\) = 10")
  expect_error(qmf(x), "`rank` is missing")
  expect_error(qmf(x, rank = 2, n_quantiles = 1),
               "`n_quantiles` must be a whole number from 2 to")
  expect_error(qmf(x, rank = 2, eps = -1), "`eps` must be")
  expect_error(qmf(x, rank = 2, lambda = -1), "`lambda` must be")
  expect_error(qmf(x, rank = 2, loss = "l1"), "`loss` must be one of")
  expect_error(qmf(x, rank = 2, optimizer = "sgd"), "`optimizer` must be one of")
  expect_error(qmf(x, rank = 2, threads = 0), "`threads`")
  expect_error(qmf(x, rank = 2, control = list(speed = 1)), "unknown element\\(s\\) `speed`")
  expect_error(qmf(x, rank = 2, rnak = 3), "Unknown argument `rnak`")
  bad <- x
  bad[1, 1] <- Inf
  expect_error(qmf(bad, rank = 2), "infinite")
  expect_error(qmf(matrix(letters[1:20], 4), rank = 1), "`x` must be a numeric")
  df <- as.data.frame(x)
  df$label <- "a"
  expect_error(qmf(df, rank = 2), "only numeric columns")
  fit <- qmf(x, rank = 2, max_epochs = 2, verbose = FALSE, tol = 0) |> suppressWarnings()
  expect_error(print(fit, digits = 3), "Unknown argument `digits`")
  expect_error(summary(fit, 1), "Unknown argument an unnamed value")
  expect_error(coef(fit, type = 1), "Unknown argument `type`")
  expect_error(fitted(fit, a = 1), "Unknown argument `a`")
  expect_error(residuals(fit, a = 1), "Unknown argument `a`")
  expect_error(plot(fit, col = "red"), "Unknown argument `col`")
  expect_error(predict(fit, x, a = 1), "Unknown argument `a`")
  expect_error(sample_coordinates(fit, a = 1), "Unknown argument `a`")
  expect_error(predict(fit, x[1:5, ]),
               "`newdata` lacks 5 of the fit's features \\(the first is g6\\)")
  expect_error(predict(fit, unname(x[1:5, ])), "`newdata` must have the fit's 10 features")
  expect_error(predict(fit, x, type = "link"), "`type` must be one of")
  expect_error(predict(fit, x[, 0]),
               "`newdata` must have at least one feature \\(row\\) and one sample.*not 10 x 0")
  expect_error(qmf(x[0, ], rank = 1), "`x` must have at least one feature.*not 0 x")
  expect_error(plot(fit, which = "bars"), "`which` must be")
  expect_error(plot(fit, which = "quantiles", rows = 11), "`rows` must be names or indices")
})

test_that("convergence is reported, with a warning when the budget ran out", {
  x <- qmf_simulate(d = 20, n = 25, seed = 3)$x
  expect_warning(fit <- qmf(x, rank = 2, max_epochs = 3, tol = 1e-12, verbose = FALSE),
                 "did not converge within 3 epochs \\(relative decrease not measured before 6")
  expect_output(print(fit), "NOT converged after 3 epoch\\(s\\) \\(relative decrease not measured")
  expect_false(fit$converged)
  expect_identical(fit$iterations, 3L)
  expect_equal(nrow(fit$history), 3L)
  expect_true(is.na(fit$change))  # the decrease is measured over 5 epochs
  set.seed(1)
  done <- qmf(x, rank = 2, tol = 0.05, verbose = FALSE)
  expect_true(done$converged)
  expect_lt(done$change, 0.05)
  expect_output(print(done), "converged after")
  expect_output(print(fit), "NOT converged after 3 epoch")
})

test_that("verbose = FALSE prints nothing; verbose reports every epoch", {
  x <- qmf_simulate(d = 12, n = 15, seed = 3)$x
  expect_silent(qmf(x, rank = 2, max_epochs = 10, tol = 0.5, verbose = FALSE))
  messages <- capture_messages(suppressWarnings(
    qmf(x, rank = 2, max_epochs = 2, tol = 0, verbose = TRUE, progress = FALSE)
  ))
  expect_match(messages, "^QMF epoch 2/2: objective [0-9.]+, relative decrease", all = FALSE)
  expect_length(messages, 2L)
  expect_silent(qmf(x, rank = 2, max_epochs = 10, tol = 0.5, verbose = TRUE, progress = TRUE))
})

test_that("methods: coef, summary, plot, sample coordinates, data frames", {
  s <- qmf_simulate(d = 15, n = 20, seed = 4)
  set.seed(1)
  fit <- suppressWarnings(qmf(s$x, rank = 2, n_quantiles = 6, max_epochs = 5, verbose = FALSE))
  cf <- coef(fit)
  expect_named(cf, c("U", "V", "q", "b"))
  expect_equal(dimnames(cf$U), list(rownames(s$x), c("factor1", "factor2")))
  expect_equal(dimnames(cf$V), list(c("factor1", "factor2"), colnames(s$x)))
  expect_equal(dim(cf$q), c(15L, 6L))
  expect_equal(rownames(cf$b), rownames(s$x))
  expect_equal(sample_coordinates(fit), t(cf$V))
  expect_output(print(summary(fit)), "variance explained")
  grDevices::pdf(NULL)
  on.exit(grDevices::dev.off(), add = TRUE)
  expect_identical(plot(fit), fit)
  expect_identical(plot(fit, which = "quantiles", rows = c("g1", "g2")), fit)
  set.seed(1)
  from_df <- suppressWarnings(qmf(as.data.frame(s$x), rank = 2, n_quantiles = 6,
                                  max_epochs = 5, verbose = FALSE))
  expect_identical(coef(from_df), cf)
})

test_that("SummarizedExperiment input uses assay.type and keeps the names", {
  skip_if_not_installed("SummarizedExperiment")
  s <- qmf_simulate(d = 15, n = 20, seed = 4)
  se <- SummarizedExperiment::SummarizedExperiment(list(counts = s$x * 0, logcounts = s$x))
  set.seed(1)
  a <- suppressWarnings(qmf(se, rank = 2, max_epochs = 3, verbose = FALSE,
                            assay.type = "logcounts"))
  set.seed(1)
  b <- suppressWarnings(qmf(s$x, rank = 2, max_epochs = 3, verbose = FALSE))
  expect_identical(coef(a), coef(b))
  expect_error(qmf(se, rank = 2, assay.type = "exprs"), "`assay.type` must name one of")
})

test_that("a fit whose maps are near-constant warns once; the default fit is silent", {
  sim <- qmf_simulate(d = 12, n = 20)
  set.seed(3)
  expect_silent(qmf(sim$x, rank = 2, optimizer = "lbfgs", tol = 1e-2, verbose = FALSE))
  x_na <- sim$x
  x_na[2, 3] <- NA
  set.seed(3)
  expect_silent(qmf(x_na, rank = 2, optimizer = "lbfgs", tol = 1e-2, verbose = FALSE))
  set.seed(3)
  warnings <- character()
  fit <- withCallingHandlers(
    qmf(x_na, rank = 2, eps = 1e6, optimizer = "lbfgs", tol = 1e-2, verbose = FALSE),
    warning = function(w) {
      warnings <<- c(warnings, conditionMessage(w))
      invokeRestart("muffleWarning")
    })
  expect_length(warnings, 1L)
  expect_match(warnings, paste0("QMF reconstruction T\\(UV\\) is ",
                                "nearly constant in 12 of 12 row.*eps = 1e\\+06 is large"))
  expect_lt(max(apply(fit$fitted, 1L, sd) / apply(sim$x, 1L, sd)), 0.01)
})

# ---------------------------------------------------------------------------
# The defaults: qmf_three_maps() of helper-qmf.R.

test_that("at its defaults, QMF converges and beats the truncated SVD 3 times over", {
  skip_on_cran()  # about 3 s a seed (200 to 250 epochs)
  for (seed in 1:3) {
    x <- qmf_three_maps(seed)
    sv <- svd(x, 3, 3)
    err_svd <- qmf_rel_error(x, sv$u %*% diag(sv$d[1:3]) %*% t(sv$v))
    set.seed(seed)
    expect_silent(fit <- qmf(x, rank = 3))
    expect_true(fit$converged)
    # observed: 0.0461, 0.0416, 0.0428 against the SVD's 0.26, 0.33, 0.32;
    # below the issue's hand-tuned 0.053, and below 0.048, which the fits
    # stopped at a floor of 3% of the variance did not reach (0.0505, 0.0478,
    # 0.0509)
    expect_lt(fit$relative_error, err_svd / 3)
    expect_lt(fit$relative_error, 0.048)
    expect_lt(fit$unexplained, fit$svd_unexplained / 9)
  }
})

test_that("the default lambda follows the data's noise; held-out samples of expression data beat the SVD", {
  skip_on_cran()  # about 25 s
  # near low rank through non-linear maps: the floor 0.01, as with lambda = 0.01
  x <- qmf_three_maps(1, d = 60, n = 30)
  set.seed(1)
  fit <- suppressWarnings(qmf(x, rank = 3, max_epochs = 5))
  expect_identical(fit$settings$lambda, 0.01)
  expect_true(fit$settings$lambda_from_data)
  expect_match(capture.output(print(fit))[3], "lambda = 0.01 (from the data)", fixed = TRUE)
  set.seed(1)
  given <- suppressWarnings(qmf(x, rank = 3, max_epochs = 5, lambda = 0.01))
  expect_identical(given$U, fit$U)
  expect_null(given$settings$lambda_from_data)
  expect_no_match(capture.output(print(given))[3], "from the data", fixed = TRUE)
  # the KL loss keeps 0.01 whatever the noise
  counts <- qmf_paper_synthetic(3, d = 60, n = 50)$x
  kl <- suppressWarnings(qmf(counts, rank = 2, loss = "kl", max_epochs = 2, verbose = FALSE))
  expect_identical(kl$settings$lambda, 0.01)
  # log expression values, far from low rank: 0.1 f / (1 - f), f the share
  # of the variance of the rows' normal scores left by their rank-10 SVD
  expr <- all_leukemia$expr
  unexplained <- function(d, a) sum((d - a)^2) / sum((d - rowMeans(d))^2)
  noise_share <- function(d) {
    scores <- t(apply(d, 1L, function(r) stats::qnorm((rank(r) - 0.5) / length(r))))
    d2 <- svd(scores / sqrt(rowSums(scores^2) / (ncol(d) - 1)))$d^2
    1 - sum(d2[1:10]) / sum(d2)
  }
  gain <- vapply(1:3, function(split) {
    set.seed(split)
    test <- sort(sample(ncol(expr), 26))
    train <- expr[, -test]
    means <- rowMeans(train)
    u <- svd(train - means, nu = 10, nv = 0)$u
    svd_new <- unexplained(expr[, test], u %*% crossprod(u, expr[, test] - means) + means)
    set.seed(1)
    fit <- qmf(train, rank = 10, verbose = FALSE)
    f <- noise_share(train)
    expect_equal(fit$settings$lambda, 0.1 * f / (1 - f))
    expect_lt(fit$unexplained, fit$svd_unexplained)
    unexplained(expr[, test], predict(fit, expr[, test], type = "fitted")) - svd_new
  }, 0)
  # observed +0.0003, -0.0038, -0.0007 against the SVD; with lambda = 0.01,
  # +0.0089, +0.0038, +0.0030
  expect_lt(mean(gain), 0)
})

test_that("the print headline is the variance left unexplained next to the SVD's", {
  x <- qmf_three_maps(1, d = 30, n = 20)
  fit <- suppressWarnings(qmf(x, rank = 2, max_epochs = 5))
  centred <- x - rowMeans(x)
  expect_equal(fit$unexplained, sum((x - fitted(fit))^2) / sum(centred^2))
  sv <- svd(centred, 2, 2)
  expect_equal(fit$svd_unexplained,
               sum((centred - sv$u %*% diag(sv$d[1:2]) %*% t(sv$v))^2) / sum(centred^2))
  out <- capture.output(print(fit))
  expect_match(out[2], sprintf("variance left unexplained %.4g \\(truncated SVD at rank 2: %.4g\\)",
                               fit$unexplained, fit$svd_unexplained))
})

test_that("a KL fit's headline is the divergence left unexplained next to a KL NMF's", {
  set.seed(3)
  x <- matrix(rpois(40 * 25, 50 * exp(matrix(rnorm(80), 40) %*% matrix(rnorm(50), 2) / 2)), 40)
  x[2, 3] <- NA
  fit <- qmf(x, rank = 2, loss = "kl", verbose = FALSE)
  expect_true(fit$converged)
  seen <- !is.na(x)
  gkl <- function(a, b) sum(ifelse(a > 0, a * log(a / b), 0) - a + b)
  null_model <- matrix(rowMeans(x, na.rm = TRUE), nrow(x), ncol(x))
  expect_equal(fit$kl_unexplained, gkl(x[seen], fitted(fit)[seen]) / gkl(x[seen], null_model[seen]))
  # the baseline is a rank-2 non-negative fit: better than the row means,
  # worse than QMF on these counts of an exponential map (observed 0.48
  # against 0.34), and it leaves the random number generator alone
  expect_gt(fit$nmf_kl_unexplained, 0)
  expect_lt(fit$nmf_kl_unexplained, 1)
  expect_lt(fit$kl_unexplained, fit$nmf_kl_unexplained)
  set.seed(9)
  before <- .Random.seed
  baseline <- diffrank:::qmf_nmf_kl_unexplained(x, 2L)
  expect_identical(.Random.seed, before)
  expect_identical(baseline, fit$nmf_kl_unexplained)
  out <- capture.output(print(fit))
  expect_match(out[2], sprintf("KL divergence left unexplained %.4g \\(KL-divergence NMF at rank 2: %.4g\\)",
                               fit$kl_unexplained, fit$nmf_kl_unexplained))
  # a squared-loss fit has no KL figures
  expect_null(suppressWarnings(qmf(x[, 1:10], rank = 1, max_epochs = 3))$kl_unexplained)
})

test_that("verbose progress is a message at the first and last epochs outside a bar", {
  x <- qmf_three_maps(1, d = 30, n = 20)
  for (optimizer in c("lbfgs", "adam")) {
    msgs <- character()
    withCallingHandlers(
      suppressWarnings(qmf(x, rank = 2, max_epochs = 6, tol = 0, optimizer = optimizer,
                           verbose = TRUE, progress = FALSE)),
      message = function(m) {
        msgs <<- c(msgs, conditionMessage(m))
        invokeRestart("muffleMessage")
      })
    # a fast fit: the first epoch and the last (lines are two seconds apart)
    expect_length(msgs, 2L)
    expect_match(msgs[1], "^QMF epoch 1/6: objective")
    expect_match(msgs[2], "^QMF epoch 6/6: .*; done")
  }
})

test_that("max_epochs is honoured by both optimizers", {
  x <- qmf_three_maps(2, d = 30, n = 20)
  for (optimizer in c("lbfgs", "adam")) {
    expect_warning(fit <- qmf(x, rank = 2, max_epochs = 7, tol = 0, optimizer = optimizer),
                   "did not converge within 7 epochs")
    expect_identical(fit$iterations, 7L)
    expect_identical(nrow(fit$history), 7L)
  }
})

test_that("sample coordinates are samples x factors, from predict() too", {
  x <- qmf_three_maps(3, d = 30, n = 24)
  fit <- suppressWarnings(qmf(x[, 1:20], rank = 2, max_epochs = 10))
  expect_identical(predict(fit), t(coef(fit)$V))
  expect_identical(dim(predict(fit)), c(20L, 2L))
  new <- suppressWarnings(predict(fit, x[, 21:24]))
  expect_identical(dimnames(new), list(colnames(x)[21:24], c("factor1", "factor2")))
  expect_identical(suppressWarnings(sample_coordinates(fit, x[, 21:24])), new)
  expect_identical(sample_coordinates(fit), predict(fit))
})

test_that("empty or duplicated row names are an error at fit time", {
  x <- qmf_three_maps(1, d = 12, n = 10)
  blank <- x
  rownames(blank) <- rep("", nrow(x))
  expect_error(qmf(blank, rank = 2), "`x` must have unique, non-empty row .* row 1's name \"\" is empty")
  twice <- x
  rownames(twice)[5] <- rownames(twice)[2]
  expect_error(qmf(twice, rank = 2), "row 5's name \"g2\" is duplicated")
  expect_error(suppressWarnings(predict(qmf(x, rank = 2, max_epochs = 2), twice)),
               "`newdata` must have unique")
  # no names at all is fine, and so is predict() by position
  fit <- suppressWarnings(qmf(unname(x), rank = 2, max_epochs = 2))
  expect_identical(dim(suppressWarnings(predict(fit, unname(x[, 1:3])))), c(3L, 2L))
})

# ---------------------------------------------------------------------------
# QMFQ: S(X) ~ T(U V), with S a learned soft quantile normalization of the data

test_that("QMFQ: the gradient matches central differences, both losses", {
  set.seed(3)
  x <- exp(matrix(rnorm(10), 5) %*% matrix(rnorm(16), 2))
  x[2, 3] <- NA
  for (loss in c("squared", "kl")) {
    settings <- qmf_settings(dim(x), 2, n_quantiles = 4, eps = 0.05, loss = loss,
                             model = "qmfq", control = list(sinkhorn_tol = 1e-13))
    prob <- qmf_problem(x, settings)
    par <- qmf_init(prob, settings)
    par$phi <- par$phi + rnorm(length(par$phi), sd = 0.3)
    ev <- qmf_evaluate(prob, par)
    free <- function(name) {
      function(p) {
        par[[name]] <- p
        qmf_evaluate(prob, par)$value
      }
    }
    for (name in c("U", "V", "theta", "beta", "phi")) {
      expect_lt(qmf_rel(ev[[name]], qmf_fd(free(name), par[[name]])), 1e-5)
    }
    if (loss == "squared") expect_identical(ev$phi[1L, ], rep(0, 5))  # phi_1 is unused
  }
})

test_that("QMFQ: S is the soft quantile normalization of the rows' normal scores onto p", {
  set.seed(4)
  x <- matrix(rexp(12 * 15), 12, dimnames = list(paste0("g", 1:12), paste0("s", 1:15)))
  x[5, 2] <- NA
  for (loss in c("squared", "kl")) {
    fit <- suppressWarnings(qmf(x, rank = 2, n_quantiles = 5, loss = loss, model = "qmfq",
                                max_epochs = 5, verbose = FALSE,
                                control = list(sinkhorn_tol = 1e-12)))
    scores <- qmf_normal_scores(x, missing = NA)
    center <- fit$problem$center
    scale <- fit$problem$scale
    standardized <- (fit$p - center) / scale
    for (r in c(1, 5, 12)) {
      seen <- !is.na(x[r, ])
      ref <- sinkhorn_normalize(scores[r, seen], target = standardized[r, ], eps = fit$settings$eps,
                                scale = "none", tol = 1e-12)
      expect_equal(unname(fit$mapped[r, seen]), center[r] + scale[r] * as.vector(ref),
                   tolerance = 1e-8)
      # S preserves the order of the row
      expect_true(all(diff(fit$mapped[r, seen][order(x[r, seen])]) >= -1e-12))
    }
    expect_true(is.na(fit$mapped[5, 2]))
    if (loss == "squared") {
      expect_equal(rowMeans(standardized), rep(0, 12), ignore_attr = TRUE)
      expect_equal(rowMeans(standardized^2), rep(1, 12), ignore_attr = TRUE)
    } else {
      expect_equal(rowMeans(standardized), rep(1, 12), ignore_attr = TRUE)
      expect_true(all(fit$p > 0))
    }
    expect_true(all(apply(fit$p, 1L, function(p) all(diff(p) > 0))))
    # T(U V) is fitted to S(X); fitted() carries it back through S's inverse
    expect_equal(diffrank:::qmfq_unmap(x, fit$mapped, fit$mapped)[!is.na(x)], x[!is.na(x)])
    expect_equal(dimnames(fitted(fit)), dimnames(x))
    expect_equal(names(coef(fit)), c("U", "V", "q", "b", "p"))
  }
})

test_that("QMFQ and QMF at their defaults beat a KL NMF on the paper's synthetic model", {
  skip_on_cran()  # over 5 s
  s <- qmf_paper_synthetic(1, d = 150, n = 80)
  for (model in c("qmf", "qmfq")) {
    set.seed(1)
    fit <- qmf(s$x, rank = 3, loss = "kl", model = model, verbose = FALSE)
    expect_true(fit$converged)
    # the NMF leaves about 0.19 of the divergence unexplained, QMF and QMFQ 0.06 to 0.07
    expect_lt(fit$kl_unexplained, 0.5 * fit$nmf_kl_unexplained)
  }
})

test_that("QMFQ: predict(), threads and bad arguments", {
  s <- qmf_simulate(d = 20, n = 30, seed = 7)
  run <- function(threads) {
    set.seed(11)
    suppressWarnings(qmf(s$x[, 1:25], rank = 2, model = "qmfq", max_epochs = 6,
                         threads = threads, verbose = FALSE))
  }
  fit <- run(1)
  expect_identical(fit[c("U", "V", "p", "mapped", "fitted")], run(2)[c("U", "V", "p", "mapped",
                                                                       "fitted")])
  expect_output(print(fit), "QMFQ")
  new <- s$x[, 26:30]
  v_new <- suppressWarnings(predict(fit, new))
  expect_equal(dim(v_new), c(5L, 2L))
  rec <- suppressWarnings(predict(fit, new, type = "fitted"))
  expect_equal(dimnames(rec), dimnames(new))
  expect_lt(qmf_rel_error(new, rec), 0.5)
  expect_error(qmf(s$x, rank = 2, model = "qmq"), "`model`")
})

test_that("the KL multiplicative updates of the NMF start and baseline match R's, any threads", {
  set.seed(12)
  x <- matrix(rpois(70 * 40, 4), 70)
  w <- matrix(runif(70 * 3, 0.5, 1.5), 70)
  h <- matrix(runif(3 * 40, 0.5, 1.5), 3)
  mask <- matrix(rbinom(length(x), 1, 0.9), nrow(x))
  for (m in list(NULL, mask)) {
    xm <- if (is.null(m)) x else x * m
    ref <- kl_nmf_updates_reference(xm, w, h, 25L, m)
    one <- diffrank:::kl_nmf_updates(xm, w, h, 25L, m, threads = 1L)
    expect_equal(one, ref, tolerance = 1e-10)
    expect_identical(diffrank:::kl_nmf_updates(xm, w, h, 25L, m, threads = 2L), one)
  }
  # a mask of ones gives the updates without a mask
  expect_equal(diffrank:::kl_nmf_updates(x, w, h, 5L, x * 0 + 1), diffrank:::kl_nmf_updates(x, w, h, 5L),
               tolerance = 1e-14)
})
