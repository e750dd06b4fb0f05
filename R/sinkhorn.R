#' Optimal-transport (Sinkhorn) soft ranks, sorts, quantiles and top-k
#'
#' Differentiable versions of ranking, sorting, quantiles, quantile
#' normalization and top-k selection, obtained from an entropy-regularized
#' optimal transport between the values of `x` and a sorted target measure
#' (Cuturi, Teboul and Vert 2019; Cuturi et al. 2020). Each column of a matrix
#' is treated on its own (features in rows, samples in columns).
#'
#' The values `x` (weights `weights`, default `1/n`) are transported to `m`
#' sorted targets `y = (0, 1/(m-1), ..., 1)` with weights `target_weights`
#' (default `1/m`) at cost `|x - y|^power`, with entropic regularization
#' `eps`. From the transport plan `P`:
#' * `sinkhorn_cdf()`: `F = (P cumsum(b)) / a`, in `[0, 1]`;
#' * `sinkhorn_rank()`: `n F`, in `[0, n]`; with `n_targets = n` it tends to
#'   `rank(x)` as `eps` decreases;
#' * `sinkhorn_sort()`: the `m` values `(t(P) x) / colSums(P)`, increasing; with
#'   `n_targets = n` it tends to `sort(x)`;
#' * `sinkhorn_quantile()`: soft quantiles at levels `probs`, all from one
#'   transport: each level `tau` gets a target of mass `width` (its window
#'   `[tau - width/2, tau + width/2]`, cut at 0, 1 and halfway to the
#'   neighbouring levels), the masses between windows get targets of their
#'   own, and the soft quantile is the mean of the values sent to the level's
#'   target. The targets are `0.5` apart (for one level: masses
#'   `(tau - width/2, width, 1 - tau - width/2)` at `0, 0.5, 1`), so that `eps`
#'   means the same for any number of levels;
#' * `soft_topk()`: the mass each value sends to the upper of two targets with
#'   masses `1 - k/n` and `k/n`: a mask in `[0, 1]` that sums to `k` and tends
#'   to the indicator of the `k` largest values;
#' * [sinkhorn_normalize()]: soft quantile normalization;
#' * `sinkhorn_plan()`: the plan `P` itself (`n x m`), a soft permutation
#'   matrix when `n_targets = n` (`n P` tends to the permutation matrix of
#'   `order(x)` as `eps` decreases, with `P[i, j]` the mass value `i` sends
#'   to the `j`-th smallest target), differentiable like the others. It is
#'   stored dense, with 0 outside the band the solver keeps (entries
#'   negligible at double precision); a warning is given above 1e7 entries.
#'
#' @section Choosing eps:
#' With `scale = "squash"` (the default) each column is first standardized and
#' mapped onto `(0, 1)` by the logistic function, so `eps` is in units of that
#' scale whatever the units of `x`: values whose squashed difference is much
#' larger than `sqrt(eps)` are ranked as the hard operator would. `eps = 0.01`
#' is smooth; `eps = 0.001` is close to the hard operators for a few hundred
#' values; smaller values need more iterations. `scale = "none"` works in
#' the units of `x` (then eps is in squared units of `x`). The permutahedron
#' operators of [soft_rank()] have the same `scale` argument, with their own
#' scale-free default.
#'
#' @section Cost:
#' Each iteration visits, for every value, the targets within the band that
#' matters at double precision (about `sqrt(eps)` wide on the squashed scale,
#' the whole range for `eps >= 0.01`), so it costs at most `n * m` kernel
#' evaluations and less at small `eps`; memory is O(n + m) per column. So
#' that the cost stays linear in `n`, the number of targets `m` is at most 128
#' by default: up to 128 values the targets are one per value (the exact limit
#' as `eps -> 0`), beyond that ranks and CDF values live on a grid of 128
#' quantile levels (a rank is then resolved to about `n / 128` positions, and
#' [sinkhorn_normalize()]'s default target is the mean quantiles at 128
#' levels). Give `n_targets` to change it; the permutahedron operators of
#' [soft_rank()] cost O(n log n) whatever `n`. Columns run in parallel over
#' `threads`; with fewer columns than threads (one long vector, say), the
#' threads share the rows of each iteration of a column instead, with the
#' same results. An interrupt (Ctrl-C) is noticed within a fraction of a
#' second, also inside one long column, and a progress line is shown on long
#' work.
#'
#' @section Convergence:
#' The Sinkhorn iterations run in the log domain from the dual potentials of
#' the hard sort, with Anderson acceleration (and Newton steps on the
#' semi-dual when they slow down, as they do at small `eps`), until the L1
#' error of the target marginal is at most `tol` or `max_iter` iterations were
#' made. A column that this does not solve (it can stall with few targets at
#' very small `eps`) is solved once more from zero potentials by eps scaling
#' (eps decreased in stages down to `eps`), with `max_iter` iterations of its
#' own, and the better of the two is kept. Every
#' result carries the attributes `iterations`, `error` and `converged` (one
#' value per column), and a warning is given when a column did not converge.
#' The rows of the plan are always exact, so CDF values stay in `[0, 1]`.
#'
#' @section Ties and extreme eps:
#' Tied values have identical rows of the cost matrix, hence identical outputs;
#' no tie-breaking is needed. Kernel entries are never formed outside the log
#' domain, so small `eps` gives no overflow: entries that are negligible at
#' double precision are skipped (the kernel is banded for sorted values). `eps`
#' must be at least `1e-10`. As `eps` grows every output tends to a constant
#' (the mean rank, the mean of `x`, `k/n`, the mean target value): when a
#' column of the result has a spread below 1% of that of the same operator at
#' `eps = 0` (the monotone transport of the column to the same targets), a
#' warning says that `eps` is large for these data, as for [soft_rank()].
#' `sinkhorn_quantile()` is judged by the mean values the column sends to its
#' targets (below, at and above each level), which all tend to the mean of
#' `x`, so that a single level is judged too.
#'
#' @param x A numeric vector, matrix or data frame; the columns of a matrix are
#'   independent problems. No missing or infinite values.
#' @param eps Regularization strength, a positive number (see Choosing eps).
#' @param n_targets Number of targets `m` (default: `min(nrow(x), 128)`, see
#'   the section Cost).
#' @param weights `NULL` (equal weights) or positive weights of the values of
#'   each column, length `nrow(x)`; normalized to sum 1.
#' @param target_weights `NULL` (equal) or `m` positive target weights,
#'   normalized to sum 1.
#' @param decreasing `TRUE` to rank (or sort) in decreasing order, as in
#'   [sort()]: the largest value gets rank 1 (CDF values of `-x`).
#' @param scale `"squash"` (the default): standardize each column and map it
#'   onto `(0, 1)` with the logistic function before transport, so that `eps`
#'   has no unit; `"none"`: transport the values of `x` themselves.
#' @param power The cost is `|x - y|^power`, `power >= 1` (2 by default).
#' @param tol Convergence tolerance on the L1 error of the target marginal.
#' @param max_iter Maximum number of Sinkhorn iterations (of each of the two
#'   attempts, see Convergence).
#' @param threads Number of threads, over the columns (or inside a column
#'   when there are fewer columns than threads); see [diffrank_threads()].
#'   Results do not depend on it.
#' @param progress Whether to show progress on work that takes more than a
#'   couple of seconds (interrupts are checked in any case, every fraction of
#'   a second).
#' @return A vector (or a matrix with one column per column of `x`): of the
#'   length of `x` for ranks, CDF values and top-k masks, with its names; of
#'   length `n_targets` for sorts and `length(probs)` for quantiles. A plan is
#'   an `n x m` matrix (values x targets) for a vector `x`, an `n x m x ncol`
#'   array for a matrix. Attributes
#'   `iterations`, `error` and `converged` give the convergence of each column
#'   (`attr(r, "iterations")`); the result prints as its values followed by one
#'   line of these diagnostics (class `sinkhorn_result`). They describe this
#'   result only: arithmetic, comparisons, math functions (`log()`,
#'   `round()`, ...), subsetting and `as.vector()` give plain values, as every
#'   family's results are (see [diffrank_operator], section Values).
#' @references Cuturi M, Teboul O, Vert JP (2019). Differentiable ranking and
#'   sorting using optimal transport. *NeurIPS 2019*. \doi{10.48550/arXiv.1905.11885}
#'
#'   Cuturi M, Teboul O, Niles-Weed J, Vert JP (2020). Supervised quantile
#'   normalization for low-rank matrix approximation. *ICML 2020*.
#'   \doi{10.48550/arXiv.2002.03229}
#' @seealso [sinkhorn_rank_fn()] for derivatives; `soft_rank()` for the
#'   permutahedron-projection operators, exact in O(n log n).
#' @export
#' @examples
#' x <- c(a = 0.3, b = 1.2, c = 1.25, d = -0.7)
#' sinkhorn_rank(x, eps = 1e-3)
#' sinkhorn_rank(x, eps = 0.05)
#' sinkhorn_sort(x, eps = 1e-3)
#' sinkhorn_cdf(x)
#' sinkhorn_quantile(c(1, 5, 2, 8, 3, 9, 4), probs = 0.5, eps = 1e-3)
#' soft_topk(x, k = 2, eps = 1e-3)
#' # a soft permutation matrix: row i is where the mass of x[i] goes
#' round(4 * sinkhorn_plan(x, eps = 0.01), 2)
sinkhorn_rank <- operator_form("sinkhorn_rank", "value")

