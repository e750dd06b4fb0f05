# Issue 15: every exported function meets the same classes of bad input with
# the documented outcome: a clear error naming the argument, or (where a value
# is documented) a value without NaN; never a crash, never a silent NaN, and
# never a modified caller object.

# ---------------------------------------------------------------------------
# Valid data

bi_vec <- c(a = 0.3, b = 1.2, c = -0.7, d = 2, e = 0.1)
bi_mat <- matrix(c(0.51, -1.2, 0.33, 1.9, -0.4, 0.75, 1.1, -2.1, 0.05, 0.62, -0.9, 1.4,
                   0.2, -0.3, 1.7, -1.5, 0.9, 0.01, -0.66, 1.25, 0.4, -1.05, 0.81, 0.15,
                   1.3, -0.2, -0.85, 0.47, 0.92, -1.6, 0.36, 1.05, -0.12, 0.58, -0.77, 2.2),
                 nrow = 6, ncol = 6)
bi_mat <- cbind(bi_mat, bi_mat[, 1:2] + 0.5)
bi_labels <- rep(0:1, length.out = ncol(bi_mat))
bi_rankings <- matrix(c(1, 2, 3, 3, 1, 2, 2, 3, 1, 1, 3, 2, 2, 1, 3, 3, 2, 1), 3)[, c(1:6, 1:2)]
bi_rankings <- matrix(bi_rankings, 3)

# A direction shaped like x (for the VJPs).
ones_like <- function(x) {
  if (!is.null(dim(x))) array(1, dim(x)) else rep(1, length(x))
}
labels_for <- function(x) rep(0:1, length.out = max(NCOL(x), 2))

# ---------------------------------------------------------------------------
# Bad inputs, by argument

cases <- list(
  x = list(
    empty = numeric(0),
    all_na = c(NA_real_, NA_real_, NA_real_),
    nan = c(1, NaN, 3),
    inf = c(1, Inf, 3),
    neg_inf = c(1, -Inf, 3),
    character = c("a", "b", "c"),
    factor = factor(c("a", "b", "c")),
    complex = complex(real = 1:3, imaginary = 1),
    list = list(1, 2, 3),
    df_character = data.frame(a = 1:3, b = c("x", "y", "z")),
    date = as.Date("2020-01-01") + 0:2
  ),
  eps = list(zero = 0, negative = -1, na = NA_real_, inf = Inf, two = c(1, 2)),
  threads = list(zero = 0, negative = -1, na = NA_real_, huge = 2^31, null = NULL)
)

# ---------------------------------------------------------------------------
# One entry per export with a data argument: `arg` is the name of its data
# argument, `data` a valid value for it, and `fun(x, ...)` calls the export
# with `x` as that argument, otherwise valid arguments, and `...` (eps,
# threads) passed on.

entry <- function(fun, data = bi_vec, arg = "x") list(fun = fun, data = data, arg = arg)

# The entries of the three forms of every operator of the package's table
# (R/operator_table.R), made from the row: its arguments without a default
# (`k`, `solver`) take their values from the row's first contract example
# (helper-operators.R), and the VJP's direction is shaped like the value.
operator_calls <- function() {
  examples <- operator_examples()
  out <- list()
  for (name in names(operator_table)) {
    row <- operator_table[[name]]
    required <- Filter(function(arg) identical(row$args[[arg]], quote(expr = )),
                       setdiff(names(row$args), "..."))
    example <- examples[[name]][[1L]]
    forms <- lapply(c(value = "", fn = "_fn", vjp = "_vjp"),
                    function(suffix) get(paste0(name, suffix), asNamespace("diffrank")))
    local({
      forms <- forms
      example <- example
      required <- required
      fixed <- function(x) example_args(example, x, required)
      out[[name]] <<- entry(function(x, ...) do.call(forms$value, c(list(x, ...), fixed(x))))
      out[[paste0(name, "_fn")]] <<- entry(function(x, ...) {
        do.call(forms$fn, c(list(x, ...), fixed(x)))
      })
      out[[paste0(name, "_vjp")]] <<- entry(function(x, ...) {
        value <- tryCatch(suppressWarnings(do.call(forms$value, c(list(x, ...), fixed(x)))),
                          error = function(e) x)
        do.call(forms$vjp, c(list(x, ones_like(unclass(value)), ...), fixed(x)))
      })
    })
  }
  out
}

