# Starting values and optimizers of qmf(). Parameters are a list with U
# (d x k), V (k x n), theta and beta (m x d, one column per row of x; beta is
# NULL unless the weights are learned).

softplus_inv <- function(y) y + log(-expm1(-y))

# `scores` are the rows' normal scores (squared loss) when the caller has
# them already.
qmf_init <- function(prob, settings, scores = NULL) {
  init <- settings$control$init
  if (is.null(init)) init <- "auto"
  if (!is.list(init)) init <- match_choice(init, c("auto", "ranks", "svd", "nmf"), "control$init")
  if (identical(init, "auto") && prob$positive) init <- "nmf"
  shared <- qmf_start_shared(prob, settings, scores)
  if (!identical(init, "auto")) return(qmf_start(prob, settings, init, shared))
  # the squared loss's two starts, each with its targets: keep the one whose
  # objective is lower (the rank-based one for rows seen through strong
  # monotone maps, the SVD of the data for rows close to linear)
  starts <- list(ranks = qmf_start(prob, settings, "ranks", shared),
                 svd = qmf_start(prob, settings, "svd", shared))
  values <- vapply(starts, function(par) qmf_evaluate(prob, par, gradient = FALSE)$value, 0)
  values[!is.finite(values)] <- Inf
  starts[[which.min(values)]]
}

# What every start shares, whatever its factors: QMFQ's data-side
# parameters and, for the squared loss, the rows' normal scores and each
# row's m-level quantizer (see qmf_init_targets()).
qmf_start_shared <- function(prob, settings, scores = NULL) {
  m <- settings$n_quantiles
  out <- list(phi = qmfq_init_phi(prob, m))
  if (prob$positive) return(out)
  c(out, list(scores = scores %||% qmf_normal_scores(prob$x),
              levels = qmf_row_levels(prob$x, m, settings$learn_weights)))
}

# The starting parameters from the start `init` (a name, or a list of U and
# V); attribute "start" names it.
qmf_start <- function(prob, settings, init, shared = qmf_start_shared(prob, settings)) {
  k <- settings$rank
  factors <- if (is.list(init)) {
    qmf_check_init(init, prob, k)
  } else {
    switch(init, ranks = qmf_init_svd(prob, k, shared$scores), svd = qmf_init_svd(prob, k),
           nmf = qmf_init_nmf(prob, k, settings$control$init_iter, settings$threads))
  }
  m <- settings$n_quantiles
  par <- if (prob$positive) {
    list(U = factors$U, V = factors$V, theta = qmf_init_theta(prob, factors, m),
         beta = if (settings$learn_weights) matrix(0, m, prob$d) else NULL,
         phi = shared$phi)
  } else {
    targets <- qmf_init_targets(prob, factors, shared$levels, shared$scores)
    list(U = factors$U, V = factors$V, theta = targets$theta, beta = targets$beta,
         phi = shared$phi)
  }
  structure(par, start = if (is.list(init)) "given" else init)
}

# QMFQ's data-side parameters (m x d; NULL for QMF): the map S starts as the
# best m-level map of each row onto itself, the means of m bins of equal
# mass of its sorted values (standardized, or divided by their mean for the
# KL loss), so that S(X) starts close to X.
qmfq_init_phi <- function(prob, m) {
  if (!isTRUE(prob$options$map_data)) return(NULL)
  vapply(seq_len(prob$d), function(r) {
    q <- qmf_equal_bins(sort(prob$x[r, ]), m)$q
    if (prob$positive) {
      p <- q / max(mean(q), 1e-300)
      c(softplus_inv(max(p[1L], 1e-3)), softplus_inv(pmax(diff(p), 1e-3)))
    } else {
      spread <- sqrt(mean((q - mean(q))^2))
      p <- (q - mean(q)) / if (spread > 0) spread else 1
      c(0, softplus_inv(pmax(diff(p), 1e-3)))
    }
  }, numeric(m))
}

