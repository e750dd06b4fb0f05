#' Quantile matrix factorization (QMF)
#'
#' Low-rank approximation of a features x samples matrix through learned
#' monotone maps, one per feature (Cuturi, Teboul, Niles-Weed and Vert 2020):
#' \deqn{X \approx T(U V),}{X ~ T(U V),}
#' with `U` (features x `rank`), `V` (`rank` x samples), and `T` applying to
#' each row `r` of `U V` its own soft quantile normalization onto `m =
#' n_quantiles` learned increasing target values `q_r` (with target weights
#' `b_r`, learned unless `learn_weights = FALSE`). A row whose values are a
#' strongly non-linear (exponential, cubic, step-like) but increasing function
#' of a low-rank signal is then reconstructed at the rank of the signal, where
#' a truncated SVD or an NMF needs many more components: in the example below
#' (the exponential of a rank-2 signal, 30 x 40), `qmf(x, rank = 2)` leaves
#' 0.13% of the variance unexplained, the truncated SVD of the row-centred
#' data 19% at rank 2, 5% at rank 3 and 0.25% at rank 6. On data that are
#' close to linear (log expression values) QMF is about as good as the SVD.
#'
#' @section Model:
#' Row `r` of `U V`, `z = t(V) %*% U[r, ]`, is transported to the grid
#' `y = (0, 1/(m - 1), ..., 1)` with weights `b_r` by entropic optimal
#' transport (see [sinkhorn_normalize()]; cost `(z - y)^2`, regularization
#' `eps`, no squashing), and each value is replaced by the mean target value
#' of the mass it sends: `xhat_r = (P q_r) / a`, `a = 1/n`. The plan does not
#' change when `z` is shifted; the spread of `z` against `sqrt(eps)` sets how
#' sharp the map is (a large spread gives a hard quantile normalization, a
#' small one an almost affine map), and the penalty on `U` and `V` keeps it
#' finite. The targets are `q_r = center_r + scale_r * cumsum(c(t_1,
#' softplus(t_2), ..., softplus(t_m)))` from free parameters `t` (with
#' `softplus(t_1)` for the KL loss, so that every fitted value is positive)
#' and `b_r = softmax(beta_r)`; `center_r` and `scale_r` are the row's mean
#' and standard deviation (squared loss) or 0 and its mean (KL loss).
#'
#' The objective is
#' \deqn{\frac{1}{c\,|\Omega|}\sum_{(r,i)\in\Omega} \ell(x_{ri}, \hat x_{ri})
#'   + \lambda\left(\frac{\|U\|_F^2}{d} + \frac{\|V\|_F^2}{n}\right)}{
#' (1 / (c |Omega|)) sum over (r, i) in Omega of l(x_ri, xhat_ri)
#'   + lambda (||U||_F^2 / d + ||V||_F^2 / n)}
#' over the observed entries `Omega`, with `l(x, xhat) = (x - xhat)^2` and `c`
#' the mean variance of the rows (`loss = "squared"`, so that the data term
#' reads as a fraction of the variance), or the generalized Kullback-Leibler
#' divergence `x log(x / xhat) - x + xhat` and `c` the mean of `x` (`loss =
#' "kl"`, for non-negative data; `U` and `V` are then kept non-negative, as
#' in NMF).
#'
#' @section Fitting:
#' Gradients with respect to `U`, `V`, the targets and the weights go through
#' the implicit derivative of each row's transport (an `m x m` Schur
#' complement, cheap for small `m`). `optimizer = "adam"` visits the rows in
#' random mini-batches of `batch_size` (an epoch is one pass over all rows;
#' each batch updates its rows of `U`, their targets and weights, and `V`);
#' `"lbfgs"` runs [stats::optim()]'s `"L-BFGS-B"` on the full objective (an
#' epoch is one evaluation of the objective and its gradient, line-search
#' trials included, and the fit keeps the best point evaluated). The
#' objective is a fraction of the variance (see above), and a fit stops when
#' its mean decrease per epoch over the last 5 epochs falls below `tol`
#' times the objective, or times 0.01 when the objective is lower (for Adam,
#' the objective summed over the batches of the epoch), or after
#' `max_epochs` epochs with a warning; L-BFGS also stops when it can make no
#' more progress. The floor keeps a near-exact fit going while it still
#' gains in absolute terms (halving a 0.5% error is worth the epochs), and
#' stops a fit of data far from low-rank once its gains are small relative
#' to what it leaves unexplained (where further epochs mostly fit the
#' noise). Adam's step
#' size is halved after an epoch that raised the objective. The default,
#' L-BFGS from the rank-based start below with learned weights and a small
#' `eps`, reaches in a few dozen epochs what Adam needs hundreds for; Adam
#' may suit matrices with very many rows (an epoch makes `d / batch_size`
#' steps). Rows of a batch run
#' in parallel over `threads`; the gradient of `V` is summed in a fixed
#' order, so a fit is identical for any number of threads, and `set.seed()`
#' before the call reproduces it (Adam's order of the rows comes from R's
#' random number generator; the starts use none).
#'
#' @section Initialization:
#' For the squared loss, `U` and `V` have two starts. `init = "ranks"` is
#' the truncated SVD of the rows' normal scores (`qnorm((rank - 1/2) / n)`
#' of each row's observed values, scaled to unit standard deviation,
#' missing entries set to 0): an increasing map of a row does not change its
#' ranks, so a low-rank signal seen through monotone maps stays about
#' low-rank in the scores, where it does not in the data. `init = "svd"` is
#' the truncated SVD of the row-centred data (missing entries set to the
#' row's mean), the best rank-`rank` fit in the units of the loss, each row
#' of `U` divided by the row's standard deviation (the targets' unit). Each
#' is split between `U` and `V` so as to minimize the penalty. By default
#' (`init = "auto"`) both starts are built with their targets and the fit
#' starts from the one whose objective is lower: the rank-based start on
#' rows seen through strong monotone maps, the SVD start on data close to
#' linear in its units (log-expression data, for example), where the fit
#' then leaves less unexplained than the SVD. The choice is in the fit's
#' `start`. For the KL loss they start from an NMF (multiplicative updates
#' for the KL divergence, from the NNDSVD start of Boutsidis and Gallopoulos
#' 2008) of the data divided by each
#' row's mean, each row of `U` then divided by the row's coefficient of
#' variation so that the rows of `U V` have about unit spread, as with the
#' SVD start. For the squared loss, the targets and weights start from each
#' row's best `m`-level quantizer (Lloyd's algorithm on its sorted values:
#' the targets are the means of `m` contiguous groups of values and the
#' weights their shares; with `learn_weights = FALSE`, the means of `m`
#' groups of equal mass), which places more targets where the row's values
#' spread out (the tails of an exponential or cubic map). They are shrunk
#' towards the row's mean by the correlation between the row's normal
#' scores and its starting row of `U V` (the best affine prediction shrinks
#' as much; mapping a partial fit onto the row's full distribution would
#' overshoot). For the KL loss, the targets start from the row's empirical
#' quantiles at levels `(j - 1/2) / m`, shrunk in the same way. Give
#' `control = list(init = list(U = , V = ))` to start from your own factors.
#'
#' @section Cost:
#' An epoch solves and differentiates one transport of `n` values to `m`
#' targets per row: about the cost of one pass of [sinkhorn_normalize_fn()]
#' and its `$vjp()` over the rows of `U V`; memory stays linear in the data.
#' On a 150 x 60 matrix at rank 3, the default fit takes 100 to 200 epochs,
#' 2 to 5 s; see `bench/qmf.R` in the package's sources for larger data.
#'
#' @section Missing values:
#' Missing entries (`NA`, `NaN`) are left out of the loss; every row and
#' every column needs at least one observed value. The transport of a row
#' still covers all samples, so `fitted()` predicts the missing entries.
#'
#' @section QMFQ:
#' `model = "qmfq"` fits the paper's second model, which learns a monotone
#' map of the data as well: \eqn{S(X) \approx T(U V)}{S(X) ~ T(U V)}, where
#' `S` maps each row `r` by the soft quantile normalization of its normal
#' scores (`qnorm((rank - 1/2) / n)` of its observed values, so that `S`
#' depends on the row's ranks only, as a quantile normalization does) onto
#' `m` learned increasing targets `p_r` with equal weights, at the same
#' `eps`: `S_r(x) = center_r + scale_r * (P p_r) / a`. The targets are
#' standardized (mean 0 and variance 1 under the equal weights; for the KL
#' loss positive with mean 1), so that `S` cannot shrink a row towards a
#' constant that `T(U V)` would fit for free; they start from the means of
#' `m` bins of equal mass of the row's values, where `S(X)` is close to `X`.
#' The objective is that of QMF with `S(X)` in place of `X`. `fitted()`
#' returns the reconstruction in the data's units, `S^-1(T(U V))` (the
#' increasing interpolation from each row's `S(x)` to `x`, constant beyond
#' its ends), from which `unexplained`, `kl_unexplained` and
#' `relative_error` are computed; the fit also holds `mapped` (`S(X)`),
#' `fitted_mapped` (`T(U V)`) and `p` (features x `m`, in the data's units).
#' An epoch solves and differentiates two transports per row instead of one,
#' so it costs about twice a QMF epoch. `S` flattens the data within each of
#' its `m` levels, so the reconstruction in the data's units is coarser than
#' QMF's on data with a smooth distortion (on the three-map model of
#' `bench/qmf.R`, 7% of the variance left unexplained against QMF's 0.3%);
#' on data whose rows take a few levels plus noise (the paper's synthetic
#' model, in `vignette("qmf")` and `bench/qmf.R`), QMFQ and QMF both leave
#' about a third of the KL divergence that a KL NMF leaves. `predict()` maps
#' the pooled training and new samples by `S` with `p` fixed, as it does
#' with `T`.
#'
#' @param x A numeric matrix or data frame (features in rows, samples in
#'   columns), or a `SummarizedExperiment`. Missing values are allowed (see
#'   Missing values); infinite ones are not. A `DelayedMatrix` (for example
#'   an `HDF5Matrix` assay) or a sparse matrix is realized as an ordinary
#'   matrix, within option `diffrank.memory_limit`: the fit needs its data
#'   whole in memory (see [diffrank_blocks]).
#' @param rank The rank `k`, a whole number from 1 to `min(dim(x)) - 1`.
#' @param n_quantiles The number `m` of target values per row, at least 2.
#' @param eps The entropic regularization of every row's transport, in
#'   squared units of `U V` (whose rows start with about unit spread): larger
#'   values give smoother, more nearly affine maps. The default, 0.01, lets
#'   the maps follow strongly non-linear rows (0.05 converges a little faster
#'   and reconstructs them about 1.5 times less accurately). As `eps` grows each map
#'   tends to a constant; a fit warns (once) when rows of `T(U V)` have a
#'   spread below 1% of that of the same rows of `x`, the rule of
#'   [soft_rank()] and [sinkhorn_rank()].
#' @param loss `"squared"` (default) or `"kl"` (generalized Kullback-Leibler
#'   divergence, for non-negative data, with non-negative `U` and `V`).
#' @param model `"qmf"` (default): `X ~ T(U V)`; `"qmfq"`: `S(X) ~ T(U V)`
#'   with a learned monotone map `S` of the data as well (see QMFQ).
#' @param lambda The L2 penalty on `U` and `V`, a number `>= 0`, or `NULL`
#'   (default) to choose it from the data. For the squared loss it is then
#'   0.1 times the noise-to-signal ratio `f / (1 - f)`, kept between 0.01
#'   and 0.1, where `f` is the share of the variance of the rows' normal
#'   scores (`qnorm` of their ranks, standardized; monotone maps do not
#'   change them) that their rank-`k` truncated SVD leaves unexplained; for
#'   `loss = "kl"` it is 0.01. A ridge penalty on
#'   the factors grows with the noise variance (it is the ratio of the noise
#'   to the prior variance in the factors' maximum a posteriori reading), so
#'   data far from low rank (log expression values: 0.084 on the full ALL
#'   data at rank 10) are kept from overfitting, and held-out samples are
#'   then placed as well as by the SVD or better, while data close to low
#'   rank through non-linear maps keep 0.01, which lets the maps follow
#'   them. The value used is in `settings$lambda` and in the print. A
#'   `lambda` so large that the penalty overflows at the start is an error.
#' @param learn_weights If `TRUE` (default), learn the target weights `b_r`
#'   of each row (through a softmax) as well, from the shares of the row's
#'   quantizer; else they are `1/m`. Learned weights let `m` targets cover
#'   heavy tails (with equal weights, each target stands for `n / m` samples
#'   of the tail).
#' @param batch_size The number of rows per mini-batch of the Adam optimizer.
#' @param max_epochs The largest number of epochs (passes over the rows); for
#'   `"lbfgs"`, of evaluations of the objective and its gradient (line-search
#'   trials included). Both optimizers stop after `max_epochs` epochs.
#' @param tol Stop when the objective (a fraction of the variance) has
#'   fallen by less than `tol` times `max(objective, 0.01)` per epoch on
#'   average over the last 5 epochs.
#' @param optimizer `"lbfgs"` (full batch, the default) or `"adam"`
#'   (mini-batches of rows).
#' @param threads Number of threads over rows; see [diffrank_threads()].
#'   Results do not depend on it.
#' @param verbose If `TRUE`, report progress: a progress bar with the current
#'   objective when `progress` is `TRUE` (cli shows it after two seconds),
#'   else a message at the first epoch, every two seconds and at the last
#'   epoch (epoch, objective, decrease per epoch). `FALSE` prints nothing.
#' @param progress Show a progress bar (when `verbose`); by default only in
#'   interactive sessions, so that `Rscript` and knitr get the messages.
#' @param control A list of further settings: `learning_rate` (Adam's step,
#'   0.03), `sinkhorn_tol` (1e-6) and `sinkhorn_max_iter` (1000) for every
#'   row's transport, `init` (`"auto"`, `"ranks"`, `"svd"`, `"nmf"`, or a
#'   list with matrices `U` and `V`; by default `"auto"`: for the squared
#'   loss, whichever of `"ranks"` and `"svd"` starts at the lower objective,
#'   and `"nmf"` for KL; see Initialization) and
#'   `init_iter` (iterations of the NMF start, 100).
#' @param assay.type For a `SummarizedExperiment`, the assay to factorize (a
#'   name or an index).
#' @param ... Must be empty (an error names any argument given there).
#' @return An object of class `qmf`, a list with `U` (features x `rank`), `V`
#'   (`rank` x samples), `q` and `b` (features x `m`: targets and weights),
#'   `potentials` (features x `m`: the targets' potentials of the rows'
#'   transports, which extend the maps to new values; see [predict.qmf()]),
#'   `fitted` (`T(U V)`; for QMFQ `S^-1(T(U V))`, and `p`, `mapped` and
#'   `fitted_mapped`, see QMFQ), `objective` and `relative_error` (`||X -
#'   T(UV)||_F / ||X||_F` over the observed entries), `unexplained` (the
#'   fraction of the variance of the row-centred data left unexplained by
#'   `T(UV)`, observed entries) and `svd_unexplained` (the same for the
#'   truncated SVD of the row-centred data at the same rank, the linear
#'   baseline that `print()` shows next to it), for `loss = "kl"`
#'   `kl_unexplained` (the generalized KL divergence of the observed entries
#'   from `T(UV)`, as a fraction of that from the row means) and
#'   `nmf_kl_unexplained` (the same for a KL-divergence NMF at the same rank:
#'   300 multiplicative updates from the deterministic NNDSVD start of
#'   Boutsidis and Gallopoulos 2008), which `print()` then shows instead,
#'   `history` (a data frame
#'   with one row per epoch: objective, relative decrease per epoch over the
#'   last 5 epochs, seconds), the convergence report `iterations` (epochs),
#'   `change` (the last relative decrease, `NA` before 6 epochs) and
#'   `converged`, `sinkhorn` (rows whose transport did not
#'   converge in the final pass, and the largest marginal error), `start`
#'   (the start the fit began from: `"ranks"`, `"svd"`, `"nmf"` or
#'   `"given"`; see Initialization), the training data, the settings and
#'   `unit` (1, or for data whose largest
#'   absolute value is beyond `2^256` or below `2^-256`, the power of two
#'   the data were divided by for the fit, which is otherwise the same: the
#'   fit is equivariant to the scale of the data). Methods: `print()`, `summary()`,
#'   `coef()`, `fitted()`, `residuals()`, `predict()`, `plot()` and
#'   [sample_coordinates()].
#' @references Cuturi M, Teboul O, Niles-Weed J, Vert JP (2020). Supervised
#'   quantile normalization for low-rank matrix approximation. *ICML 2020*.
#'   \doi{10.48550/arXiv.2002.03229}
#'
#'   Boutsidis C, Gallopoulos E (2008). SVD based initialization: a head start
#'   for nonnegative matrix factorization. *Pattern Recognition* 41(4),
#'   1350-1362. \doi{10.1016/j.patcog.2007.09.010}
#'
#'   Lee DD, Seung HS (2001). Algorithms for non-negative matrix
#'   factorization. *Advances in Neural Information Processing Systems* 13.
#' @seealso [predict.qmf()] for new samples, [sinkhorn_normalize()] for the
#'   row maps.
#' @export
#' @examples
#' set.seed(1)
#' signal <- matrix(rnorm(30 * 2), 30) %*% matrix(rnorm(2 * 40), 2)
#' x <- exp(signal)                      # a monotone distortion of rank 2
#' fit <- qmf(x, rank = 2)
#' fit                                   # variance left unexplained, and the SVD's
#' head(coef(fit)$q[, 1:4])
qmf <- function(x, ...) {
  UseMethod("qmf")
}