calls <- c(operator_calls(), list(
  # soft sorting (vectors or matrices, by column)
  spearman_loss = entry(function(x, ...) spearman_loss(x, seq_len(NROW(x)), ...), arg = "pred"),
  plot_soft_path = entry(function(x, ...) plot_soft_path(x, plot = FALSE, ...)),
  isotonic_regression = entry(function(x, ...) isotonic_regression(x, ...), arg = "y"),
  project_permutahedron = entry(function(x, ...) project_permutahedron(x, seq_len(NROW(x)), ...),
                                arg = "z"),
  # Sinkhorn operators
  soft_quantile_loss = entry(function(x, ...) soft_quantile_loss(x, seq_len(NROW(x)), ...),
                             arg = "pred"),
  soft_topk_loss = entry(function(x, ...) soft_topk_loss(x, rep(1, NCOL(x)), ...), data = bi_mat,
                         arg = "pred"),
  # perturbed optimizers
  perturbed_solver = entry(function(x, ...) perturbed_solver("rank", n_samples = 10, ...)(x)),
  fy_loss = entry(function(x, ...) fy_loss(x, rank(seq_len(NROW(x))), "rank", n_samples = 10, ...),
                  arg = "pred"),
  rank_regression = entry(function(x, ...) {
    rank_regression(x, bi_rankings[, seq_len(max(NCOL(x), 2)) %% 8 + 1, drop = FALSE],
                    n_samples = 10, max_iter = 5, ...)
  }, data = bi_mat),

  # the Mallows model
  rmallows = entry(function(x, ...) rmallows(3, x, theta = 0.5, ...), data = c(2, 1, 3, 5, 4),
                   arg = "consensus"),
  dmallows = entry(function(x, ...) dmallows(x, c(2, 1, 3, 5, 4), theta = 0.5, ...),
                   data = c(1, 2, 3, 4, 5)),
  mallows_model = entry(function(x, ...) mallows_model(x, ...), data = bi_rankings),
  aggregate_rankings = entry(function(x, ...) aggregate_rankings(x, ...), data = bi_rankings),
  mallows_mixture = entry(function(x, ...) mallows_mixture(x, ...), data = bi_rankings),

  # Kendall kernels
  kendall_kernel = entry(function(x, ...) kendall_kernel(x, ...), data = bi_mat),
  mallows_kernel = entry(function(x, ...) mallows_kernel(x, ...), data = bi_mat),
  weighted_kendall_kernel = entry(function(x, ...) weighted_kendall_kernel(x, ...), data = bi_mat),
  kendall_counts = entry(function(x, ...) kendall_counts(x, seq_len(NROW(x)), ...)),
  kendall_kernlab = entry(function(x, ...) kendall_kernlab(...)(x, rev(seq_len(NROW(x))))),
  mallows_kernlab = entry(function(x, ...) mallows_kernlab(...)(x, rev(seq_len(NROW(x))))),
  weighted_kendall_kernlab = entry(function(x, ...) {
    weighted_kendall_kernlab(...)(x, rev(seq_len(NROW(x))))
  }),
  # quantile normalization
  normalize_quantiles = entry(function(x, ...) normalize_quantiles(x, ...), data = bi_mat),
  quantile_target = entry(function(x, ...) quantile_target(x, ...), data = bi_mat),
  normalize_quantiles_robust = entry(function(x, ...) normalize_quantiles_robust(x, ...),
                                     data = bi_mat),
  robust_weights = entry(function(x, ...) robust_weights(x, ...), data = bi_mat),
  normalize_quantiles_groups = entry(function(x, ...) {
    normalize_quantiles_groups(x, labels_for(x)[seq_len(NCOL(x))], ...)
  }, data = bi_mat),
  rank_svm = entry(function(x, ...) {
    rank_svm(x, rep(c("a", "b"), length.out = NCOL(x)), n_features = 2, cost = 1, nfolds = 2, ...)
  }, data = bi_mat),
  plot_qsmooth_weights = entry(function(x, ...) {
    grDevices::pdf(NULL)
    on.exit(grDevices::dev.off())
    plot_qsmooth_weights(x, ...)
  }, data = c(0.2, 0.5, 0.9), arg = "weights"),
  qsmooth_weights = entry(function(x, ...) qsmooth_weights(x, labels_for(x)[seq_len(NCOL(x))], ...),
                          data = bi_mat),
  # models
  qmf = entry(function(x, ...) {
    qmf(x, rank = 1, n_quantiles = 4, max_epochs = 2, verbose = FALSE, ...)
  }, data = bi_mat),
  suquan = entry(function(x, ...) suquan(x, y = labels_for(x), max_iter = 2, ...), data = bi_mat),
  cv_suquan = entry(function(x, ...) {
    cv_suquan(x, y = labels_for(x), lambda = c(0.1, 0.01), nfolds = 2, progress = FALSE, ...)
  }, data = bi_mat)
))

