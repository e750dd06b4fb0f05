# The block-wise paths of each function that takes a DelayedMatrix or a
# sparse Matrix (see ?diffrank_blocks): quantile normalization and its robust
# and group-aware variants, Sinkhorn normalization, the rank kernels and
# SUQUAN. The engine that reads, spreads and writes the blocks is blocks.R.

# ---------------------------------------------------------------------------
# quantile normalization

# Pass one on a block: its checks, its columns' quantiles at nrow levels and
# its number of missing values.
qn_quantiles_task <- function(block, threads) {
  n_missing <- check_expression_values(block)
  list(quantiles = qn_column_quantiles(block, NULL, nrow(block), threads), n_missing = n_missing)
}

# qn_quantiles_task() folded over a range of blocks: the quantiles are added
# to the exact sums of the range, kept in C++ (src/quantile.cpp), which
# qn_sums_finish() turns into bytes that can be sent.
qn_sums_task <- function(block, state, threads) {
  value <- qn_quantiles_task(block, threads)
  list(sums = qn_fold_sums(state$sums, value$quantiles, threads),
       n_missing = value$n_missing + if (is.null(state)) 0L else state$n_missing)
}

qn_sums_finish <- function(state) {
  list(sums = qn_fold_sums_bytes(state$sums), n_missing = state$n_missing)
}

# The mean target of a block input, identical to qn_fit_target() of the
# whole matrix: the sums of the columns' quantiles are exact, so each worker
# sums ranges of blocks and this process adds up the ranges' sums.
block_fit_target <- function(plan, threads, BPPARAM) {
  sums <- NULL
  n_missing <- 0L
  run_blocks(list(x = plan), worker_ranges(plan, BPPARAM), qn_sums_task, list(threads = threads),
             function(i, value) {
               sums <<- qn_merge_sums(sums, value$sums)
               n_missing <<- n_missing + value$n_missing
             }, BPPARAM, fold = qn_sums_finish)
  list(values = qn_target_from_sums(sums, ncol(plan$x)), n_missing = n_missing)
}

qn_normalize_task <- function(block, target, fitted, ties, threads) {
  check_expression_matrix(block)
  if (fitted) qn_normalize_fitted(block, target, ties, threads) else
    qn_normalize(block, target, ties, threads)
}

# Writes each block of plan, through task(block, ...), to `sink` (from
# block_sink()), calls consume(b, value) for each block b in order when it is
# given, and returns the result as a DelayedMatrix. Workers that write their
# own blocks take ranges of blocks and send back where they wrote them;
# else this process writes one block at a time.
block_write <- function(plan, task, args, sink, BPPARAM, consume = NULL, progress = FALSE,
                        label = "blocks") {
  run <- sink_task(sink, task, args)
  ranges <- is.environment(sink)
  items <- if (ranges) worker_ranges(plan, BPPARAM) else column_items(plan)
  run_blocks(list(x = plan), items, run$task, run$args, function(b, value) {
    sink_write(sink, plan, b, value)
    if (!is.null(consume)) consume(b, value)
  }, BPPARAM, progress, label, each = ranges)
  finish_sink(sink)
}

normalize_quantiles_blocks <- function(x, target, ties, threads, subset, blocks, filepath,
                                       BPPARAM) {
  if (!is.null(subset) || !is.null(blocks) ||
        (inherits(target, "quantile_target") && !is.null(target$subset))) {
    abort("`subset` and `blocks` are not available block by block: for %s, realize `x` with as.matrix() first.",
          describe(x))
  }
  x <- block_input(x)
  filepath <- check_filepath(filepath)
  BPPARAM <- check_bpparam(BPPARAM)
  warn_feature_mismatch(target, x)
  plan <- block_plan(x)
  if (start_workers(BPPARAM)) on.exit(BiocParallel::bpstop(BPPARAM), add = TRUE)
  fitted <- is.null(target)
  if (!fitted) target <- target_values(target)
  # the sink first: a result that cannot be written fails before any pass
  sink <- block_sink(plan$x, filepath, plan$width, BPPARAM)
  if (fitted) target <- block_fit_target(plan, threads, BPPARAM)$values
  block_write(plan, qn_normalize_task,
              list(target = target, fitted = fitted, ties = ties, threads = threads),
              sink, BPPARAM)
}