#' @rdname sinkhorn_rank
#' @export
sinkhorn_cdf <- operator_form("sinkhorn_cdf", "value")

#' @rdname sinkhorn_rank
#' @export
sinkhorn_sort <- operator_form("sinkhorn_sort", "value")

#' @rdname sinkhorn_rank
#' @export
sinkhorn_plan <- operator_form("sinkhorn_plan", "value")

#' @rdname sinkhorn_rank
#' @param probs Quantile levels in `[0, 1]`, in any order (repeated levels
#'   repeat their value); all levels cost one transport.
#' @param width Mass of the target around each level (the fraction of the
#'   values averaged into a soft quantile), in `(0, 1]`; cut halfway to the
#'   neighbouring levels when they are closer than `width`.
#' @export
sinkhorn_quantile <- operator_form("sinkhorn_quantile", "value")

#' @rdname sinkhorn_rank
#' @param k Number of top values to select, in `(0, n)` (need not be whole).
#' @export
soft_topk <- operator_form("soft_topk", "value")

#' Soft quantile normalization by optimal transport
#'
#' A differentiable quantile normalization (Cuturi et al. 2020): every column
#' (sample) of a features x samples matrix is transported to a target
#' distribution given by `m` sorted values `target`; each value is replaced by
#' the mean target value of the mass it sends, `T(x) = (P t) / a`. As `eps`
#' decreases it tends to hard quantile normalization, [normalize_quantiles()].
#'
#' @inheritParams sinkhorn_rank
#' @param x A numeric matrix or data frame (features in rows, samples in
#'   columns), a numeric vector (one sample), or a `SummarizedExperiment`.
#'   Missing values (`NA`, `NaN`) are allowed: each column is normalized on its
#'   observed values (their `weights` renormalized), missing values stay
#'   missing and get a zero gradient, and the default target is computed as in
#'   [normalize_quantiles()]. A `DelayedMatrix` (for example an `HDF5Matrix`)
#'   or a sparse matrix is processed in column blocks (see [diffrank_blocks]).
#' @param target `NULL` for the mean quantiles of `x` (the target of
#'   [normalize_quantiles()], at 128 quantile levels when `x` has more rows,
#'   so that the cost stays linear in the number of rows), a numeric vector of
#'   target values (of any length `m`; sorted), or a [quantile_target()].
#' @param target_weights `NULL` (equal) or `m` positive weights of the target
#'   values, normalized to sum 1.
#' @param BPPARAM For a `DelayedMatrix` or sparse `x` (for example an
#'   HDF5-backed assay): `NULL` (the default) to process its column blocks one
#'   after another in this process, or a BiocParallel back-end
#'   (`BiocParallel::SerialParam()`, `MulticoreParam()`, `SnowParam()`,
#'   `BatchtoolsParam()`) over whose workers the blocks are spread; the result
#'   does not depend on it. Ignored for ordinary matrices, which use `threads`.
#'   See [diffrank_blocks].
#' @param filepath For a `DelayedMatrix` or sparse `x`: `NULL`, or the HDF5
#'   file the normalized values are written to. By default they go to an HDF5
#'   file of HDF5Array's dump directory when `x` is stored on disk, else to
#'   memory; see [diffrank_blocks].
#' @return A matrix (or vector) of the shape of `x` with its dimnames, with the
#'   attributes `iterations`, `error` and `converged` (one value per column);
#'   for a `SummarizedExperiment`, the object with one more assay, `name`. For
#'   a `DelayedMatrix` or sparse `x`, a `DelayedMatrix` with identical values
#'   and no attributes (a warning says when columns did not converge).
#' @seealso [sinkhorn_normalize_fn()] for derivatives with respect to `x`,
#'   `target` and `target_weights`.
#' @export
#' @examples
#' set.seed(1)
#' x <- matrix(rexp(60), nrow = 20, dimnames = list(NULL, c("s1", "s2", "s3")))
#' soft <- sinkhorn_normalize(x, eps = 1e-3)
#' hard <- normalize_quantiles(x)
#' max(abs(soft - hard))
#' # to a fixed target, e.g. standard normal quantiles
#' sinkhorn_normalize(x[, 1], target = qnorm(ppoints(20)), eps = 1e-3)
sinkhorn_normalize <- function(x, ...) {
  UseMethod("sinkhorn_normalize")
}