# Exports without a data argument, or whose input is an object.
excluded <- c(
  # takes no argument: the option it reads is checked in test-threads.R
  diffrank_threads = "no data argument",
  # S3 generic with a method for qmf fits only: its input is a fitted object
  sample_coordinates = "input is a qmf fit",
  # needs a kernlab ksvm fit; its data goes through the kernel functions above
  support_kernel = "input is a ksvm fit"
)

# Where the documented outcome of a bad-input case is a value, not an error.
# "value": a value without NaN or Inf; "missing": a value whose only missing or
# non-finite entries are where the input is missing (NA and NaN are documented
# missing values there, kept missing in the output).
documented_values <- list(
  # length 0 gives length 0; eps = 0 is the hard operator (documented `eps >= 0`)
  soft_rank = c(x.empty = "value", eps.zero = "value"),
  soft_sort = c(x.empty = "value", eps.zero = "value"),
  soft_rank_fn = c(x.empty = "value", eps.zero = "value"),
  soft_sort_fn = c(x.empty = "value", eps.zero = "value"),
  soft_rank_vjp = c(x.empty = "value", eps.zero = "value"),
  soft_sort_vjp = c(x.empty = "value", eps.zero = "value"),
  spearman_loss = c(eps.zero = "value"),
  # `eps` is the path of values: a vector of them is its documented use
  plot_soft_path = c(eps.two = "value"),
  isotonic_regression = c(x.empty = "value"),
  project_permutahedron = c(x.empty = "value"),
  # missing values allowed, kept missing
  sinkhorn_normalize = c(x.nan = "missing"),
  sinkhorn_normalize_fn = c(x.nan = "missing"),
  sinkhorn_normalize_vjp = c(x.nan = "value"),   # missing values get a zero gradient
  normalize_quantiles = c(x.nan = "missing"),
  normalize_quantiles_groups = c(x.nan = "missing"),
  quantile_target = c(x.nan = "value"),
  qsmooth_weights = c(x.nan = "value"),
  # ranks of +-Inf are well defined: kernels of orderings accept them
  kendall_kernel = c(x.inf = "value", x.neg_inf = "value"),
  mallows_kernel = c(x.inf = "value", x.neg_inf = "value"),
  weighted_kendall_kernel = c(x.inf = "value", x.neg_inf = "value"),
  kendall_kernlab = c(x.inf = "value", x.neg_inf = "value"),
  mallows_kernlab = c(x.inf = "value", x.neg_inf = "value"),
  weighted_kendall_kernlab = c(x.inf = "value", x.neg_inf = "value"),
  # pairs with a missing value are dropped (documented); no pairs give zero counts
  kendall_counts = c(x.empty = "value", x.all_na = "value", x.nan = "value", x.inf = "value",
                     x.neg_inf = "value")
)
# A single-column x with a missing value is a matrix of one sample: the robust
# variants then fail on their `n_remove` default (an error, though it names an
# argument the caller did not give).
documented_errors <- list(
  normalize_quantiles_robust = c(x.nan = "`n_remove`"),
  robust_weights = c(x.nan = "`n_remove`")
)

# Known bugs: the current behaviour (an error, but not naming the argument) is
# asserted, so that a fix shows up here.
known_bugs <- list()

# threads: larger numbers than 1024 are documented to be taken as 1024.
for (name in names(calls)) {
  documented_values[[name]] <- c(documented_values[[name]], threads.huge = "value")
}

has_arg <- function(name, arg) {
  f <- get(name, asNamespace("diffrank"))
  d <- utils::getS3method(name, "default", optional = TRUE)
  arg %in% c(names(formals(f)), if (!is.null(d)) names(formals(d)))
}

# The numbers in a result: the value of an operator, the numeric parts of a
# list, the values of a vector or matrix; NULL for a fitted model object.
result_numbers <- function(r) {
  if (inherits(r, "diffrank_operator")) r <- r$value
  if (is.list(r) && !is.data.frame(r) && !inherits(r, c("qmf", "suquan", "cv_suquan",
                                                        "rank_regression", "quantile_target"))) {
    r <- unlist(lapply(unclass(r), function(e) if (is.numeric(e)) as.vector(e)))
  }
  if (is.numeric(r) && !is.object(unclass(r))) as.vector(unclass(r)) else NULL
}