#' @rdname qmf
#' @export
qmf.default <- function(x, rank, n_quantiles = 16L, eps = 0.01, loss = c("squared", "kl"),
                        model = c("qmf", "qmfq"), lambda = NULL, learn_weights = TRUE,
                        batch_size = 64L,
                        max_epochs = 300L, tol = 1e-3, optimizer = c("lbfgs", "adam"),
                        threads = diffrank_threads(), verbose = interactive(),
                        progress = verbose && interactive(), control = list(), ...) {
  check_dots_whole("qmf()", ...)
  loss <- match_choice(loss, c("squared", "kl"), "loss")
  note_orientation(x)
  x <- qmf_data(realize_block_input(x, "x", "qmf() fits its data whole in memory."), loss)
  if (missing(rank)) abort("`rank` is missing: give the rank of the factorization.")
  settings <- qmf_settings(dim(x), rank, n_quantiles, eps, loss, lambda, learn_weights,
                           batch_size, max_epochs, tol, optimizer, threads, verbose, progress,
                           control, model)
  # The fit is equivariant to a power-of-two scale of the data (exactly: the
  # rows are standardized, the loss divided by their variance), so data far
  # from unit scale, whose squares would leave the double range, are fitted
  # in a power-of-two unit stored in the fit.
  unit <- power_of_two_unit(x)
  x_unit <- if (unit == 1) x else x / unit
  baseline <- qmf_svd_unexplained(x_unit, settings$rank)
  # the rows' normal scores: the noise the default penalty reads, and the
  # squared loss's rank-based start
  scores <- if (loss == "squared") qmf_normal_scores(x_unit)
  if (is.null(settings$lambda)) {
    settings$lambda <- if (is.null(scores)) 0.01 else
      qmf_default_lambda(qmf_noise_share(scores, settings$rank))
    settings$lambda_from_data <- TRUE
  }
  prob <- qmf_problem(x_unit, settings)
  par <- qmf_init(prob, settings, scores)
  start <- attr(par, "start")
  attr(par, "start") <- NULL
  qmf_check_start(prob, par)
  started <- proc.time()[["elapsed"]]
  optimize <- if (settings$optimizer == "adam") qmf_adam else qmf_lbfgs
  run <- optimize(prob, par, settings)
  fit <- qmf_result(prob, run, settings, proc.time()[["elapsed"]] - started, unit, x, baseline)
  fit$start <- start
  fit$call <- match.call()
  qmf_warn(fit)
  fit
}