#' @rdname sinkhorn_normalize
#' @export
sinkhorn_normalize.default <- function(x, target = NULL, eps = 0.01, weights = NULL,
                                       target_weights = NULL, scale = c("squash", "none"),
                                       power = 2, tol = 1e-6, max_iter = 1000L,
                                       threads = diffrank_threads(),
                                       progress = interactive(), BPPARAM = NULL,
                                       filepath = NULL, ...) {
  check_dots_empty(...)
  if (is_block_input(x)) {
    return(sinkhorn_normalize_blocks(
      x, target, list(eps = eps, weights = weights, target_weights = target_weights,
                      scale = scale, power = power, tol = tol, max_iter = max_iter,
                      threads = threads, progress = progress), filepath, BPPARAM))
  }
  check_block_args(BPPARAM, filepath)
  sinkhorn_operator("normalize", x, eps, target = target, weights = weights,
                    target_weights = target_weights, scale = scale, power = power, tol = tol,
                    max_iter = max_iter, threads = threads,
                    progress = progress)$value
}

# the generic shows the default method's arguments (R/args_of_generics.R)
formals(sinkhorn_normalize) <- formals(sinkhorn_normalize.default)

#' @rdname sinkhorn_normalize
#' @param assay.type For a `SummarizedExperiment`, the assay to normalize (a
#'   name or an index), as in Bioconductor's scuttle and scran.
#' @param name For a `SummarizedExperiment`, the name of the assay the
#'   normalized values are stored in (with the convergence attributes).
#' @param ... Must be empty (an error names any argument given there).
#' @export
sinkhorn_normalize.SummarizedExperiment <- assay_method("sinkhorn_normalize.default",
                                                        name = "sinkhorn")

#' Derivatives of the Sinkhorn operators
#'
#' The `_fn()` functions run the forward pass of a Sinkhorn operator once and
#' return an object with its value, a vector-Jacobian product and a
#' Jacobian-vector product that reuse the stored dual potentials; the
#' `_vjp()` functions give the gradient of
#' `sum(v * value)` with respect to `x` in one call, in the same form as
#' `soft_rank_vjp()` so that a loss can be written once for either family.
#'
#' @section Method:
#' The transport plan depends on `x` through the fixed point of the Sinkhorn
#' iterations. Its optimality conditions are differentiated once (implicit
#' function theorem): after fixing the additive gauge of the potentials, the
#' adjoint linear system is solved through its Schur complement on the smaller
#' of the two sides, densely (up to 400 unknowns) or by conjugate gradients
#' otherwise, each step one pass over the kernel's band (about the cost of the
#' forward pass in all, or less).
#' Memory stays O(n + m) per column apart from the dense Schur complement. The
#' derivative is that of the converged operator: use a small `tol` when
#' precise gradients matter. The squashing map, when used, is differentiated
#' too (its mean and standard deviation depend on `x`). The Jacobian-vector
#' product `$jvp(u)` solves the same system for the tangent of the
#' potentials (forward mode, at the cost of one VJP): it is the exact
#' transpose of `$vjp()`.
#'
#' @section Range:
#' With `scale = "squash"`, the operators depend on a column of `x` only
#' through its standardized values, so a column whose largest magnitude is
#' beyond `2^256` or below `2^-256` (values near the largest double, or a
#' spread of subnormal numbers), a cotangent `v` or tangent `u` of such a
#' magnitude, and such `target` values are scaled by a power of two before
#' the derivative is taken and the chain rule is applied after: this is
#' exact, and inputs of ordinary magnitude are not touched. A derivative
#' that is still not finite is truly beyond the doubles (the ranks of
#' subnormal values move by about `1e322` per unit of `x`, say): it comes
#' with a warning of class `diffrank_overflow` that names the input to
#' rescale.
#'
#' @inheritParams sinkhorn_rank
#' @param n_targets Number of targets `m` (default: `min(nrow(x), 128)`, see
#'   the section Cost of [sinkhorn_rank()]).
#' @inheritParams sinkhorn_normalize
#' @param v The vector (or matrix) to multiply the Jacobian with from the
#'   left, of the shape of the operator's value.
#' @return The `_fn()` functions return a [diffrank_operator]:
#'   * `value`: what the operator returns;
#'   * `vjp(v, wrt = "x")`: the gradient of `sum(v * value)` with respect to
#'     `x` (shaped like `x`), `"target_weights"` (the raw weights given, or
#'     equal weights; summed over columns), `"target"` (for
#'     `sinkhorn_normalize_fn()`, in the order given) or `"all"` (a list);
#'     `$wrt` lists what each operator is differentiable in;
#'   * `jvp(u)`: the Jacobian-vector product `J %*% u` for a direction `u`
#'     shaped like `x` (0 where `x` is missing), shaped like the value;
#'   * `jacobian()`: the Jacobian with respect to `x`, built from products,
#'     for small problems.
#'
#'   The `_vjp()` functions return the gradient with respect to `x`.
#' @export
#' @examples
#' x <- c(0.3, 1.2, 1.25, -0.7)
#' op <- sinkhorn_rank_fn(x, eps = 0.05, tol = 1e-9)
#' op$value
#' op$vjp(c(1, 0, 0, 0))   # gradient of the first soft rank
#' op$jvp(c(1, 0, 0, 0))   # how every soft rank moves with the first value
#' sinkhorn_rank_vjp(x, c(1, 0, 0, 0), eps = 0.05, tol = 1e-9)
#' # gradient of a soft quantile normalization with respect to its target
#' op <- sinkhorn_normalize_fn(x, target = c(0, 1, 2, 3), eps = 0.05, tol = 1e-9)
#' op$vjp(rep(1, 4), wrt = "target")
sinkhorn_rank_fn <- operator_form("sinkhorn_rank", "fn")