expect_documented_value <- function(r, kind, input, label) {
  v <- result_numbers(r)
  if (is.null(v)) return(expect_true(is.object(r) || is.list(r), label = label))
  if (kind == "missing") {
    expect_equal(sum(!is.finite(v)), sum(is.na(input)), label = paste(label, "non-finite count"))
  } else {
    expect_true(all(is.finite(v)), label = paste(label, "all finite"))
  }
}

lookup <- function(table, name, key) {
  v <- table[[name]]
  if (is.null(v) || !key %in% names(v)) NA_character_ else v[[key]]
}

# Runs one (export, argument, case) and checks its documented outcome.
check_case <- function(name, arg, case_name, value) {
  e <- calls[[name]]
  key <- paste(arg, case_name, sep = ".")
  label <- sprintf("%s(%s = <%s>)", name, if (arg == "x") e$arg else arg, case_name)
  call_it <- function() {
    if (arg == "x") return(e$fun(value))
    do.call(e$fun, stats::setNames(list(e$data, value), c("", arg)))
  }
  kind <- lookup(documented_values, name, key)
  err <- lookup(documented_errors, name, key)
  bug <- lookup(known_bugs, name, key)
  if (!is.na(bug)) err <- bug
  if (!is.na(kind)) {
    r <- suppressWarnings(call_it())
    expect_documented_value(r, kind, value, label)
  } else {
    pattern <- if (!is.na(err)) err else sprintf("`%s`", if (arg == "x") e$arg else arg)
    expect_error(suppressWarnings(call_it()), pattern, label = label)
  }
}

test_that("every exported function is in the table or in the exclusion list", {
  ns <- asNamespace("diffrank")
  exports <- getNamespaceExports("diffrank")
  exports <- exports[vapply(exports, function(n) is.function(get(n, ns)), logical(1))]
  methods <- unlist(lapply(ls(ns$.__S3MethodsTable__., all.names = TRUE), identity))
  exports <- setdiff(exports, methods)
  expect_setequal(exports, c(names(calls), names(excluded)))
  expect_length(intersect(names(calls), names(excluded)), 0)
})

test_that("each export works on its valid data (so errors below come from the bad input)", {
  for (name in names(calls)) {
    e <- calls[[name]]
    expect_no_error(suppressWarnings(e$fun(e$data)), message = name)
  }
})

test_that("bad `x` gives an error naming the argument, or its documented value", {
  skip_on_cran()  # over 5 s
  for (name in names(calls)) {
    for (case_name in names(cases$x)) check_case(name, "x", case_name, cases$x[[case_name]])
  }
})

test_that("bad `eps` and `threads` give an error naming the argument, or their documented value", {
  skip_on_cran()  # over 5 s
  for (name in names(calls)) {
    for (arg in c("eps", "threads")) {
      if (!has_arg(name, arg)) next
      for (case_name in names(cases[[arg]])) {
        check_case(name, arg, case_name, cases[[arg]][[case_name]])
      }
    }
  }
})

test_that("edge values give finite values: length 1, constants, extreme magnitudes", {
  edges <- list(length1 = 5, constant = rep(2, 4), huge = c(1e300, -1e300, 5e299, 0),
                tiny = c(1e-300, -1e-300, 3e-300, 0))
  vector_ops <- c("soft_rank", "soft_sort", "soft_rank_fn", "soft_sort_fn", "soft_rank_vjp",
                  "soft_sort_vjp", "sinkhorn_rank", "sinkhorn_cdf", "sinkhorn_sort",
                  "sinkhorn_quantile", "sinkhorn_rank_fn", "sinkhorn_sort_fn",
                  "sinkhorn_rank_vjp", "sinkhorn_sort_vjp", "isotonic_regression",
                  "perturbed_fn")
  for (name in vector_ops) {
    for (edge in names(edges)) {
      r <- suppressWarnings(calls[[name]]$fun(edges[[edge]]))
      expect_true(all(is.finite(result_numbers(r))), label = sprintf("%s(<%s>)", name, edge))
    }
  }
  expect_identical(as.vector(soft_rank(5)), 1)
  expect_identical(as.vector(soft_rank(5, eps = 0)), 1)
  expect_equal(as.vector(soft_rank(rep(2, 4))), rep(2.5, 4))
  r <- sinkhorn_rank(5)
  expect_equal(as.vector(unclass(r)), 1)
  r <- as.vector(unclass(sinkhorn_rank(rep(2, 4))))
  expect_equal(r, rep(r[1], 4))
})