quantile_target_blocks <- function(x, threads, weights, trim, geometric, subset, n_quantiles,
                                   BPPARAM) {
  plain_trim <- is.numeric(trim) && length(trim) == 1L && !is.na(trim) && trim == 0
  if (!is.null(weights) || !plain_trim || !isFALSE(geometric) || !is.null(subset)) {
    abort("`weights`, `trim`, `geometric` and `subset` are not available block by block: for %s, realize `x` with as.matrix() first.",
          describe(x))
  }
  x <- block_input(x)
  BPPARAM <- check_bpparam(BPPARAM)
  n_quantiles <- check_n_quantiles(n_quantiles, x)
  fit <- block_fit_target(block_plan(x), threads, BPPARAM)
  values <- fit$values
  if (n_quantiles != length(values)) {
    values <- qn_column_quantiles(matrix(values, ncol = 1L), NULL, n_quantiles, 1L)[, 1L]
  }
  quantile_target_object(values, ncol(x), nrow(x), fit$n_missing, rownames(x))
}

# ---------------------------------------------------------------------------
# robust quantile normalization

normalize_quantiles_robust_blocks <- function(x, weights, remove_extreme, n_remove, trim,
                                              geometric, ties, threads, filepath, BPPARAM) {
  x <- block_input(x)
  filepath <- check_filepath(filepath)
  BPPARAM <- check_bpparam(BPPARAM)
  summary <- check_target_summary(weights, trim, geometric, x)
  rule <- if (is.null(weights)) check_extreme_rule(remove_extreme, n_remove, ncol(x))
  plan <- block_plan(x)
  if (start_workers(BPPARAM)) on.exit(BiocParallel::bpstop(BPPARAM), add = TRUE)
  sink <- block_sink(plan$x, filepath, plan$width, BPPARAM)
  if (is.null(weights)) weights <- block_extreme_weights(plan, rule, threads, BPPARAM)
  target <- block_summary_target(plan, weights, summary$trim, summary$geometric, threads,
                                 BPPARAM)
  block_write(plan, qn_normalize_task,
              list(target = target, fitted = FALSE, ties = ties, threads = threads),
              sink, BPPARAM)
}

robust_weights_blocks <- function(x, remove_extreme, n_remove, threads, BPPARAM) {
  x <- block_input(x)
  BPPARAM <- check_bpparam(BPPARAM)
  rule <- check_extreme_rule(remove_extreme, n_remove, ncol(x))
  if (start_workers(BPPARAM)) on.exit(BiocParallel::bpstop(BPPARAM), add = TRUE)
  stats::setNames(block_extreme_weights(block_plan(x), rule, threads, BPPARAM), colnames(x))
}

moments_task <- function(block, unit, threads) {
  if (unit == 1) check_expression_values(block) else block <- block / unit
  list(moments = qn_column_moments(block, threads), size = largest_abs(block))
}

# extreme_weights() of a block input: the columns' moments in one pass, and
# for data beyond 2^256 in size a second pass in its power-of-two unit.
block_extreme_weights <- function(plan, rule, threads, BPPARAM) {
  if (rule$rule == "none") return(rep(1, ncol(plan$x)))
  pass <- function(unit) {
    moments <- matrix(0, 3L, ncol(plan$x))
    size <- -Inf
    run_blocks(list(x = plan), column_items(plan), moments_task,
               list(unit = unit, threads = threads), function(i, value) {
                 moments[, plan$cols[[i]]] <<- value$moments
                 size <<- max(size, value$size)
               }, BPPARAM)
    list(moments = moments, unit = unit_for_size(size))
  }
  raw <- pass(1)
  moments <- if (raw$unit == 1) raw$moments else pass(raw$unit)$moments
  weights_from_moments(moments, raw$moments[3L, ] == 1, rule, colnames(plan$x))
}