# Each row's normal scores: qnorm((rank - 1/2) / n) of its observed values,
# divided by their standard deviation; missing entries 0. A monotone map of a
# row does not change them, so a low-rank signal seen through any increasing
# maps keeps (about) its rank in this matrix, where the data itself does not.
qmf_normal_scores <- function(x, missing = 0) {
  out <- t(apply(x, 1L, function(r) {
    seen <- !is.na(r)
    s <- rep(missing, length(r))
    s[seen] <- stats::qnorm((rank(r[seen]) - 0.5) / sum(seen))
    s
  }))
  spread <- sqrt(rowSums(out^2, na.rm = TRUE) / pmax(rowSums(!is.na(x)) - 1, 1))
  spread[!(spread > 0)] <- 1
  out / spread
}

# U = A S^(1/2) s and V = S^(1/2) B' / s with s = (d/n)^(1/4): of all the ways
# to split the product, the one with the smallest penalty ||U||^2/d + ||V||^2/n.
qmf_balance <- function(left, right, d, n) {
  s <- (d / n)^0.25
  list(U = left * s, V = right / s)
}

# The truncated SVD start: of the rows' normal scores `scores` (the
# rank-based start), or without them of the row-centred data.
qmf_init_svd <- function(prob, k, scores = NULL) {
  ranks <- !is.null(scores)
  if (ranks) {
    xs <- scores
  } else {
    xs <- prob$x - prob$center
    xs[is.na(xs)] <- 0
  }
  s <- svd(xs, nu = k, nv = k)
  root <- sqrt(s$d[seq_len(k)])
  left <- s$u %*% diag(root, k)
  right <- diag(root, k) %*% t(s$v)
  if (ranks) return(qmf_balance(left, right, prob$d, prob$n))
  # the best rank-k fit of the centred data in its own units (those of the
  # loss), each row of U then divided by the row's scale so that the rows of
  # U V are in the standardized units of the targets; the split
  # U = left c, V = right / c with the smallest penalty
  left <- left / prob$scale
  c <- (sum(right^2) * prob$d / max(sum(left^2) * prob$n, 1e-300))^0.25
  if (!is.finite(c) || !(c > 0)) c <- 1
  list(U = left * c, V = right / c)
}

# KL-divergence NMF by multiplicative updates (Lee and Seung 2001) of the
# data divided by each row's mean; each row of W is then divided by the row's
# coefficient of variation, so that rows of U V have about unit spread.
qmf_init_nmf <- function(prob, k, iterations, threads = 1L) {
  xs <- prob$x / prob$scale
  xs[is.na(xs)] <- 1
  d <- nrow(xs)
  n <- ncol(xs)
  # from the SVD-based NNDSVD start rather than a random one: deterministic,
  # and closer (on 1,000 x 350 Poisson counts at rank 5, QMF then converges
  # in about half the epochs)
  start <- nndsvd(xs, k)
  factors <- kl_nmf_updates(xs, start$w, start$h, iterations, threads = threads)
  w <- factors$w
  h <- factors$h
  spread <- apply(xs, 1L, stats::sd)
  spread[!(spread > 0)] <- 1
  qmf_balance(w / spread, h, d, n)
}

# Multiplicative updates (Lee and Seung 2001) of w and h for the KL
# divergence of x from w %*% h; with a `mask` (1 for the observed entries of
# x, whose other entries are 0), over the observed entries only. In the C++
# core (inst/include/diffrank/nmf.hpp), identical for any number of threads.
kl_nmf_updates <- function(x, w, h, iterations, mask = NULL, threads = 1L) {
  kl_nmf_updates_cpp(x + 0, w + 0, h + 0, as.integer(iterations),
                     if (!is.null(mask)) mask + 0, as.integer(threads))
}

qmf_check_init <- function(init, prob, k) {
  ok <- function(a, r, c) {
    is.matrix(a) && is.numeric(a) && all(dim(a) == c(r, c)) && all(is.finite(a))
  }
  if (!ok(init$U, prob$d, k) || !ok(init$V, k, prob$n)) {
    abort("`control$init` must be a list with finite matrices U (%d x %d) and V (%d x %d).",
          prob$d, k, k, prob$n)
  }
  if (prob$positive && (any(init$U < 0) || any(init$V < 0))) {
    abort("`control$init` must have non-negative U and V for `loss = \"kl\"`.")
  }
  list(U = unname(init$U) + 0, V = unname(init$V) + 0)
}