#' @rdname sinkhorn_rank_fn
#' @export
sinkhorn_cdf_fn <- operator_form("sinkhorn_cdf", "fn")

#' @rdname sinkhorn_rank_fn
#' @export
sinkhorn_sort_fn <- operator_form("sinkhorn_sort", "fn")

#' @rdname sinkhorn_rank_fn
#' @export
sinkhorn_plan_fn <- operator_form("sinkhorn_plan", "fn")

#' @rdname sinkhorn_rank_fn
#' @inheritParams sinkhorn_quantile
#' @export
sinkhorn_quantile_fn <- operator_form("sinkhorn_quantile", "fn")

#' @rdname sinkhorn_rank_fn
#' @inheritParams soft_topk
#' @export
soft_topk_fn <- operator_form("soft_topk", "fn")

#' @rdname sinkhorn_rank_fn
#' @export
sinkhorn_normalize_fn <- operator_form("sinkhorn_normalize", "fn")

#' @rdname sinkhorn_rank_fn
#' @export
sinkhorn_rank_vjp <- operator_form("sinkhorn_rank", "vjp")

#' @rdname sinkhorn_rank_fn
#' @export
sinkhorn_cdf_vjp <- operator_form("sinkhorn_cdf", "vjp")

#' @rdname sinkhorn_rank_fn
#' @export
sinkhorn_sort_vjp <- operator_form("sinkhorn_sort", "vjp")

#' @rdname sinkhorn_rank_fn
#' @export
sinkhorn_plan_vjp <- operator_form("sinkhorn_plan", "vjp")

#' @rdname sinkhorn_rank_fn
#' @export
sinkhorn_quantile_vjp <- operator_form("sinkhorn_quantile", "vjp")

#' @rdname sinkhorn_rank_fn
#' @export
soft_topk_vjp <- operator_form("soft_topk", "vjp")

#' @rdname sinkhorn_rank_fn
#' @export
sinkhorn_normalize_vjp <- operator_form("sinkhorn_normalize", "vjp")

#' Soft quantile loss for least quantile regression
#'
#' The soft quantile at level `probs` of the absolute residuals
#' `|response - pred|`, with its gradient with respect to `pred`: minimizing
#' it over a model's parameters gives a least quantile (for `probs = 0.5`,
#' least median) regression, robust to a fraction of gross outliers up to
#' about `1 - probs`
#' (Cuturi, Teboul and Vert 2019, section 5). Pass `value` and `gradient` to
#' [stats::optim()] through the chain rule, as in the example.
#'
#' @param pred,response Numeric vectors of predictions and observed values.
#' @param probs Quantile level of the absolute residuals, one number in
#'   `(0, 1)` (formerly `tau`, still accepted with a warning for one
#'   release).
#' @param ... Only the former name `tau` of `probs`; anything else is an
#'   error.
#' @param weights `NULL` (equal masses) or one positive weight per
#'   observation: the soft quantile is that of the weighted residuals.
#' @param tol Tolerance on the transport's marginals. Tighter than the
#'   operators' default (`1e-6`): an optimizer such as BFGS needs the
#'   gradient accurate beyond the value.
#' @inheritParams sinkhorn_quantile
#' @return A list with `value` (the soft quantile, a number) and `gradient`
#'   (its derivative with respect to `pred`, a vector), and the convergence
#'   information as attributes of `value`.
#' @export
#' @examples
#' set.seed(1)
#' n <- 100
#' X <- cbind(1, rnorm(n))
#' y <- drop(X %*% c(1, 2)) + rnorm(n, sd = 0.1)
#' bad <- 1:30
#' y[bad] <- y[bad] + 10                     # 30% gross outliers
#' loss <- function(beta) soft_quantile_loss(X %*% beta, y, eps = 1e-3)
#' fit <- optim(c(0, 0), function(b) loss(b)$value,
#'              function(b) drop(crossprod(X, loss(b)$gradient)), method = "BFGS")
#' rbind(lqr = fit$par, ls = coef(lm(y ~ X - 1)))
soft_quantile_loss <- function(pred, response, probs = 0.5, width = 0.05, eps = 0.01,
                               weights = NULL, scale = c("squash", "none"), power = 2,
                               tol = 1e-8, max_iter = 1000L, threads = diffrank_threads(),
                               progress = interactive(), ...) {
  do.call(check_dots_empty, take_renamed(list(...), "tau", "probs", "soft_quantile_loss()"))
  pred <- check_numeric_vector(pred, "pred")
  response <- check_numeric_vector(response, "response")
  if (length(pred) != length(response)) {
    abort("`pred` and `response` must have the same length, not %d and %d.", length(pred),
          length(response))
  }
  if (length(pred) == 0L) abort("`pred` must have at least one value.")
  probs <- check_number(probs, "probs", lower = 0, upper = 1, allow_lower = FALSE)
  if (probs >= 1) abort("`probs` must be below 1, not %s.", format(probs))
  r <- response - pred
  op <- sinkhorn_quantile_fn(abs(r), probs = probs, width = width, eps = eps, weights = weights,
                             scale = scale, power = power, tol = tol, max_iter = max_iter,
                             threads = threads, progress = progress)
  g <- vjp_naming(op, 1, c("pred", "response"))
  list(value = op$value, gradient = -sign(r) * g)
}