# the generic shows the default method's arguments (R/args_of_generics.R)
formals(qmf) <- formals(qmf.default)

#' @rdname qmf
#' @export
qmf.SummarizedExperiment <- assay_method("qmf.default")

# ---------------------------------------------------------------------------
# helpers: data, settings, problem

# The squared loss's penalty for `lambda = NULL` (see ?qmf), from the share
# `noise` of the variance that is not low-rank: 0.1 times the noise-to-signal
# ratio, between 0.01 (which lets the maps of data close to low rank follow
# strongly non-linear rows) and 0.1 (held-out samples of log-expression data
# are as well placed from 0.075 to 0.3, and worse at 1).
qmf_default_lambda <- function(noise) {
  if (is.na(noise)) return(0.01)
  min(0.1, max(0.01, 0.1 * noise / (1 - noise)))
}

# The share of the variance of the rows' normal scores (`scores`, from
# qmf_normal_scores()) that their rank-k truncated SVD leaves unexplained:
# the noise, read where monotone maps of the rows do not count as such (the
# data's own SVD reads a non-linear map of a low-rank signal as noise: 0.06
# to 0.14 on the test's synthetic data, against 0.02 to 0.04 here).
qmf_noise_share <- function(scores, k) {
  d2 <- svd(scores, nu = 0, nv = 0)$d^2
  1 - sum(d2[seq_len(k)]) / sum(d2)
}