# theta (m x d) from each row's quantiles at levels (j - 1/2) / m, shrunk
# towards the row's mean by the correlation between the row and its start
# U V (a map onto the row's full distribution would spread a partial fit
# too widely: the best affine prediction shrinks by that correlation), in the
# row's standardized units, with increments of at least 0.01 (tied values
# would otherwise need an infinitely negative parameter).
qmf_init_theta <- function(prob, factors, m) {
  x <- prob$x
  seen <- !is.na(x)
  z <- factors$U %*% factors$V
  z[!seen] <- NA
  means <- rowMeans(x, na.rm = TRUE)
  xc <- x - means
  zc <- z - rowMeans(z, na.rm = TRUE)
  rho <- rowSums(xc * zc, na.rm = TRUE) /
    sqrt(rowSums(xc^2, na.rm = TRUE) * rowSums(zc^2, na.rm = TRUE))
  rho[is.na(rho)] <- 0.05
  rho <- pmin(pmax(rho, 0.05), 1)
  quantiles <- qmf_row_quantiles(x, (seq_len(m) - 0.5) / m)
  quantiles <- means + rho * (quantiles - means)
  standardized <- (quantiles - prob$center) / prob$scale
  vapply(seq_len(prob$d), function(r) qmf_theta(standardized[r, ], prob$positive), numeric(m))
}

# Targets (and weights) for the squared loss: each row's optimal m-level
# quantizer (Lloyd's algorithm on its sorted observed values, from m bins of
# equal counts; every level keeps at least one value): with weights learned,
# the levels' shares of the values are the weights and the targets the means
# of their values; with equal weights, the targets are the means of m bins of
# equal mass (the best targets for a hard map of exact ranks). The targets
# are then shrunk towards the row's mean by the correlation between the
# row's normal scores and its starting row of U V (see qmf_init_theta()).
# `levels` and `scores` (qmf_row_levels(), qmf_normal_scores()) do not
# depend on the factors.
qmf_init_targets <- function(prob, factors, levels, scores) {
  x <- prob$x
  z <- factors$U %*% factors$V
  seen <- !is.na(x)
  z[!seen] <- 0
  zc <- (z - rowSums(z) / rowSums(seen)) * seen
  rho <- rowSums(scores * zc) / sqrt(rowSums(scores^2) * rowSums(zc^2))
  rho[is.na(rho)] <- 0.05
  rho <- pmin(pmax(rho, 0.05), 1)
  q <- levels$mean + rho * (levels$q - levels$mean)
  theta <- vapply(seq_len(prob$d), function(r) {
    qmf_theta((q[r, ] - prob$center[r]) / prob$scale[r], FALSE, floor = 1e-3)
  }, numeric(ncol(q)))
  list(theta = theta, beta = if (!is.null(levels$b)) t(log(levels$b)))
}

# Each row's m-level quantizer of its observed values (d x m targets `q`,
# with their shares `b` when the weights are learned, else NULL) and the
# rows' means.
qmf_row_levels <- function(x, m, learn_weights) {
  d <- nrow(x)
  q <- matrix(0, d, m)
  b <- if (learn_weights) matrix(0, d, m) else NULL
  means <- numeric(d)
  for (r in seq_len(d)) {
    v <- sort(x[r, !is.na(x[r, ])])
    level <- if (learn_weights) qmf_lloyd(v, m) else qmf_equal_bins(v, m)
    q[r, ] <- level$q
    if (learn_weights) b[r, ] <- level$b
    means[r] <- mean(v)
  }
  list(q = q, b = b, mean = means)
}

# The means of m bins of equal mass 1/m of the sorted values v (a value
# straddling two bins shares its mass).
qmf_equal_bins <- function(v, m) {
  n <- length(v)
  upper <- outer(seq_len(n) / n, seq_len(m) / m, pmin)
  lower <- outer((seq_len(n) - 1) / n, (seq_len(m) - 1) / m, pmax)
  list(q = as.vector(v %*% (pmax(upper - lower, 0) * m)), b = rep(1 / m, m))
}