# ---------------------------------------------------------------------------
# helpers

# op$vjp(v) for a loss built on a Sinkhorn operator: a non-finite gradient
# is reported once, naming the loss's own arguments instead of the
# operator's `x`.
vjp_naming <- function(op, v, inputs) {
  g <- withCallingHandlers(op$vjp(v), diffrank_overflow = function(w) {
    invokeRestart("muffleWarning")
  })
  warn_nonfinite(g, inputs)
}

# Positive masses normalized to sum 1 (equal when NULL), scaled by their
# maximum first so that neither the sum nor the division overflows.
sinkhorn_weights <- function(w, len, arg, len_from = NULL) {
  if (is.null(w)) return(rep(1 / len, len))
  if (!is.numeric(w) || is.object(w) || !is.null(dim(w)) || length(w) != len) {
    abort("`%s` must be NULL or a numeric vector of length %d%s, not %s.", arg, len,
          if (is.null(len_from)) "" else sprintf(" (%s)", len_from), describe(w))
  }
  if (anyNA(w) || any(!is.finite(w)) || any(w <= 0)) {
    abort("`%s` must contain only positive finite values.", arg)
  }
  w <- as.double(w) / max(w)
  w / sum(w)
}

# The checked input and options shared by every Sinkhorn operator.
sinkhorn_args <- function(kind, x, eps, weights, scale, power, tol, max_iter, threads) {
  mat <- as_numeric_matrix(x, "x")
  n <- nrow(mat)
  if (n == 0L || ncol(mat) == 0L) {
    abort("`x` must have at least one value (and one column), not %d x %d.", n, ncol(mat))
  }
  if (anyNA(mat)) {
    if (kind != "normalize") {
      abort("`x` must not contain missing values (NA or NaN); remove them first.")
    }
    empty <- which(colSums(!is.na(mat)) == 0L)
    if (length(empty) > 0L) {
      abort("`x` has %d column(s) with no observed value (the first is %s); drop them first.",
            length(empty), if (!is.null(colnames(mat))) colnames(mat)[empty[1L]] else empty[1L])
    }
  }
  if (any(is.infinite(mat))) abort("`x` must not contain infinite values.")
  eps <- check_number(eps, "eps", lower = 0, allow_lower = FALSE)
  if (eps < 1e-10) {
    abort("`eps` must be at least 1e-10, not %s; use rank() or sort() for the hard operators.",
          format(eps))
  }
  list(mat = mat, shape = input_shape(x, mat), a = sinkhorn_weights(weights, n, "weights"),
       threads = check_threads(threads),
       options = list(eps = eps, power = check_number(power, "power", lower = 1),
                      tol = check_number(tol, "tol", lower = 0, allow_lower = FALSE),
                      max_iter = check_whole(max_iter, "max_iter"),
                      scale = match_choice(scale, c("squash", "none"), "scale")))
}

# The transport problem of an operator, with targets on a grid of [0, 1]
# (quantiles: see quantile_problem()), as list(y, b, w, cumsum, rows), which
# src/sinkhorn.cpp reads into a diffrank::SinkhornProblem
# (inst/include/diffrank/sinkhorn_operator.hpp). The list has one problem.
sinkhorn_problems <- function(kind, mat, n_targets = NULL, target_weights = NULL, target = NULL,
                              probs = NULL, width = NULL, k = NULL, threads = 1L) {
  n <- nrow(mat)
  grid <- function(m) if (m == 1L) 0.5 else seq(0, 1, length.out = m)
  problem <- function(b, w = NULL, cumsum = FALSE) {
    list(y = grid(length(b)), b = b, w = w, cumsum = cumsum, rows = NULL)
  }
  switch(kind,
    rank = , cdf = , sort = , plan = {
      m <- if (is.null(n_targets)) default_targets(n) else check_whole(n_targets, "n_targets")
      # about 35 doubles per value and target in each column being solved
      # (bench: 280 bytes per target), plus the m x ncol sorted output; a
      # plan is n x m per column, plus two copies per column being solved
      check_memory(8 * (as.double(n) + m) * (40 * min(ncol(mat), threads) + ncol(mat)),
                   "n_targets", m)
      if (kind == "plan") warn_plan_size(n, m, ncol(mat), threads)
      b <- sinkhorn_weights(target_weights, m, "target_weights", "`n_targets`")
      list(problem(b, cumsum = kind %in% c("rank", "cdf")))
    },
    normalize = {
      t <- sinkhorn_target(target, mat, threads)
      b <- sinkhorn_weights(target_weights, length(t$values), "target_weights")
      structure(list(problem(b, w = t$values)), order = t$order)
    },
    topk = {
      if (is.null(k)) abort("`k` is missing: give the number of values to select.")
      k <- check_number(k, "k", lower = 0, upper = n, allow_lower = FALSE)
      if (k >= n) abort("`k` must be below the number of values (%d), not %s.", n, format(k))
      list(problem(c(1 - k / n, k / n), w = c(0, 1)))
    },
    quantile = {
      if (is.null(probs) || !is.numeric(probs) || is.object(probs) || length(probs) == 0L ||
          anyNA(probs) || any(probs < 0) || any(probs > 1)) {
        abort("`probs` must be a numeric vector of levels in [0, 1], not %s.", describe(probs))
      }
      width <- check_number(width, "width", lower = 0, upper = 1, allow_lower = FALSE)
      structure(list(quantile_problem(as.double(probs), width)), probs = as.double(probs))
    })
}