# The data as a double matrix with its dimnames, checked for the loss.
qmf_data <- function(x, loss, arg = "x") {
  m <- as_numeric_matrix(x, arg)
  if (nrow(m) == 0L || ncol(m) == 0L) {
    abort("`%s` must have at least one feature (row) and one sample (column), not %d x %d.",
          arg, nrow(m), ncol(m))
  }
  if (any(is.infinite(m))) {
    abort("`%s` must not contain infinite values; use NA for values that are missing.", arg)
  }
  features <- rownames(m)
  if (!is.null(features)) {
    bad <- which(is.na(features) | features == "" | duplicated(features))
    if (length(bad) > 0L) {
      abort(paste0("`%s` must have unique, non-empty row (feature) names, or none; row %d's ",
                   "name %s is %s."), arg, bad[1L], encodeString(features[bad[1L]], quote = "\""),
            if (is.na(features[bad[1L]]) || features[bad[1L]] == "") "empty" else "duplicated")
    }
  }
  observed <- !is.na(m)
  for (side in 1:2) {
    empty <- which(if (side == 1L) rowSums(observed) == 0L else colSums(observed) == 0L)
    if (length(empty) > 0L) {
      what <- c("row", "column")[side]
      labels <- dimnames(m)[[side]]
      abort("`%s` has %d %s(s) with no observed value (the first is %s); drop them first.",
            arg, length(empty), what, if (!is.null(labels)) labels[empty[1L]] else empty[1L])
    }
  }
  if (loss == "kl" && any(m < 0, na.rm = TRUE)) {
    abort("`%s` must be non-negative for `loss = \"kl\"`; its smallest value is %s.", arg,
          format(min(m, na.rm = TRUE)))
  }
  m
}