# Lloyd's m-level quantizer of sorted values v: contiguous groups, each with
# at least one value (when length(v) < m, the groups are padded by splitting
# values' mass evenly); returns the groups' means q and shares b.
qmf_lloyd <- function(v, m, iterations = 100L) {
  n <- length(v)
  if (n < 2L * m) return(qmf_equal_bins(v, m))
  cuts <- round(seq(0, n, length.out = m + 1L))
  sums <- c(0, cumsum(v))
  means <- function(cuts) (sums[cuts[-1L] + 1L] - sums[cuts[-(m + 1L)] + 1L]) / diff(cuts)
  for (it in seq_len(iterations)) {
    q <- means(cuts)
    new <- c(0L, findInterval((q[-1L] + q[-m]) / 2, v), n)
    for (j in 2:m) new[j] <- max(new[j], new[j - 1L] + 1L)
    for (j in m:2) new[j] <- min(new[j], new[j + 1L] - 1L)
    if (all(new == cuts)) break
    cuts <- new
  }
  list(q = means(cuts), b = diff(cuts) / n)
}

# Type-7 quantiles (as stats::quantile) of each row of x at `levels`, d x
# length(levels); rows with missing values one at a time.
qmf_row_quantiles <- function(x, levels) {
  out <- matrix(NA_real_, nrow(x), length(levels))
  complete <- rowSums(is.na(x)) == 0L
  if (any(complete)) {
    sorted <- t(apply(x[complete, , drop = FALSE], 1L, sort))
    h <- (ncol(x) - 1) * levels + 1
    lo <- floor(h)
    hi <- pmin(lo + 1, ncol(x))
    frac <- rep(h - lo, each = sum(complete))
    out[complete, ] <- sorted[, lo, drop = FALSE] * (1 - frac) + sorted[, hi, drop = FALSE] * frac
  }
  for (r in which(!complete)) {
    out[r, ] <- stats::quantile(x[r, ], levels, na.rm = TRUE, names = FALSE)
  }
  out
}

# theta from target values in standardized units (the inverse of
# qmf_quantiles_cpp), with increments of at least `floor`.
qmf_theta <- function(qt, positive, floor = 0.01) {
  first <- if (positive) softplus_inv(max(qt[1L], 1e-3)) else qt[1L]
  c(first, softplus_inv(pmax(diff(qt), floor)))
}

# ---------------------------------------------------------------------------
# Adam over mini-batches of rows (Kingma and Ba 2015). Rows of U, theta and
# beta are updated only when their row is in the batch, with bias
# corrections counted per row; V at every batch. For the KL loss U and V are
# projected onto the non-negative orthant after each step. The step size is
# halved after every epoch whose objective is higher than the previous one:
# a constant step keeps the iterates oscillating, so the objective would
# never settle to the relative tolerance.