# The one transport problem of sinkhorn_quantile() at all levels `probs`:
# each distinct level tau gets a target of mass `width` centred on it (its
# window [tau - width/2, tau + width/2], cut at 0, 1 and halfway to the
# neighbouring levels, so that windows never overlap), and the masses
# between windows go to targets of their own; empty masses are dropped. The
# targets are 0.5 apart, as for one level (targets 0, 0.5, 1): `eps`
# compares neighbouring targets the same way whatever the number of levels.
# `rows` gives the window target of each level, in the user's order.
quantile_problem <- function(probs, width) {
  levels <- sort(unique(probs))
  halfway <- (levels[-1L] + levels[-length(levels)]) / 2
  lo <- pmax(0, levels - width / 2, c(0, halfway))
  hi <- pmin(1, levels + width / 2, c(halfway, 1))
  masses <- diff(c(0, rbind(lo, hi), 1))
  window <- c(FALSE, rep(c(TRUE, FALSE), length(levels)))
  keep <- masses > 0
  target <- cumsum(keep)
  list(y = 0.5 * (seq_len(sum(keep)) - 1), b = masses[keep] / sum(masses[keep]), w = NULL,
       cumsum = FALSE, rows = target[window][match(probs, levels)])
}

# A plan is dense (n x m per column): an error when it cannot fit in memory,
# a warning above 1e7 entries (80 MB), where the operators that read the plan
# (ranks, sorts, quantiles) are the better choice.
max_plan_entries <- 1e7
warn_plan_size <- function(n, m, columns, threads) {
  entries <- as.double(n) * m * columns
  check_memory(8 * (entries + 2 * as.double(n) * m * min(columns, threads)), "n_targets", m)
  if (entries > max_plan_entries) {
    message <- sprintf(paste0("The plan has %s entries (%.0f MB): %d values x %d targets x %d ",
                              "column(s). Use fewer `n_targets`, or sinkhorn_rank(), ",
                              "sinkhorn_sort() or sinkhorn_quantile(), which read the plan ",
                              "without storing it."),
                       format(entries, big.mark = ",", scientific = FALSE), 8 * entries / 2^20,
                       n, m, columns)
    warning(structure(class = c("diffrank_plan_size", "warning", "condition"),
                      list(message = message, call = NULL)))
  }
}

# Number of targets of the rank, CDF, sort and plan operators when n_targets is not
# given: n (the exact limit as eps -> 0) up to 128 values, then 128 quantile
# levels, which keeps the cost of an iteration linear in n (a 50,000-value
# column costs about 0.25 s).
max_default_targets <- 128L
default_targets <- function(n) min(n, max_default_targets)

# The target values of sinkhorn_normalize(), sorted, and the order that
# sorted the user's target (NULL when it needed none).
sinkhorn_target <- function(target, mat, threads) {
  if (is.null(target)) return(list(values = compress_target(qn_fit_target(mat, threads))))
  if (inherits(target, "quantile_target")) return(list(values = target_values(target)))
  if (!is.numeric(target) || is.object(target) || !is.null(dim(target)) ||
      length(target) == 0L) {
    abort("`target` must be NULL, a numeric vector or a quantile_target, not %s.",
          describe(target))
  }
  if (anyNA(target) || any(is.infinite(target))) {
    abort("`target` must contain only finite values.")
  }
  ord <- order(target)
  list(values = as.double(target)[ord], order = ord)
}

# The mean-quantile target of a long column, at most 128 values: its values at
# 128 evenly spaced quantile levels (equal masses), so that the cost of an
# iteration stays linear in the number of features.
compress_target <- function(values, m = max_default_targets) {
  n <- length(values)
  if (n <= m) return(values)
  stats::approx(seq(0, 1, length.out = n), values, xout = (seq_len(m) - 0.5) / m)$y
}

# Runs the forward pass of a Sinkhorn operator and builds its
# diffrank_operator; the operator itself, `decreasing` and the chain rules
# of its derivatives included, is SinkhornOperator of
# inst/include/diffrank/sinkhorn_operator.hpp. (The first argument is not
# called `kind`, which `k` of soft_topk() would match partially.)
sinkhorn_operator <- function(operator, x, eps, weights = NULL, scale = "squash", power = 2,
                              tol = 1e-6, max_iter = 1000L, threads = diffrank_threads(),
                              decreasing = FALSE, progress = FALSE, ...) {
  kind <- operator
  args <- sinkhorn_args(kind, x, eps, weights, scale, power, tol, max_iter, threads)
  args$options$progress <- check_flag(progress, "progress")
  decreasing <- check_flag(decreasing, "decreasing")
  problems <- sinkhorn_problems(kind, args$mat, ..., threads = args$threads)
  options <- c(args$options, list(decreasing = decreasing,
                                  target_order = attr(problems, "order")))
  fit <- sinkhorn_forward_cpp(args$mat, args$a, kind, problems, options, args$threads)
  value <- sinkhorn_shape(fit$value, kind, args, problems)
  attr(value, "iterations") <- fit$iterations
  attr(value, "error") <- fit$error
  attr(value, "converged") <- fit$converged
  oldClass(value) <- "sinkhorn_result"
  warn_not_converged(fit$converged, fit$error, args$options)
  # missing values of x (normalize) stay missing; anything else not finite
  # (scale = "none" near the largest double) is an overflow
  if (nonfinite_kind_cpp(fit$value) != 0L) {
    warn_nonfinite(if (anyNA(args$mat)) fit$value[!is.na(args$mat)] else fit$value, "x")
  }
  # the transport saw -x for a decreasing order (but sorts)
  sinkhorn_warn_near_constant(kind, fit, args$mat, args, problems,
                              sign = if (decreasing && kind != "sort") -1 else 1)
  vjp_impl <- sinkhorn_vjp_impl(kind, fit$state, args, list(...))
  new_operator(
    value = value, input = args$shape,
    vjp_impl = vjp_impl,
    jvp_impl = sinkhorn_jvp_impl(fit$state, args, value,
                                 if (is.null(list(...)$target)) "x" else "target"),
    # one overflow warning for the whole Jacobian, not one per row
    # (a plan's has one row per entry of the plan of a column, in
    # column-major order)
    jacobian_impl = function() {
      vjp_x <- function(v) vjp_impl(v, "x", warn = FALSE)$x
      jac <- if (kind == "plan") {
        plan_jacobian(vjp_x, value, args$shape)
      } else {
        jacobian_from_vjp(vjp_x, value_dim(value), args$shape, TRUE)
      }
      warn_nonfinite(jac, "x")
    },
    wrt = c("x", switch(kind, rank = , cdf = , sort = , plan = , normalize = "target_weights"),
            if (kind == "normalize") "target"),
    label = sprintf("sinkhorn_%s", kind),
    settings = c(args$options[c("eps", "scale")], list(targets = length(problems[[1L]]$b))),
    details = sprintf("iterations %s; max marginal error %.3g; %s",
                      paste(unique(range(fit$iterations)), collapse = "-"), max(fit$error),
                      if (all(fit$converged)) "converged" else "NOT converged"),
    diagnostics = c(fit[c("iterations", "error", "converged")],
                    list(targets = length(problems[[1L]]$b))))
}