# The weighted mean (or, with `trim`, the trimmed mean or median) of the
# samples' quantile functions, as new_quantile_target() computes it whole.
# A weighted mean needs running sums only; a trimmed mean needs every
# sample's quantiles at each level, held in memory.
block_summary_target <- function(plan, weights, trim, geometric, threads, BPPARAM) {
  x <- plan$x
  if (trim > 0) {
    check_dense_size(x, "x", paste0("with `trim` > 0, the samples' quantile functions (the ",
                                    "size of `x`) are held in memory at once."))
    quantiles <- matrix(0, nrow(x), ncol(x))
  }
  sums <- NULL
  run_blocks(list(x = plan), column_items(plan), qn_quantiles_task, list(threads = threads),
             function(i, value) {
               cols <- plan$cols[[i]]
               if (geometric) check_positive_quantiles(value$quantiles, weights[cols], NULL)
               if (trim > 0) {
                 quantiles[, cols] <<- value$quantiles
               } else {
                 sums <<- qn_accumulate_weighted(sums, value$quantiles, weights[cols], geometric,
                                                 threads)
               }
             }, BPPARAM)
  if (trim > 0) return(qn_summarize_levels(quantiles, weights, trim, geometric, threads))
  qn_weighted_from_sums(sums, geometric)
}

# ---------------------------------------------------------------------------
# group-aware quantile normalization (qsmooth)

# The references and weights of qsmooth for a block input: a pass for the
# references, and with `window` (weights to estimate) a pass for SST.
block_qsmooth_fit <- function(plan, groups, window, endrule, threads, BPPARAM) {
  sums <- NULL
  run_blocks(list(x = plan), column_items(plan), qn_quantiles_task, list(threads = threads),
             function(i, value) {
               sums <<- add_reference_sums(sums, value$quantiles, groups[plan$cols[[i]]], threads)
             }, BPPARAM)
  refs <- group_references(sums, groups)
  if (is.null(window)) return(list(refs = refs))
  sst <- NULL
  run_blocks(list(x = plan), column_items(plan), qn_quantiles_task, list(threads = threads),
             function(i, value) sst <<- add_deviation_sums(sst, value$quantiles, refs, threads),
             BPPARAM)
  list(refs = refs, weight = qsmooth_from_sums(sst, refs, groups, window, endrule))
}

qsmooth_normalize_task <- function(block, refs, weight, groups, ties, threads, .cols) {
  check_expression_matrix(block)
  qn_normalize_columns(block, group_targets(refs, weight, groups[.cols]), ties, threads)
}

normalize_quantiles_groups_blocks <- function(x, groups, weight, window, endrule, ties, threads,
                                              filepath, BPPARAM) {
  x <- block_input(x)
  groups <- check_groups(groups, x)
  if (!is.null(weight)) weight <- check_mixture_weight(weight, nrow(x))
  filepath <- check_filepath(filepath)
  BPPARAM <- check_bpparam(BPPARAM)
  plan <- block_plan(x)
  if (start_workers(BPPARAM)) on.exit(BiocParallel::bpstop(BPPARAM), add = TRUE)
  sink <- block_sink(plan$x, filepath, plan$width, BPPARAM)
  fit <- block_qsmooth_fit(plan, groups, if (is.null(weight)) window, endrule, threads, BPPARAM)
  if (is.null(weight)) weight <- fit$weight
  block_write(plan, qsmooth_normalize_task,
              list(refs = fit$refs, weight = weight, groups = groups, ties = ties,
                   threads = threads),
              sink, BPPARAM)
}

qsmooth_weights_blocks <- function(x, groups, window, endrule, threads, BPPARAM) {
  x <- block_input(x)
  groups <- check_groups(groups, x)
  BPPARAM <- check_bpparam(BPPARAM)
  if (start_workers(BPPARAM)) on.exit(BiocParallel::bpstop(BPPARAM), add = TRUE)
  block_qsmooth_fit(block_plan(x), groups, window, endrule, threads, BPPARAM)$weight
}

# ---------------------------------------------------------------------------
# Sinkhorn normalization