qmf_adam <- function(prob, par, settings) {
  # The moments and parameters are updated in place, batch rows only: they
  # are local to this frame, so R does not copy the whole matrices (passing
  # them to a step function and back costs as much as a third of an epoch).
  zero <- function(a) if (is.null(a)) NULL else a * 0
  first <- lapply(par, zero)
  second <- lapply(par, zero)
  t_rows <- integer(prob$d)
  t_v <- 0L
  columns <- intersect(c("theta", "beta", "phi"), names(Filter(Negate(is.null), par)))
  report <- qmf_reporter(settings, environment())
  history <- qmf_history(min(settings$max_epochs, 1000L))
  previous <- NA_real_
  converged <- FALSE
  started <- proc.time()[["elapsed"]]
  size <- settings$batch_size
  lr <- settings$control$learning_rate
  for (epoch in seq_len(settings$max_epochs)) {
    order <- sample.int(prob$d)
    data <- 0
    for (start in seq(1L, prob$d, by = size)) {
      rows <- order[start:min(prob$d, start + size - 1L)]
      grad <- qmf_evaluate(prob, par, rows)
      data <- data + grad$data
      t_rows[rows] <- t_rows[rows] + 1L
      t_v <- t_v + 1L
      t_r <- t_rows[rows]
      up <- qmf_adam_update(par$U[rows, , drop = FALSE], first$U[rows, , drop = FALSE],
                            second$U[rows, , drop = FALSE], grad$U, t_r, lr)
      par$U[rows, ] <- if (prob$positive) pmax(up$p, 0) else up$p
      first$U[rows, ] <- up$m
      second$U[rows, ] <- up$s
      up <- qmf_adam_update(par$V, first$V, second$V, grad$V, t_v, lr)
      par$V <- if (prob$positive) pmax(up$p, 0) else up$p
      first$V <- up$m
      second$V <- up$s
      for (name in columns) {
        t_c <- rep(t_r, each = nrow(par[[name]]))
        up <- qmf_adam_update(par[[name]][, rows, drop = FALSE],
                              first[[name]][, rows, drop = FALSE],
                              second[[name]][, rows, drop = FALSE], grad[[name]], t_c, lr)
        par[[name]][, rows] <- up$p
        first[[name]][, rows] <- up$m
        second[[name]][, rows] <- up$s
      }
    }
    objective <- data / prob$norm +
      prob$lambda * (sum(par$U^2) / prob$d + sum(par$V^2) / prob$n)
    change <- qmf_change(history[, "objective"], epoch, objective)
    history <- qmf_record(history, epoch, objective, change, started)
    converged <- !is.na(change) && change < settings$tol
    report(epoch, objective, change, last = converged || epoch == settings$max_epochs)
    if (converged) break
    if (!is.na(previous) && objective > previous) lr <- lr / 2
    previous <- objective
  }
  list(par = par, history = history[seq_len(epoch), , drop = FALSE], converged = converged)
}

# One Adam step of parameters p with moments m and s, gradient g and step
# counts t (per entry), with bias corrections.
qmf_adam_update <- function(p, m, s, g, t, lr, b1 = 0.9, b2 = 0.999) {
  m <- b1 * m + (1 - b1) * g
  s <- b2 * s + (1 - b2) * g^2
  list(p = p - lr * (m / (1 - b1^t)) / (sqrt(s / (1 - b2^t)) + 1e-8), m = m, s = s)
}

# ---------------------------------------------------------------------------
# Full-batch L-BFGS through stats::optim("L-BFGS-B"); one epoch is one
# evaluation of the objective and its gradient. For the KL loss, U and V
# have the lower bound 0.

qmf_pack <- function(par) c(par$U, par$V, par$theta, par$beta, par$phi)

qmf_unpack <- function(v, like) {
  at <- 0L
  lapply(like, function(a) {
    if (is.null(a)) return(NULL)
    out <- v[at + seq_along(a)]
    dim(out) <- dim(a)
    at <<- at + length(a)
    out
  })
}

qmf_lbfgs <- function(prob, par, settings) {
  report <- qmf_reporter(settings, environment())
  history <- qmf_history(min(settings$max_epochs, 1000L))
  cache <- new.env(parent = emptyenv())
  cache$epoch <- 0L
  cache$best <- Inf
  started <- proc.time()[["elapsed"]]
  # every evaluation is an epoch; the fit stops (through a condition that
  # leaves optim()) when the rule of qmf_change() holds or after max_epochs
  evaluate <- function(v) {
    if (!identical(v, cache$v)) {
      cache$v <- v
      cache$ev <- qmf_evaluate(prob, qmf_unpack(v, par))
      epoch <- cache$epoch <- cache$epoch + 1L
      if (cache$ev$value < cache$best) {
        cache$best <- cache$ev$value
        cache$best_v <- v
      }
      change <- qmf_change(history[, "objective"], epoch, cache$best)
      history <<- qmf_record(history, epoch, cache$best, change, started)
      cache$converged <- !is.na(change) && change < settings$tol
      done <- cache$converged || epoch >= settings$max_epochs
      report(epoch, cache$best, change, last = done)
      if (done) stop(structure(class = c("qmf_stop", "condition"), list(message = "", call = NULL)))
    }
    cache$ev
  }
  lower <- if (prob$positive) {
    c(rep(0, length(par$U) + length(par$V)),
      rep(-Inf, length(par$theta) + length(par$beta) + length(par$phi)))
  } else -Inf
  start <- qmf_pack(par)
  opt <- tryCatch({
    # inside the handler: with max_epochs = 1 the first evaluation ends the fit
    f0 <- evaluate(start)$value
    stats::optim(start, function(v) evaluate(v)$value,
                 function(v) qmf_pack(evaluate(v)[c("U", "V", "theta", "beta", "phi")]),
                 method = "L-BFGS-B", lower = lower,
                 control = list(maxit = settings$max_epochs, lmm = 10L, pgtol = 0, factr = 10,
                                fnscale = max(abs(f0), 1e-300)))
  }, qmf_stop = function(e) NULL)
  # L-BFGS-B that stops on its own has reached its (much finer) tolerance
  converged <- isTRUE(cache$converged) || (!is.null(opt) && opt$convergence == 0L)
  list(par = qmf_unpack(cache$best_v, par), history = history[seq_len(cache$epoch), , drop = FALSE],
       converged = converged, message = if (is.null(opt)) NULL else opt$message)
}