sinkhorn_vjp_impl <- function(kind, state, args, extra) {
  raw <- extra$target_weights
  raw_sum <- if (is.null(raw)) 1 else sum(as.double(raw) / max(raw)) * max(raw)
  target_name <- if (is.null(extra$target)) "x" else "target"
  force(state)
  function(v, wrt, warn = TRUE) {
    g <- sinkhorn_vjp_cpp(state, matrix(v, ncol = args$shape$ncol), raw_sum, args$threads)
    grads <- list(x = shape_like_input(g$x, args$shape),
                  target_weights = if (kind %in% c("rank", "cdf", "sort", "plan", "normalize")) {
                    g$target_weights
                  },
                  target = if (kind == "normalize") g$target)
    grads <- grads[!vapply(grads, is.null, TRUE)]
    # missing values of x (normalize) have a zero gradient, never NA; the
    # check in C++ allocates nothing on the usual, finite, result
    asked <- grads[if (wrt == "all") names(grads) else wrt]
    if (warn && any(vapply(asked, nonfinite_kind_cpp, 0L) != 0L)) {
      warn_nonfinite(unlist(asked, use.names = FALSE),
                     rescaled_inputs(g, "v_scaled", "v", target_name))
    }
    grads
  }
}

# The forward-mode product J u for a tangent u shaped like x, through the
# same implicit derivative as the VJP (SinkhornOperator), shaped like the
# value with its names (not its convergence attributes).
sinkhorn_jvp_impl <- function(state, args, value, target_name) {
  force(state)
  function(u) {
    out <- sinkhorn_jvp_cpp(state, matrix(u, ncol = args$shape$ncol), args$threads)
    d <- out$value
    if (is.null(dim(value))) {
      d <- as.vector(d)
      names(d) <- names(value)
    } else {
      dim(d) <- dim(value)
      dimnames(d) <- dimnames(value)
    }
    if (nonfinite_kind_cpp(d) == 0L) return(d)
    warn_nonfinite(d, rescaled_inputs(out, "u_scaled", "u", target_name))
  }
}

# The inputs to name when a derivative is not finite: those the C++ core
# rescaled by a power of two because their magnitude was extreme (x, the
# cotangent or tangent `direction`, the target values), else x and
# `direction`. `flags` is the result of sinkhorn_vjp_cpp() or
# sinkhorn_jvp_cpp(); `scaled` names its flag for the direction.
# `target` names the input the target values come from ("x" when they are
# the mean quantiles of x).
rescaled_inputs <- function(flags, scaled, direction, target = "target") {
  inputs <- c(if (isTRUE(flags$x_scaled)) "x", if (isTRUE(flags[[scaled]])) direction,
              if (isTRUE(flags$target_scaled)) target)
  if (length(inputs) == 0L) c("x", direction) else unique(inputs)
}

# The value in the shape of x: one row per value of x for ranks, CDFs,
# normalized values and top-k masks; one per target or quantile level else.
sinkhorn_shape <- function(value, kind, args, problems) {
  if (kind %in% c("rank", "cdf", "normalize", "topk")) {
    return(shape_like_input(value, args$shape))
  }
  if (kind == "plan") return(plan_shape(value, args$shape, length(problems[[1L]]$b)))
  rownames(value) <- if (kind == "quantile") {
    paste0(format(100 * attr(problems, "probs"), trim = TRUE, digits = 7), "%")
  }
  out <- shape_like_input(value, args$shape, row_names = FALSE)
  if (args$shape$vector && kind == "quantile") names(out) <- rownames(value)
  if (!args$shape$vector && kind == "quantile") rownames(out) <- rownames(value)
  out
}

# A plan's values (n * m rows, one column per column of x) as an n x m
# matrix for a vector x, an n x m x ncol array for a matrix, with the names
# of the values (rows) and of the columns of x (third dimension).
plan_shape <- function(value, shape, m) {
  n <- shape$nrow
  values <- if (shape$vector) shape$names else shape$dimnames[[1L]]
  names <- if (shape$vector) list(values, NULL) else list(values, NULL, shape$dimnames[[2L]])
  dim(value) <- c(n, m, if (!shape$vector) shape$ncol)
  if (!all(vapply(names, is.null, TRUE))) dimnames(value) <- names
  value
}

#' @rdname sinkhorn_rank
#' @param e1,e2 Operands of arithmetic or a comparison.
#' @export
Ops.sinkhorn_result <- function(e1, e2) {
  # a value derived from a result has none of its convergence figures
  if (missing(e2)) return(get(.Generic)(plain_values(e1)))
  get(.Generic)(plain_values(e1), plain_values(e2))
}

#' @rdname sinkhorn_rank
#' @export
Math.sinkhorn_result <- function(x, ...) {
  get(.Generic)(plain_values(x), ...)
}