sinkhorn_block_task <- function(block, target, args) {
  # the near-constant warning is counted here and given once for the whole
  # matrix (sinkhorn_normalize_blocks()); convergence is reported from the
  # attributes
  near_constant <- 0L
  value <- withCallingHandlers(
    suppressWarnings(do.call(sinkhorn_normalize.default, c(list(block, target = target), args)),
                     classes = "simpleWarning"),
    diffrank_near_constant = function(w) {
      near_constant <<- near_constant + w$n_bad
      invokeRestart("muffleWarning")
    })
  out <- unclass(value)
  attributes(out) <- list(dim = dim(value))
  list(value = out, converged = attr(value, "converged"), error = attr(value, "error"),
       near_constant = near_constant)
}

sinkhorn_normalize_blocks <- function(x, target, args, filepath, BPPARAM) {
  x <- block_input(x)
  filepath <- check_filepath(filepath)
  BPPARAM <- check_bpparam(BPPARAM)
  # the checks of the in-memory function that do not need the data, before
  # any pass over it
  sinkhorn_args("normalize", matrix(as.double(seq_len(nrow(x)))), args$eps, args$weights,
                args$scale, args$power, args$tol, args$max_iter, args$threads)
  progress <- check_flag(args$progress, "progress")
  plan <- block_plan(x)
  sink <- block_sink(plan$x, filepath, plan$width, BPPARAM)
  if (start_workers(BPPARAM)) on.exit(BiocParallel::bpstop(BPPARAM), add = TRUE)
  if (is.null(target)) {
    target <- compress_target(block_fit_target(plan, check_threads(args$threads), BPPARAM)$values)
  }
  args$progress <- FALSE
  converged <- logical(0)
  error <- double(0)
  near_constant <- 0L
  result <- block_write(plan, sinkhorn_block_task, list(target = target, args = args), sink,
                        BPPARAM, function(b, value) {
                          converged <<- c(converged, value$converged)
                          error <<- c(error, value$error)
                          near_constant <<- near_constant + value$near_constant
                        }, progress, "Sinkhorn blocks")
  warn_not_converged(converged, error, list(max_iter = args$max_iter, tol = args$tol))
  warn_near_constant_count(near_constant, ncol(x), "Sinkhorn quantile normalization", args$eps)
  result
}

# ---------------------------------------------------------------------------
# rank kernels

kernel_tile_task <- function(a, b = NULL, kernel, lambda, normalized, u, na, arg_b, threads,
                             top = 0) {
  ma <- rank_input(a, "x", na)
  mb <- if (is.null(b)) NULL else rank_input(b, arg_b, na)
  rank_kernel_matrix(ma, mb, kernel, lambda, normalized, u, threads, FALSE, top,
                     na == "interleave")
}