# The checked settings of a fit of data of dimensions `dims`.
qmf_settings <- function(dims, rank, n_quantiles = 16L, eps = 0.01, loss = "squared",
                         lambda = 0.01, learn_weights = TRUE, batch_size = 64L,
                         max_epochs = 300L, tol = 1e-3, optimizer = "lbfgs", threads = 1L,
                         verbose = FALSE, progress = FALSE, control = list(),
                         model = "qmf") {
  rank <- check_whole(rank, "rank")
  if (rank >= min(dims)) {
    abort("`rank` must be below min(nrow(x), ncol(x)) = %d, not %d.", min(dims), rank)
  }
  n_quantiles <- check_whole(n_quantiles, "n_quantiles", lower = 2)
  # the quantile levels of every row and column, with their gradients
  check_memory(16 * as.double(n_quantiles) * (as.double(dims[1L]) + dims[2L]), "n_quantiles",
               n_quantiles)
  list(
    rank = rank, n_quantiles = n_quantiles,
    eps = check_number(eps, "eps", lower = 1e-10), loss = loss,
    model = match_choice(model, c("qmf", "qmfq"), "model"),
    lambda = if (!is.null(lambda)) check_number(lambda, "lambda", lower = 0),
    learn_weights = check_flag(learn_weights, "learn_weights"),
    batch_size = min(check_whole(batch_size, "batch_size"), dims[1L]),
    max_epochs = check_whole(max_epochs, "max_epochs"),
    tol = check_number(tol, "tol", lower = 0),
    optimizer = match_choice(optimizer, c("lbfgs", "adam"), "optimizer"),
    threads = check_threads(threads), verbose = check_flag(verbose, "verbose"),
    progress = check_flag(progress, "progress"), control = qmf_control(control)
  )
}