# A sinkhorn_result without its class and convergence attributes (names,
# dim and dimnames kept); anything else as it is.
plain_values <- function(x) {
  if (!inherits(x, "sinkhorn_result")) return(x)
  for (name in c("iterations", "error", "converged")) attr(x, name) <- NULL
  oldClass(x) <- NULL
  x
}

#' @rdname sinkhorn_rank
#' @param ... For `print()`, passed to [print.default()] (for example
#'   `digits`).
#' @export
print.sinkhorn_result <- function(x, ...) {
  print(plain_values(x), ...)
  it <- range(attr(x, "iterations"))
  converged <- attr(x, "converged")
  cat(sprintf("<Sinkhorn: %s iterations, marginal error at most %.2g, %s>\n",
              if (it[1L] == it[2L]) it[1L] else paste(it, collapse = " to "),
              max(attr(x, "error")),
              if (all(converged)) "converged" else
                sprintf("%d of %d column(s) NOT converged", sum(!converged), length(converged))))
  invisible(x)
}

# The near-constant rule of warn_near_constant() (R/checks.R) for a Sinkhorn
# operator: each column of the value against the same operator at eps = 0,
# the monotone (hard) transport of the column to the same targets. A soft
# quantile is judged by the mean values sent to its targets (fit$means), which
# all tend to the mean of x as eps grows, so that one level can be judged; a
# plan by the mean target position each value is sent to, (P y) / a, which
# tends to the mean target position. The hard result is computed only for the columns whose spread is below 1%
# of a bound on the hard result's (the range of the values it averages), so
# that the rule costs one pass over the value on ordinary output. `sign` is
# -1 when the transport saw -x (a decreasing order).
sinkhorn_warn_near_constant <- function(kind, fit, mat, args, problems, sign = 1) {
  a <- args$a
  pr <- problems[[1L]]
  value <- switch(kind, quantile = fit$means,
                  plan = plan_positions(fit$value, pr$y, a), fit$value)
  w <- switch(kind, rank = , cdf = cumsum(pr$b), topk = , normalize = pr$w, plan = pr$y, NULL)
  s <- apply(value, 2L, function(v) if (length(v) > 1L) stats::sd(v, na.rm = TRUE) else 0)
  n <- nrow(mat)
  # the sample sd of values in [lo, hi] is at most hi - lo
  bound <- if (is.null(w)) {
    apply(mat, 2L, function(col) diff(range(col, na.rm = TRUE)))
  } else {
    rep(diff(range(w)) * (if (kind == "rank") n else 1), ncol(mat))
  }
  candidates <- which(s < near_constant_fraction * bound)
  if (length(candidates) == 0L) return(invisible())
  reference <- matrix(0, nrow(value), ncol(value))
  for (j in candidates) {
    col <- sign * mat[, j]
    seen <- !is.na(col)
    aj <- a[seen] / sum(a[seen])
    reference[, j] <- if (is.null(w)) {
      unlist(lapply(problems, function(p) hard_transport(col[seen], aj, p$b)))
    } else {
      hard <- rep(NA_real_, n)
      hard[seen] <- hard_transport(col[seen], aj, pr$b, w) * (if (kind == "rank") n else 1)
      hard
    }
  }
  what <- switch(kind, rank = "Sinkhorn rank", cdf = "Sinkhorn CDF", sort = "Sinkhorn sort",
                 plan = "Sinkhorn transport plan (the mean target position of each value)",
                 quantile = "Sinkhorn quantile (the mean values sent to its targets)",
                 topk = "soft top-k mask", normalize = "Sinkhorn quantile normalization")
  if (anyNA(value)) {
    # missing values (normalize) are padded with the column's mean, in the
    # value and its reference alike
    value <- apply(value, 2L, function(v) replace(v, is.na(v), mean(v, na.rm = TRUE)))
    reference <- apply(reference, 2L, function(v) replace(v, is.na(v), mean(v, na.rm = TRUE)))
  }
  warn_near_constant(value, reference, what, args$options$eps)
}

# The operator at eps = 0: the monotone transport of the values x (weights a,
# summing to 1) to targets of weights b. With `w`, the mean of w over the mass
# each value sends (tied values share their mass); else the mean of x over
# the mass each target receives (the hard sort at the targets' levels).
hard_transport <- function(x, a, b, w = NULL) {
  o <- order(x)
  xs <- x[o]
  cum_a <- c(0, cumsum(a[o]))
  cum_b <- c(0, cumsum(b))
  cum_a <- cum_a / cum_a[length(cum_a)]
  cum_b <- cum_b / cum_b[length(cum_b)]
  if (is.null(w)) {
    integral <- stats::approx(cum_a, c(0, cumsum(a[o] * xs)), xout = cum_b, ties = "ordered")$y
    return(diff(integral) / b)
  }
  # runs of tied values: from the start of the first to the end of the last
  last <- c(xs[-1L] != xs[-length(xs)], TRUE)
  run <- cumsum(c(TRUE, last[-length(last)]))
  ends <- cum_a[-1L][last]
  starts <- c(0, ends[-length(ends)])
  integral <- function(t) stats::approx(cum_b, c(0, cumsum(b * w)), xout = t, ties = "ordered")$y
  means <- (integral(ends) - integral(starts)) / (ends - starts)
  out <- numeric(length(x))
  out[o] <- means[run]
  out
}

# The mean target position (P y) / a of every value of every column of a
# plan (fit$value: n * m rows, one column per column of x), n x ncol.
plan_positions <- function(plans, y, a) {
  n <- length(a)
  out <- matrix(0, n, ncol(plans))
  for (j in seq_len(ncol(plans))) {
    p <- plans[, j]
    dim(p) <- c(n, length(y))
    out[, j] <- drop(p %*% y) / a
  }
  out
}

warn_not_converged <- function(converged, error, options) {
  if (all(converged)) return(invisible())
  warning(sprintf(paste0("Sinkhorn did not converge for %d of %d column(s) within %d ",
                         "iterations (marginal error %.3g > tol = %.3g); increase `max_iter` ",
                         "or `eps`, or loosen `tol`."),
                  sum(!converged), length(converged), options$max_iter, max(error),
                  options$tol), call. = FALSE)
}