test_that("callers' objects are never modified", {
  int_mat <- matrix(as.integer(round(bi_mat * 10)), nrow(bi_mat))
  objects <- list(double_vector = bi_vec, double_matrix = bi_mat, integer_matrix = int_mat,
                  data_frame = as.data.frame(bi_mat))
  for (name in names(calls)) {
    for (obj in names(objects)) {
      x <- objects[[obj]]
      copy <- unserialize(serialize(x, NULL))
      try(suppressWarnings(calls[[name]]$fun(x)), silent = TRUE)
      expect_identical(x, copy, label = sprintf("%s after %s(x)", obj, name))
    }
  }
})

# Issue 13: the arguments of block processing (R/blocks.R) are checked on any
# input, so that a wrong value is an error even for an ordinary matrix.
test_that("bad `BPPARAM` and `filepath` give an error naming the argument", {
  bad <- list(
    BPPARAM = list(number = 2, string = "serial", list = list()),
    filepath = list(number = 1, two = c("a.h5", "b.h5"), na = NA_character_, empty = "")
  )
  with_block_args <- 0L
  for (name in names(calls)) {
    for (arg in names(bad)) {
      if (!has_arg(name, arg)) next
      if (arg == "BPPARAM") skip_if_not_installed("BiocParallel")
      with_block_args <- with_block_args + 1L
      for (case_name in names(bad[[arg]])) check_case(name, arg, case_name, bad[[arg]][[case_name]])
    }
  }
  # normalize_quantiles, quantile_target, sinkhorn_normalize, the three
  # kernels, suquan, the robust and qsmooth normalizers and their weights
  # take BPPARAM; the four normalizers take filepath
  expect_identical(with_block_args, 15L)
})

# Issue 28: every choice argument (a formal whose default is a character
# vector of choices) goes through one check: NA, a number and a misspelt
# choice are errors naming the argument, never match.arg()'s "'arg' should be
# one of".
test_that("bad choice arguments give an error naming the argument", {
  skip_on_cran()  # over 5 s
  bad <- list(na = NA, number = 1, misspelt = "no-such-choice", two = c("a", "b"))
  checked <- 0L
  for (name in names(calls)) {
    f <- get(name, asNamespace("diffrank"))
    d <- utils::getS3method(name, "default", optional = TRUE)
    defaults <- c(formals(f), if (!is.null(d)) formals(d))
    choices <- names(defaults)[vapply(defaults, function(v) {
      is.call(v) && identical(v[[1L]], as.name("c")) && all(vapply(as.list(v)[-1L], is.character, logical(1)))
    }, logical(1))]
    for (arg in setdiff(unique(choices), "...")) {
      checked <- checked + 1L
      for (case_name in names(bad)) check_case(name, arg, case_name, bad[[case_name]])
    }
  }
  # reg (8 soft operators), scale (soft and Sinkhorn), ties, noise, ...
  expect_gt(checked, 30L)
})

# Issue 28: size arguments are checked against the memory their work would
# take before anything is allocated (a typo such as n_targets = 1e9 used to
# grow R to 24 GB until the OOM killer ended the session).
test_that("size arguments beyond the memory limit are errors naming the argument and the size", {
  withr::local_options(diffrank.memory_limit = 1e6)
  big_calls <- list(
    n_targets = function() sinkhorn_rank(c(3, 1, 2, 5, 4), n_targets = 1e5),
    n_targets = function() sinkhorn_sort_fn(c(3, 1, 2, 5, 4), n_targets = 1e5),
    n_targets = function() sinkhorn_cdf_vjp(c(3, 1, 2, 5, 4), rep(1, 5), n_targets = 1e5),
    n_samples = function() perturbed(c(3, 1, 2), "rank", n_samples = 1e5),
    n_samples = function() perturbed_vjp(c(3, 1, 2), c(1, 0, 0), "rank", n_samples = 1e5),
    n_samples = function() fy_loss(c(1, 2, 3), c(1, 2, 3), "rank", n_samples = 1e5),
    n_quantiles = function() quantile_target(bi_mat, n_quantiles = 1e5),
    n_quantiles = function() qmf(bi_mat, rank = 1, n_quantiles = 1e5, verbose = FALSE)
  )
  for (i in seq_along(big_calls)) {
    arg <- names(big_calls)[i]
    expect_error(big_calls[[i]](), sprintf("`%s` = 100,000 would need about .* MB of memory.*diffrank.memory_limit", arg),
                 label = arg)
  }
  # the same calls run under a limit that allows them
  withr::local_options(diffrank.memory_limit = 1e9)
  expect_length(sinkhorn_sort(c(3, 1, 2, 5, 4), n_targets = 1e5, max_iter = 50), 1e5)
  # the largest integer: no integer overflow on the way to the check
  expect_error(fy_loss(c(1, 2, 3), c(1, 2, 3), "rank", n_samples = .Machine$integer.max),
               "`n_samples` = 2,147,483,647 would need about .* GB")
  expect_error(perturbed(c(3, 1, 2), "rank", n_samples = .Machine$integer.max, antithetic = TRUE),
               "`n_samples` = 2,147,483,647")
})