qmf_control <- function(control) {
  defaults <- list(learning_rate = 0.03, sinkhorn_tol = 1e-6, sinkhorn_max_iter = 1000L,
                   init = NULL, init_iter = 100L)
  if (!is.list(control) || (length(control) > 0L && is.null(names(control)))) {
    abort("`control` must be a named list, not %s.", describe(control))
  }
  unknown <- setdiff(names(control), names(defaults))
  if (length(unknown) > 0L) {
    abort("`control` has unknown element(s) %s; known: %s.",
          paste0("`", unknown, "`", collapse = ", "), paste(names(defaults), collapse = ", "))
  }
  out <- utils::modifyList(defaults, control)
  out$learning_rate <- check_number(out$learning_rate, "control$learning_rate", lower = 0,
                                    allow_lower = FALSE)
  out$sinkhorn_tol <- check_number(out$sinkhorn_tol, "control$sinkhorn_tol", lower = 0,
                                   allow_lower = FALSE)
  out$sinkhorn_max_iter <- check_whole(out$sinkhorn_max_iter, "control$sinkhorn_max_iter")
  out$init_iter <- check_whole(out$init_iter, "control$init_iter", lower = 0)
  out
}

# The rows' scales, with the rows that have none (constant rows; zero rows
# for KL) given the root mean square of the others' (1 when no row has a
# scale), so that the fit stays equivariant to a power-of-two scale of the
# data with such rows too.
qmf_typical_scale <- function(scale) {
  none <- !(scale > 0)
  if (any(none)) scale[none] <- if (all(none)) 1 else sqrt(mean(scale[!none]^2))
  scale
}