# The stopping rule: the mean decrease of the objective per epoch over the
# last `window` epochs, relative to the objective or to `floor` when the
# objective is lower (the objective is a fraction of the variance, or of the
# mean for the KL loss: a fit that leaves 0.3% of the variance unexplained is
# judged on its progress in units of 1% of the variance, so that it keeps
# going while it still gains on a near-exact fit; 3% stopped such fits with
# a relative error 10 to 20% above the one they reach at 1% in about 60 more
# epochs, and 0.5% ran them out of max_epochs); NA before `window` epochs.
qmf_window <- 5L
qmf_floor <- 0.01

qmf_change <- function(objectives, epoch, objective) {
  if (epoch <= qmf_window) return(NA_real_)
  (objectives[epoch - qmf_window] - objective) / qmf_window / max(objective, qmf_floor)
}

# L-BFGS-B (of predict()) stops when the objective falls by less than factr *
# epsmch * max(|f|, 1): scaling f well above 1 makes the rule relative, as
# `tol` is.
qmf_lbfgs_control <- function(f0, maxit, tol) {
  list(maxit = maxit, lmm = 10L, pgtol = 0, factr = tol / .Machine$double.eps,
       fnscale = 1e-8 * max(abs(f0), 1e-300))
}

qmf_history <- function(rows) {
  matrix(NA_real_, rows, 4L, dimnames = list(NULL, c("epoch", "objective", "change", "seconds")))
}

# The history with the row of `epoch` filled in, doubled when full: a large
# `max_epochs` ("until converged") must not allocate its whole history first.
qmf_record <- function(history, epoch, objective, change, started) {
  if (epoch > nrow(history)) history <- rbind(history, qmf_history(nrow(history)))
  history[epoch, ] <- c(epoch, objective, change, proc.time()[["elapsed"]] - started)
  history
}

# A function(epoch, objective, change, last) that reports progress: a cli
# progress bar with the objective (interactive sessions, `progress = TRUE`),
# or a message() line at the first epoch, every two seconds and at the last
# epoch, or nothing.
qmf_reporter <- function(settings, env) {
  if (!settings$verbose) return(function(epoch, objective, change, last = FALSE) invisible())
  if (!settings$progress) {
    shown <- -Inf
    return(function(epoch, objective, change, last = FALSE) {
      now <- proc.time()[["elapsed"]]
      if (epoch == 1L || last || now - shown >= 2) {
        shown <<- now
        message(sprintf("QMF epoch %d/%d: objective %.6g, %s (tol %.3g)%s",
                        epoch, settings$max_epochs, objective, qmf_change_text(change),
                        settings$tol,
                        if (last) "; done" else ""))
      }
    })
  }
  env$qmf_loss <- "?"
  id <- cli::cli_progress_bar(
    "QMF", total = settings$max_epochs, .envir = env, clear = TRUE, auto_terminate = FALSE,
    format = paste("QMF {cli::pb_bar} epoch {cli::pb_current}/{cli::pb_total}",
                   "| objective {qmf_loss} | {cli::pb_eta}")
  )
  function(epoch, objective, change, last = FALSE) {
    env$qmf_loss <- format(signif(objective, 5))
    cli::cli_progress_update(id = id, set = min(epoch, settings$max_epochs), .envir = env)
  }
}