test_that("a large max_epochs does not allocate its whole history first", {
  set.seed(4)
  x <- matrix(rnorm(12 * 8), 12)
  fit <- suppressWarnings(qmf(x, rank = 1, n_quantiles = 4, max_epochs = 1e9, verbose = FALSE,
                              threads = 1))
  expect_lt(nrow(fit$history), 1e4)
  # one epoch: the first evaluation ends the fit (it used to end in an empty error)
  one <- suppressWarnings(qmf(x, rank = 1, n_quantiles = 4, max_epochs = 1, verbose = FALSE,
                              threads = 1))
  expect_identical(nrow(one$history), 1L)
  expect_false(one$converged)
  # the history grows as the epochs run
  h <- diffrank:::qmf_history(2L)
  for (epoch in 1:5) h <- diffrank:::qmf_record(h, epoch, 10 - epoch, NA_real_, 0)
  expect_identical(nrow(h), 8L)
  expect_identical(h[1:5, "objective"], 9:5 + 0)
  expect_identical(colnames(h), c("epoch", "objective", "change", "seconds"))
})

# Issue 28 (fuzz findings): an export that hands an argument to another
# export names the caller's argument, not the inner one's.
test_that("errors about new data name `newdata`, not the inner function's `x`", {
  target <- quantile_target(bi_mat)
  expect_error(predict(target, "a"), "`newdata` must be a numeric")
  expect_error(predict(target, bi_mat * NA), "`newdata` has 8 column")
  skip_if_not_installed("kernlab")
  set.seed(3)
  x <- matrix(rnorm(20 * 24), 20)
  labels <- factor(rep(c("a", "b"), 12))
  fit <- kernlab::ksvm(kendall_kernel(x[, 1:16]), labels[1:16], type = "C-svc")
  expect_error(support_kernel(fit, "a", x[, 1:16]), "`newdata` must be a numeric")
  expect_error(support_kernel(fit, x[-1, 17:24], x[, 1:16]),
               "`newdata` and `train` must have the same number of features")
  expect_error(support_kernel(fit, x[, 17:24], x[, 1:16], kernel = function(a, b) a),
               "`kernel` must return a kernel matrix")
  expect_identical(dim(support_kernel(fit, x[, 17:24], x[, 1:16])),
                   c(8L, length(kernlab::SVindex(fit))))
})

test_that("SUQUAN's smoothness and rounds are bounded before any work", {
  set.seed(5)
  x <- matrix(rnorm(12 * 10), 12)
  y <- rep(0:1, 5)
  # smooth = 1e308 used to run for minutes and return a NaN target
  expect_error(suquan(x, y, smooth = 1e308), "`smooth` must be a single finite number >= 0 and <= 1e\\+12, not 1e\\+308")
  expect_error(cv_suquan(x, y, smooth = c(0, 1e308)), "`smooth` must be numbers from 0 to 1e\\+12")
  fit <- suquan(x, y, smooth = 1e12)
  expect_true(all(is.finite(fit$f)))
  # rounds beyond max_iter run until convergence or max_iter, as Inf does
  # (a huge candidate used to overflow the size of the path array)
  set.seed(6)
  a <- suppressMessages(cv_suquan(x, y, rounds = c(0, .Machine$integer.max), max_iter = 3, nlambda = 3, nfolds = 2))
  set.seed(6)
  b <- suppressMessages(cv_suquan(x, y, rounds = c(0, Inf), max_iter = 3, nlambda = 3, nfolds = 2))
  expect_equal(unclass(a$cvm), unclass(b$cvm), ignore_attr = TRUE)
  expect_error(cv_suquan(x, y, rounds = Inf, max_iter = 1e9),
               "`max_iter` = 1,000,000,000 would need about .* TB of memory")
})