# The kernel matrix of block inputs in tiles: for a symmetric kernel the tiles
# (I, J), J >= I, of the column blocks, each entry computed as the in-memory
# kernel computes it (the pair in the same order), so that the matrix is
# identical; with y, every tile of x's blocks by y's blocks.
rank_kernel_blocks <- function(x, y, kernel, lambda, normalized, u, na, threads, progress,
                               BPPARAM, top = 0) {
  BPPARAM <- check_bpparam(BPPARAM)
  as_block <- function(v, arg) {
    if (is_block_input(v)) return(block_input(v, arg))
    need_package("DelayedArray", sprintf("`%s` with a block input", arg))
    DelayedArray::DelayedArray(rank_input(v, arg, na))
  }
  if (is.null(x)) abort("`x` must be a numeric vector, matrix or data frame, not NULL.")
  bx <- as_block(x, "x")
  by <- if (is.null(y)) NULL else as_block(y, "y")
  note_orientation(bx, "x")
  if (!is.null(by)) note_orientation(by, "y")
  for (arg in c("x", if (!is.null(by)) "y")) {
    m <- if (arg == "x") bx else by
    if (nrow(m) < 2L) {
      abort("`%s` must have at least 2 features (rows) to rank, not %d.", arg, nrow(m))
    }
    if (nrow(m) >= 2^32 - 1) abort("`%s` has too many features (at most 2^32 - 2).", arg)
  }
  if (!is.null(by)) {
    if (nrow(by) != nrow(bx)) {
      abort("`x` and `y` must have the same number of features (rows), not %d and %d.",
            nrow(bx), nrow(by))
    }
    if (!is.null(rownames(bx)) && !is.null(rownames(by)) &&
          !identical(rownames(bx), rownames(by))) {
      abort("`x` and `y` must have the same features in the same order; their row names differ.")
    }
  }
  if (length(u) > 0L && length(u) != nrow(bx)) {
    abort("`u` must have one weight per feature (%d), not %d.", nrow(bx), length(u))
  }
  check_top(top, nrow(bx))
  # Tiles narrow enough that every worker gets some.
  workers <- if (is.null(BPPARAM)) 1L else BiocParallel::bpnworkers(BPPARAM)
  width <- function(m) {
    w <- block_width(m)
    if (workers > 1L) w <- min(w, max(1L, ceiling(ncol(m) / (2L * workers))))
    as.integer(w)
  }
  px <- block_plan(bx, width(bx))
  py <- if (is.null(by)) px else block_plan(by, width(by))
  pairs <- if (is.null(by)) {
    do.call(rbind, lapply(seq_len(px$n), function(i) cbind(i, i:px$n)))
  } else {
    as.matrix(expand.grid(i = seq_len(px$n), j = seq_len(py$n)))
  }
  items <- lapply(seq_len(nrow(pairs)), function(t) {
    i <- unname(pairs[t, 1L])
    j <- unname(pairs[t, 2L])
    if (is.null(by) && i == j) c(x = i) else
      stats::setNames(c(i, j), c("x", if (is.null(by)) "x" else "y"))
  })
  out <- matrix(0, ncol(bx), if (is.null(by)) ncol(bx) else ncol(by))
  run_blocks(if (is.null(by)) list(x = px) else list(x = px, y = py), items, kernel_tile_task,
             list(kernel = kernel, lambda = lambda, normalized = normalized, u = u, na = na,
                  arg_b = if (is.null(by)) "x" else "y", threads = threads, top = top),
             function(t, value) {
               rows <- px$cols[[pairs[t, 1L]]]
               cols <- py$cols[[pairs[t, 2L]]]
               out[rows, cols] <<- value
               if (is.null(by) && pairs[t, 1L] != pairs[t, 2L]) out[cols, rows] <<- t(value)
             }, BPPARAM, progress, "rank kernel tiles")
  finish_kernel(out, colnames(bx), if (is.null(by)) colnames(bx) else colnames(by), FALSE)
}

# ---------------------------------------------------------------------------
# SUQUAN

suquan_positions_task <- function(block, threads) {
  check_expression_matrix(block)
  suquan_positions(block, threads)
}

# The mean target and the positions of every sample of a block input.
suquan_blocks_prepare <- function(x, f_init, threads, BPPARAM) {
  check_two_features(nrow(x))
  plan <- block_plan(x)
  if (start_workers(BPPARAM)) on.exit(BiocParallel::bpstop(BPPARAM), add = TRUE)
  mean_target <- block_fit_target(plan, threads, BPPARAM)$values
  position <- matrix(0, nrow(x), ncol(x))
  run_blocks(list(x = plan), column_items(plan), suquan_positions_task, list(threads = threads),
             function(i, value) position[, plan$cols[[i]]] <<- value, BPPARAM)
  c(suquan_start(f_init, nrow(x), threads, mean_target), list(position = position))
}

suquan_link_task <- function(block, f, w, b, threads) {
  check_expression_matrix(block, "newdata")
  suquan_link(suquan_positions(block, threads), f, w, b, threads)
}

# The links of the samples of a block input, block by block.
suquan_blocks_link <- function(m, f, w, b, threads, BPPARAM) {
  plan <- block_plan(m)
  eta <- matrix(0, ncol(m), ncol(w))
  run_blocks(list(x = plan), column_items(plan), suquan_link_task,
             list(f = f, w = w, b = b, threads = threads),
             function(i, value) eta[plan$cols[[i]], ] <<- value, BPPARAM)
  eta
}