# Everything the objective needs besides the parameters: the data, the fixed
# row centres and scales, the normalization of the loss and the core's options.
qmf_problem <- function(x, settings) {
  observed <- !is.na(x)
  if (settings$loss == "squared") {
    center <- rowMeans(x, na.rm = TRUE)
    scale <- qmf_typical_scale(sqrt(rowSums((x - center)^2, na.rm = TRUE) /
                                      pmax(rowSums(observed) - 1, 1)))
    norm <- mean(scale^2)
  } else {
    scale <- qmf_typical_scale(rowMeans(x, na.rm = TRUE))
    center <- numeric(nrow(x))
    norm <- mean(x, na.rm = TRUE)
    if (!(norm > 0)) norm <- 1
  }
  map_data <- identical(settings$model, "qmfq")
  list(x = x, d = nrow(x), n = ncol(x), center = center, scale = scale,
       scores = if (map_data) qmf_normal_scores(x, missing = NA_real_),
       norm = norm * sum(observed), lambda = settings$lambda, threads = settings$threads,
       positive = settings$loss == "kl", learn_weights = settings$learn_weights,
       options = list(loss = settings$loss, eps = settings$eps,
                      learn_weights = settings$learn_weights, map_data = map_data,
                      sinkhorn_tol = settings$control$sinkhorn_tol,
                      sinkhorn_max_iter = settings$control$sinkhorn_max_iter))
}

# The rows `rows` of the data term (see qmf_rows_cpp() in src/qmf.cpp).
qmf_rows <- function(prob, par, rows = seq_len(prob$d), gradient = TRUE, fitted = FALSE) {
  qmf_rows_cpp(prob$x, par$U, par$V, par$theta, par$beta, par$phi, prob$scores, prob$center,
               prob$scale, rows, prob$options, gradient, fitted, prob$threads)
}

# The objective at the starting point must be finite (with room for the
# data term, a few units at most): in the fit's unit only the penalty can
# overflow, for a huge `lambda`.
qmf_check_start <- function(prob, par) {
  penalty <- sum(par$U^2) / prob$d + sum(par$V^2) / prob$n
  if (is.finite(4 * prob$lambda * penalty)) return(invisible())
  abort(paste0("`lambda` = %s is too large: the penalty lambda * (||U||^2 / d + ||V||^2 / n) ",
               "overflows at the starting factors. The data term is a fraction of the variance ",
               "(at most about 1), so a `lambda` far above 1 only shrinks U and V to zero."),
        format(prob$lambda, digits = 3))
}

# The objective (or, for a subset of rows, its unbiased estimate: the data
# term of the rows scaled by d / length(rows)) and its gradient.
qmf_evaluate <- function(prob, par, rows = NULL, gradient = TRUE) {
  all_rows <- is.null(rows)
  if (all_rows) rows <- seq_len(prob$d)
  raw <- qmf_rows(prob, par, rows, gradient)
  factor <- prob$d / length(rows) / prob$norm
  u <- if (all_rows) par$U else par$U[rows, , drop = FALSE]
  lambda <- prob$lambda
  value <- factor * sum(raw$loss) + lambda * (sum(u^2) / length(rows) + sum(par$V^2) / prob$n)
  out <- list(value = value, data = sum(raw$loss), status = raw[c("unconverged", "error")])
  if (!gradient) return(out)
  out$U <- factor * raw$u + 2 * lambda * u / length(rows)
  out$V <- factor * raw$v + 2 * lambda * par$V / prob$n
  out$theta <- factor * raw$theta
  if (!is.null(par$beta)) out$beta <- factor * raw$beta
  if (!is.null(par$phi)) out$phi <- factor * raw$phi
  out$q <- factor * raw$q
  out$b <- factor * raw$b
  out
}