test_that("rank_svm names the samples on which the kernel is undefined", {
  skip_if_not_installed("kernlab")
  set.seed(7)
  x <- matrix(rnorm(30 * 20), 30, dimnames = list(NULL, paste0("s", 1:20)))
  y <- factor(rep(c("a", "b"), 10))
  x[, 4] <- 1
  expect_error(rank_svm(x, y, n_features = 30, cost = 1),
               "undefined for 1 sample\\(s\\) of `x` \\(s4\\): they are constant")
  fit <- rank_svm(x[, -4], y[-4], n_features = 30, cost = 1)
  expect_error(predict(fit, x[, 1:5]), "undefined for 1 sample\\(s\\) of `newdata` \\(s4\\)")
})

# ---------------------------------------------------------------------------
# Issue 28: every case of the issue, with its outcome. "finite": a finite
# result without a warning; "warned": a finite result, or non-finite entries
# with a warning of class diffrank_overflow that names the input to rescale;
# otherwise a regular expression the error must match (naming the argument).
test_that("the cases of issue 28 give a finite result, a warned overflow or a clear error", {
  x5 <- c(3, 1, 2, 5, 4)
  v5 <- c(0.3, -1, 0.5, 2, -0.2)
  tiny <- c(5e-324, 1e-323, 0, 2e-323, -5e-324)
  wide <- c(1e308, -1e308, 1e307, 0, 1)
  M <- bi_mat
  groups <- rep(c("a", "b"), 4)
  sort_solver <- function(theta) sort(theta)
  set.seed(28)
  fit <- suppressWarnings(qmf(matrix(rnorm(60), 10), rank = 1, n_quantiles = 4, max_epochs = 20,
                              verbose = FALSE, threads = 1))
  fit_x <- matrix(rnorm(60), 10)
  cases <- list(
    # sizes
    list(quote(sinkhorn_rank(x5, n_targets = 1e9)), "`n_targets` = 1,000,000,000 would need about .* GB"),
    list(quote(fy_loss(x5, x5, "rank", n_samples = .Machine$integer.max)),
         "`n_samples` = 2,147,483,647 would need"),
    # subnormal inputs
    list(quote(sinkhorn_rank_vjp(tiny, v5)), "warned"),
    list(quote(sinkhorn_rank_fn(tiny)$jacobian()), "warned"),
    list(quote(sinkhorn_cdf_fn(tiny)$vjp(v5)), "warned"),
    list(quote(soft_topk_fn(tiny, k = 2)$jacobian()), "warned"),
    list(quote(perturbed_vjp(x5, v5, sort_solver, eps = 5e-324)), "`eps` must be"),
    # values near the double range
    list(quote(qsmooth_weights(M * 1e307, groups)), "finite"),
    list(quote(normalize_quantiles_groups(M * 1e307, groups)), "finite"),
    list(quote(sinkhorn_quantile_vjp(wide, v = 0.5)), "warned"),
    list(quote(sinkhorn_sort_vjp(wide, v5)), "warned"),
    list(quote(sinkhorn_normalize_fn(M * 1e307)$vjp(M)), "warned"),
    list(quote(soft_quantile_loss(wide, 1:5)), "warned"),
    # huge cotangents
    list(quote(sinkhorn_sort_vjp(x5, rep(1e308, 5))), "warned"),
    list(quote(soft_topk_vjp(x5, rep(1e308, 5), k = 2)), "warned"),
    list(quote(perturbed_vjp(x5, rep(1e308, 5), sort_solver)), "warned"),
    list(quote(sinkhorn_normalize_vjp(M, M * 1e307)), "warned"),
    # unclear errors made clear
    list(quote(soft_sort(x5, threads = NULL)), "`threads` must be"),
    list(quote(project_permutahedron(x5, 1:5, reg = NA)), "`reg` must be one of"),
    list(quote(normalize_quantiles(M, ties = NA)), "`ties` must be one of"),
    list(quote(predict(fit, fit_x * 1e307)), "finite|`newdata`"),
    list(quote(perturbed(x5, function(a, b) a)), "`solver` must .*one"),
    list(quote(perturbed(x5, function(theta) stop("boom"))),
         "`solver` failed on a perturbed input .*boom"),
    list(quote(sinkhorn_rank_fn(x5)$jvp(v5)), "finite"),
    list(quote(sample_coordinates(NULL)), "`object` must be")
  )
  for (case in cases) {
    label <- deparse1(case[[1L]])
    expected <- case[[2L]]
    warnings <- list()
    result <- tryCatch(withCallingHandlers(eval(case[[1L]]), warning = function(w) {
      warnings[[length(warnings) + 1L]] <<- w
      invokeRestart("muffleWarning")
    }), error = function(e) e)
    if (expected %in% c("finite", "warned")) {
      expect_false(inherits(result, "error"), label = paste(label, "runs"))
      if (inherits(result, "error")) next
      v <- result_numbers(result)
      if (is.null(v)) v <- result_numbers(fitted(result))
      overflow <- vapply(warnings, inherits, logical(1), "diffrank_overflow")
      if (expected == "finite" || all(is.finite(v))) {
        expect_true(all(is.finite(v)), label = paste(label, "is finite"))
        expect_length(warnings[!overflow], 0L)
      } else {
        expect_true(any(overflow), label = paste(label, "warns of its overflow"))
      }
    } else {
      expect_true(inherits(result, "error"), label = paste(label, "is an error"))
      if (inherits(result, "error")) expect_match(conditionMessage(result), expected, label = label)
    }
  }
})

# Issue 28: what the fuzz harness (tools/fuzz.R) found after the first round
# of fixes, each case as it was reported.
test_that("the last fuzz findings give finite results, warnings or errors naming the argument", {
  skip_on_cran()  # over 5 s
  x5 <- c(3, 1, 2, 5, 4)
  # huge cotangents of the soft (PAV) family are scaled by a power of two:
  # finite, and exactly the product of the scaled-down cotangent
  v <- c(1e308, -1e308, 5e307, 1, 0)
  for (f in list(function(v) soft_rank_vjp(x5, v), function(v) soft_sort_vjp(x5, v),
                 function(v) soft_rank_fn(x5)$vjp(v), function(v) soft_rank_fn(x5)$jvp(v))) {
    expect_silent(g <- f(v))
    expect_true(all(is.finite(g)))
    expect_identical(g, f(v / 2^1023) * 2^1023)
  }
  # a derivative truly beyond the doubles warns, naming what to rescale
  expect_warning(soft_rank_vjp(c(5e-324, 1e-323, 0, 2e-323, -5e-324), c(0.3, -1, 0.5, 2, -0.2)),
                 class = "diffrank_overflow")
  expect_error(soft_rank_fn(x5)$jacobian(wrt = "y"), "`wrt` of \\$jacobian\\(\\) must be \"x\"")
  expect_error(soft_rank_fn(x5)$jacobian(wrt = NULL), "`wrt` .* not NULL")
  # `k` of the weighted kernel was partially matched to an internal argument
  skip_if_not_installed("SummarizedExperiment")
  se <- SummarizedExperiment::SummarizedExperiment(list(counts = bi_mat))
  expect_identical(unclass(weighted_kendall_kernel(se, weighting = "top", k = 3)),
                   unclass(weighted_kendall_kernel(bi_mat, weighting = "top", k = 3)))
  expect_error(weighted_kendall_kernel(NULL, weighting = "top", k = 3), "`x` must be")
  empty <- matrix(numeric(0), 8, 0, dimnames = list(letters[1:8], NULL))
  expect_identical(dim(soft_rank(empty)), c(8L, 0L))
  # degenerate data are named as such
  y <- rep(0:1, 4)
  expect_error(suquan(matrix(1, 6, 8), y), "`x` has no spread")
  expect_error(spearman_loss(x5, 1:5, eps = 1e308), "`eps` = 1e\\+308 is too large")
  expect_error(cv_suquan(bi_mat, y, nlambda = 1e9), "`nlambda` = 1,000,000,000 would need")
  tiny <- suppressWarnings(suquan(bi_mat * 1e-310, y))
  expect_true(all(is.finite(tiny$f)) && is.finite(tiny$lambda))
  set.seed(9)
  features <- matrix(rnorm(40), 4)
  rankings <- apply(matrix(rnorm(30), 3), 2, rank)
  expect_error(rank_regression(features, rankings, eps = 1e307),
               "loss is not finite at the start \\(eps = 1e\\+307\\): give a smaller `eps`")
  expect_true(all(is.finite(coef(rank_regression(features, rankings, lambda = 1e308)))))
  for (loss in c("squared", "soft_rank")) {
    expect_true(all(is.finite(coef(rank_regression(features, rankings, loss = loss,
                                                   lambda = 1e308)))))
  }
  # a misspelt argument of perturbed() reaches the solver's `...`: named
  expect_error(perturbed(x5, function(theta) theta, threadss = 2), "`threadss` = \\.\\.\\.")
  expect_error(sinkhorn_sort(c(3, 1, 2, 5, 4, 6, 7, 8), target_weights = 1:4),
               "`target_weights` must be NULL or a numeric vector of length 8 \\(`n_targets`\\)")
})
