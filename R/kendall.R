#' Kendall kernel between expression profiles
#'
#' Kendall's tau between every pair of samples (columns) of a features x
#' samples matrix: each sample's values rank its features, and two samples are
#' compared through the pairs of features they order the same way (concordant,
#' n_c) or the opposite way (discordant, n_d). Knight's O(p log p) algorithm on
#' ranks computed once per sample, with exact 64-bit counts; the pairs of
#' samples are spread over `threads` threads. The Kendall kernel is positive
#' semidefinite (Jiao and Vert 2015), so the matrix can be used directly in a
#' kernel method such as [kernlab::ksvm()].
#'
#' * `variant = "tau_b"`: (n_c - n_d) / sqrt((n0 - t_x)(n0 - t_y)), with n0 = p(p - 1)/2
#'   pairs and t_x, t_y the pairs tied in each sample; the same as
#'   `stats::cor(x, method = "kendall")` and `pcaPP::cor.fk(x)`. Undefined
#'   (`NA`, with a warning) for a constant sample.
#' * `variant = "tau_a"`: (n_c - n_d) / n0; tied pairs count as neither.
#'
#' @section Orientation:
#' `x` and `y` have features (genes) in rows and samples in columns, as
#' `cor()` and `pcaPP::cor.fk()` take them and as Bioconductor stores
#' expression data; the result is samples x samples. kernlab's functions take
#' samples in rows: see [kendall_kernlab()] for kernel functions that do. A
#' `SummarizedExperiment` (samples in columns too) is used through its assay
#' `assay.type`.
#'
#' @section Partial rankings:
#' A ranking that does not order every feature stands for all the total
#' orders consistent with it, and the kernel between two such rankings is the
#' mean of the kernel over every pair of these orders (the convolution kernel
#' of Jiao and Vert 2018, positive semidefinite like the kernel it averages).
#' For the Kendall kernel this mean has a closed form, computed in O(p log p)
#' per pair of samples like the kernel on full rankings:
#' * **Ties** (a bucket order): tied features in any order. The mean kernel is
#'   `variant = "tau_a"` as it stands, and `"tau_b"` is the same kernel
#'   normalized to a unit diagonal, so values tied within a sample are
#'   already treated this way.
#' * **Top-k lists**, `type = "topk"`: each sample keeps its `k` largest
#'   values ranked and leaves the other features unordered, tied below them,
#'   as a list of the k most expressed genes does. Features tied with the
#'   k-th largest value stay ranked, so a list may hold more than k.
#'   [mallows_kernel()] takes `type = "topk"` too, averaged over the orders of
#'   tied features in the same way.
#' * **Missing features**, `na = "interleave"`: a feature missing from a
#'   sample (`NA`) was not ranked there, and may sit anywhere among its q
#'   observed features, each of the q + 1 places around them equally likely.
#'   The kernel then compares every pair of samples on all the features,
#'   whereas `na = "pairwise"` drops the features either one lacks. With
#'   `"tau_a"` a sample's kernel with itself falls below 1 as features go
#'   missing; `"tau_b"` normalizes it to 1.
#'
#' The two combine: with `type = "topk"` and `na = "interleave"`, the top k
#' of each sample's observed values are ranked. Without missing values, and
#' with `k >= p - 1`, both give the kernel on full rankings to the last bit.
#'
#' @section Missing values:
#' With `na = "fail"` (the default) any `NA` or `NaN` is an error. With
#' `na = "pairwise"` each pair of samples is compared on the features observed
#' in both, as `cor(use = "pairwise.complete.obs")` does. The ranks are still
#' computed once per sample (ranks restricted to a subset keep their order), so
#' the cost stays O(p log p) per pair plus O(p) to drop the features missing
#' in the other sample; the weighted kernels normalized on a pair with missing
#' values also recompute both samples' self-kernels on the shared features
#' (three times the work for such pairs). A pair sharing fewer than two
#' features gives `NA` with a warning. A matrix computed pairwise need not be
#' positive semidefinite. `na = "interleave"` (Kendall kernel only) treats a
#' missing value as an unranked feature instead (see the section Partial
#' rankings); its matrices are positive semidefinite.
#'
#' @section Use with kernlab:
#' The matrix is a kernlab `kernelMatrix` when kernlab is installed, so it can
#' be passed to `kernlab::ksvm()` as it is. To predict new samples, kernlab
#' needs the kernel between the new samples and the fit's *support vectors*
#' only, in their order: [support_kernel()] computes it with the same kernel
#' and settings, so that
#' ```
#' K <- kendall_kernel(train)     # or mallows_kernel(), weighted_kendall_kernel()
#' fit <- kernlab::ksvm(K, labels, type = "C-svc")
#' # the same kernel function and settings as for K:
#' predict(fit, support_kernel(fit, test, train, kernel = kendall_kernel))
#' ```
#' predicts `test`. (Passing the kernel against *all* training samples runs
#' without an error but gives wrong predictions.) `ksvm()` called on a data
#' matrix (samples in rows) with a kernel function such as [kendall_kernlab()]
#' scales every column by default (`scaled = TRUE`), which changes each
#' sample's ranking of the genes: pass `scaled = FALSE`.
#'
#' @param x A numeric matrix or data frame with features in rows and samples
#'   in columns, a numeric vector (one sample), or a `SummarizedExperiment`.
#'   A time series (`ts`) is taken as its values; other classed vectors
#'   (dates, times) are errors. A `DelayedMatrix` (for example an
#'   `HDF5Matrix`) or a sparse matrix is read in column blocks and the kernel
#'   computed in tiles (see [diffrank_blocks]).
#' @param y `NULL` for the kernel between the samples of `x`, or a second set
#'   of samples with the same features (rows) in the same order: the result is
#'   then the cross-kernel, `ncol(x)` x `ncol(y)`.
#' @param variant `"tau_b"` (the default) or `"tau_a"`.
#' @param assay.type For a `SummarizedExperiment` `x` (and `y`), the assay to
#'   use (a name or an index), as in Bioconductor's scuttle and scran.
#' @param ... Must be empty (an error names any argument given there).
#' @param na `"fail"` (the default), `"pairwise"` or (Kendall kernel only)
#'   `"interleave"`; see the sections Missing values and Partial rankings.
#' @param type `"full"` (the default) to rank every feature, or `"topk"` to
#'   compare top-`k` lists: see the section Partial rankings.
#' @param k For `type = "topk"`, the number of top features each sample keeps
#'   ranked, a whole number from 1 to the number of features.
#' @param threads Number of threads; see [diffrank_threads()]. The result does
#'   not depend on it.
#' @param BPPARAM For a `DelayedMatrix` or sparse `x` or `y` (for example an
#'   HDF5-backed assay): `NULL` (the default) to compute the tiles of the
#'   kernel matrix one after another in this process, or a BiocParallel
#'   back-end (`BiocParallel::SerialParam()`, `MulticoreParam()`,
#'   `SnowParam()`, `BatchtoolsParam()`) over whose workers the tiles are
#'   spread; the result does not depend on it. Ignored for ordinary matrices,
#'   which use `threads`. See [diffrank_blocks].
#' @param progress Whether to show progress for matrices that take more than
#'   a couple of seconds. Interrupts are checked in any case.
#' @param features The features (rows) the samples are ranked on: `NULL` (the
#'   default) for all; a single number n for the n features of largest
#'   variance across the samples of `x`; or the features' names, row numbers
#'   or a logical vector. See the section Features.
#' @param centre `FALSE` (the default); `TRUE` to centre the kernel between
#'   the samples of `x` in feature space (see the section Centring); or, with
#'   `y`, the centred kernel of the training samples `y`, to centre the
#'   cross-kernel of new samples `x` against all of them the same way.
#' @return A `ncol(x)` x `ncol(y)` kernel matrix (a kernlab `kernelMatrix`
#'   when kernlab is installed, a plain matrix otherwise; `K[, ]` extracts the
#'   plain matrix from a `kernelMatrix` `K`) with the sample names as
#'   dimnames; a single number when `x` and `y` are both vectors. With
#'   `features`, the attribute `"features"` holds the features used (their
#'   names, or their row numbers when `x` has no row names).
#' @section Features:
#' On a whole array most pairs of genes are ordered the same way in every
#' sample (highly expressed housekeeping genes above unexpressed ones), so the
#' kernel values between samples vary little and mostly with genes that do
#' not tell the samples apart. On the 12,625 probe sets of the ALL arrays
#' (Bioconductor package ALL, 128 samples) the Kendall kernel's off-diagonal
#' values span 0.60 to 0.89 (standard deviation 0.035), and an SVM on it tells
#' B- from T-cell leukaemias no better than 0.80 to 0.82 in cross-validation
#' for any cost C from 1 to 1,000; on the 1,000 probe sets of largest
#' variance they span 0.25 to 0.79 and the same SVM is right for every sample
#' (`bench/kernel_svm.R`). `features = 1000` keeps these: the variance of
#' each row of `x` across its samples (missing values left out; for a block
#' input computed block by block), the standard unsupervised filter of
#' expression data (as genefilter's `varFilter()` or DESeq2's `plotPCA()`).
#' It does not look at any label, so it can be done on all the samples
#' before a cross-validation without biasing it; [rank_svm()] chooses the
#' number by cross-validation.
#'
#' The selection is returned as the attribute `"features"`. For a
#' cross-kernel (`y` given) the features must be given by name or row number,
#' typically `attr(K, "features")` of the training kernel `K` (a number is an
#' error there, since it would choose the features on other samples); names
#' pick the rows of `y` by name, so `y` may list its features in another
#' order or have more of them. [support_kernel()] accepts a number and
#' chooses the features on `train`, as `kernel(train, features = n)` did.
#'
#' @section Centring:
#' `centre = TRUE` returns H K H with H = I - 11'/n: the kernel of the
#' samples' embeddings minus their mean, still positive semidefinite, with the
#' training means as the attribute `"centring"`. An SVM with an intercept is
#' in theory unchanged by it (the intercept absorbs the shift), but kernlab's
#' numerical solver, which works to a fixed tolerance, is not: on the
#' whole ALL arrays (all 12,625 probe sets), `ksvm()` on the centred Kendall
#' kernel tells B from T cells right for 0.99 to 1.00 of the samples in
#' cross-validation with C from 10 to 1,000, against 0.80 to 0.82 on the raw
#' kernel (`bench/kernel_svm.R`). New samples must be centred with the
#' training means: `kernel(new, train, centre = K_train)` with `K_train <-
#' kernel(train, centre = TRUE)` (the cross-kernel against all the training
#' samples); `support_kernel(..., centre = K_train)` does it for a ksvm fit.
#' The near-constant warning judges the kernel before centring.
#'
#' @section Nearly constant kernels:
#' The kernel between the samples of `x` (`y = NULL`, at least 3 samples)
#' warns when the standard deviation of its off-diagonal values is below 5%
#' of its mean diagonal value (1 for the normalized kernels): all samples are
#' then about equally alike and a kernel method has little to work with. The
#' Mallows kernel is judged on 1 - 2 d for its Kendall distances d = -log(K) /
#' lambda (Kendall's tau without ties), so that the rule does not depend on
#' `lambda`. The
#' Kendall kernel of independent noise on p features has a spread of about
#' 0.67 / sqrt(p) (0.021 for 1,000 features), the whole ALL arrays 0.035, their
#' 500 to 2,000 most variable probe sets 0.065 to 0.10. The warning (of class
#' `"diffrank_near_constant_kernel"`) suggests `features`. A spread above the
#' threshold does not mean that the kernel separates the classes you are
#' after: the weighted Kendall kernel of the whole ALL arrays varies widely
#' (standard deviation 0.18) with the most expressed genes, which do not tell
#' B from T cells apart.
#' @references
#' Knight WR (1966). A computer method for calculating Kendall's tau with
#' ungrouped data. *Journal of the American Statistical Association* 61,
#' 436-439.
#'
#' Jiao Y, Vert J-P (2018). The Kendall and Mallows kernels for permutations.
#' *IEEE Transactions on Pattern Analysis and Machine Intelligence* 40(7),
#' 1755-1769 (ICML 2015). Its section on partial rankings gives the
#' convolution kernels of top-k lists and of interleaved partial rankings.
#' @seealso [mallows_kernel()], [weighted_kendall_kernel()],
#'   [kendall_counts()], [kendall_kernlab()], [support_kernel()].
#' @export
#' @examples
#' set.seed(1)
#' x <- matrix(rnorm(200), nrow = 50,
#'             dimnames = list(paste0("gene", 1:50), paste0("s", 1:4)))
#' kendall_kernel(x)
#' # K[, ] is the plain matrix inside a kernlab kernelMatrix
#' all.equal(kendall_kernel(x)[, ], cor(x, method = "kendall"))
#' kendall_kernel(x[, 1], x[, 2])
#' # rank only the 20 genes of largest variance across the samples
#' K20 <- kendall_kernel(x, features = 20)
#' attr(K20, "features")
#' # compare the samples' lists of their 10 largest values
#' kendall_kernel(x, type = "topk", k = 10)
#' # rankings from studies that did not measure every gene
#' x[sample(length(x), 20)] <- NA
#' kendall_kernel(x, na = "interleave")
kendall_kernel <- function(x, ...) {
  UseMethod("kendall_kernel")
}

#' @rdname kendall_kernel
#' @export
kendall_kernel.default <- function(x, y = NULL, variant = c("tau_b", "tau_a"),
                                   na = c("fail", "pairwise", "interleave"),
                                   threads = diffrank_threads(), progress = interactive(),
                                   BPPARAM = NULL, features = NULL, centre = FALSE,
                                   type = c("full", "topk"), k = NULL, ...) {
  check_dots_empty(...)
  variant <- match_choice(variant, c("tau_b", "tau_a"), "variant")
  check_centre(centre, y)
  na <- match_choice(na, c("fail", "pairwise", "interleave"), "na")
  top <- top_k(type, k, na)
  sel <- select_features(features, x, y, na)
  out <- rank_kernel(sel$x, sel$y, kernel = variant, na = na, threads = threads,
                     progress = progress, BPPARAM = BPPARAM, top = top)
  finish_features(out, sel, is.null(y), "kendall_kernel", centre = centre, top_lists = top > 0)
}

# the generic shows the default method's arguments (R/args_of_generics.R)
formals(kendall_kernel) <- formals(kendall_kernel.default)

#' @rdname kendall_kernel
#' @export
kendall_kernel.SummarizedExperiment <- kernel_se_method("kendall_kernel.default")

#' Mallows kernel between expression profiles
#'
#' The Mallows kernel exp(-lambda d / n0) between every pair of samples
#' (columns), where d is the Kendall distance between the two samples'
#' rankings of the features and n0 = p(p - 1)/2 the number of pairs of
#' features (exp(-lambda d) with `normalized = FALSE`). It is positive
#' definite for every `lambda >= 0` (Jiao and Vert 2018) and computed in
#' O(p log p) per pair of samples.
#'
#' @section Ties:
#' d counts the discordant pairs of features plus one half for each pair tied
#' in one sample and not in the other (the distance K^(1/2) of Fagin et al.
#' 2006); a pair tied in both samples counts zero. Without ties d is the number
#' of discordant pairs. This d is half the squared distance between the two
#' samples' embeddings (1\[x_i < x_j\], 1\[x_i > x_j\]) over the pairs i < j,
#' so the kernel stays positive definite with ties, which counting discordant
#' pairs only would not.
#'
#' With `type = "topk"` the kernel is instead averaged over the orders of the
#' tied features (the section Partial rankings of [kendall_kernel()]), ties
#' within the top k included: exp(-lambda n_d / m) for the n_d pairs ordered
#' oppositely in the two samples, times, for the blocks of tied features, the
#' mean of exp(-lambda d / m) over their orders, a ratio of q-factorials
#' (q = exp(-lambda / m)) computed in O(p log p) per pair. With `normalized =
#' TRUE`, m = n0 - (p - k)(p - k - 1)/2 is the number of pairs a top-k list
#' orders (n0 for k = p; 1 when not normalized), so that `lambda` weighs the
#' share of these pairs that two lists order oppositely, as it does for full
#' rankings: divided by n0, the distances between top-500 lists of 12,625
#' genes would be 13 times smaller, and the kernel near 1. A list's mean
#' kernel with itself is below 1 (two random orders of its bottom features
#' disagree), so the mean is divided by the geometric mean of the two lists'
#' kernels with themselves: the diagonal is 1, as for full rankings, and the
#' matrix stays positive semidefinite. Missing values are not allowed with
#' it: the mean over the places of missing features has no closed form.
#'
#' @inheritParams kendall_kernel
#' @inheritSection kendall_kernel Orientation
#' @inheritSection kendall_kernel Missing values
#' @inheritSection kendall_kernel Use with kernlab
#' @param na `"fail"` (the default) or `"pairwise"`; see the section Missing
#'   values. (`"interleave"` is for [kendall_kernel()] only.)
#' @param type `"full"` (the default) to rank every feature, or `"topk"` to
#'   compare top-`k` lists (see the section Ties, and the section Partial
#'   rankings of [kendall_kernel()]).
#' @param lambda The kernel's bandwidth, a number >= 0.
#' @param normalized Whether the distance is divided by the number of pairs
#'   of features (so that `lambda` does not depend on their number).
#' @return As [kendall_kernel()]: a kernel matrix with unit diagonal.
#' @references
#' Jiao Y, Vert J-P (2018). The Kendall and Mallows kernels for permutations.
#' *IEEE Transactions on Pattern Analysis and Machine Intelligence* 40(7),
#' 1755-1769.
#'
#' Fagin R, Kumar R, Mahdian M, Sivakumar D, Vee E (2006). Comparing partial
#' rankings. *SIAM Journal on Discrete Mathematics* 20(3), 628-648.
#' @export
#' @examples
#' set.seed(1)
#' x <- matrix(rnorm(200), nrow = 50, dimnames = list(NULL, paste0("s", 1:4)))
#' mallows_kernel(x, lambda = 2)
#' # without ties: exp(-lambda * discordant pairs / all pairs)
#' counts <- kendall_counts(x[, 1], x[, 2])
#' exp(-2 * counts[["discordant"]] / counts[["n0"]])
#' # the samples' top-10 lists
#' mallows_kernel(x, lambda = 2, type = "topk", k = 10)
mallows_kernel <- function(x, ...) {
  UseMethod("mallows_kernel")
}

#' @rdname mallows_kernel
#' @export
mallows_kernel.default <- function(x, y = NULL, lambda = 1, normalized = TRUE,
                                   na = c("fail", "pairwise"), threads = diffrank_threads(),
                                   progress = interactive(), BPPARAM = NULL, features = NULL,
                                   centre = FALSE, type = c("full", "topk"), k = NULL, ...) {
  check_dots_empty(...)
  lambda <- check_number(lambda, "lambda", lower = 0)
  check_centre(centre, y)
  normalized <- check_flag(normalized, "normalized")
  if (identical(na, "interleave")) {
    abort(paste0("`na = \"interleave\"` is offered by kendall_kernel() only: the Mallows ",
                 "kernel averaged over the places of missing items has no closed form. Use ",
                 "na = \"pairwise\" or kendall_kernel()."))
  }
  na <- match_choice(na, c("fail", "pairwise"), "na")
  top <- top_k(type, k, na)
  sel <- select_features(features, x, y, na)
  out <- rank_kernel(sel$x, sel$y, kernel = "mallows", lambda = lambda, normalized = normalized,
                     na = na, threads = threads, progress = progress, BPPARAM = BPPARAM,
                     top = top)
  p <- if (is.null(dim(sel$x))) length(sel$x) else nrow(sel$x)
  # the pairs the distances are divided by when normalized (see Ties)
  pairs <- p * (p - 1) / 2 - if (top > 0) (p - top) * (p - top - 1) / 2 else 0
  finish_features(out, sel, is.null(y), "mallows_kernel",
                  lambda = if (normalized) lambda else lambda * pairs, centre = centre,
                  top_lists = top > 0)
}

# the generic shows the default method's arguments (R/args_of_generics.R)
formals(mallows_kernel) <- formals(mallows_kernel.default)

#' @rdname mallows_kernel
#' @export
mallows_kernel.SummarizedExperiment <- kernel_se_method("mallows_kernel.default")

#' Weighted Kendall kernels between expression profiles
#'
#' The weighted Kendall kernels of Jiao and Vert (2018), which give more
#' weight to the pairs of features at the top of the rankings (the most
#' expressed genes): for two samples x and x', the sum over the pairs of
#' features (i, j) ordered the same way in both (x_i < x_j and x'_i < x'_j) of
#' w(i, j) w'(i, j), where w weighs a pair by the positions its two features
#' occupy in x's ranking, counted from the top (position 1 = largest value),
#' and w' likewise in x'. Computed in O(p log p) per pair of samples with a
#' Fenwick tree; positive semidefinite.
#'
#' * `weighting = "multiplicative"` (the default): w = u_a u_b for the
#'   positions a and b of the two features.
#' * `"additive"`: w = u_a + u_b.
#' * `"top"`: w = 1 when both features are among the `k` top positions, else 0.
#' * `"average"`: the mean of the `"top"` kernels over k = 1, ..., p.
#'
#' The position weights u default to the hyperbolic weights
#' u_t = 1 / (t + 1); give your own with `u`. With `u` = 1 everywhere
#' `"multiplicative"` counts the concordant pairs.
#'
#' @section Ties:
#' A block of m tied values in a sample occupies m consecutive positions
#' a, ..., a + m - 1, and each of its features gets the mean of u over these
#' positions (its expected weight if the block were ordered at random). For
#' `"top"` that is the share of the block's positions within the top k, and
#' the `"average"` kernel is the mean of these `"top"` kernels. A pair of
#' features tied in either sample never counts. These rules depend on each
#' sample alone, so the kernels stay positive semidefinite with ties.
#'
#' @inheritParams kendall_kernel
#' @inheritSection kendall_kernel Orientation
#' @inheritSection kendall_kernel Use with kernlab
#' @param na `"fail"` (the default) or `"pairwise"`; see the section Missing
#'   values.
#' @param weighting How pairs of positions are weighted: `"multiplicative"`,
#'   `"additive"`, `"top"` or `"average"`.
#' @param k For `weighting = "top"`, the number of top positions, a whole number
#'   from 2 to the number of features (required).
#' @param u For `"additive"` and `"multiplicative"`, the weights of the positions from the
#'   top, a finite numeric vector with one value per feature; `NULL` for the
#'   hyperbolic weights 1 / (t + 1). The normalized kernel depends only on
#'   the relative sizes of the weights (`u` and `1e-200 * u` give the same
#'   kernel); the raw sums (`normalized = FALSE`) scale with them.
#' @param normalized Whether to return K(x, x') / sqrt(K(x, x) K(x', x')), a
#'   kernel with unit diagonal (`NA`, with a warning, for a sample whose
#'   kernel with itself is 0, e.g. a constant sample), or the raw sums.
#' @section Missing values:
#' As for [kendall_kernel()]. Positions are counted among the features the two
#' samples share, and `u` is used from its first value, so with `"top"` the k
#' top positions are those among the shared features.
#' @return As [kendall_kernel()].
#' @references
#' Jiao Y, Vert J-P (2018). The weighted Kendall and high-order kernels for
#' permutations. *Proceedings of the 35th International Conference on Machine
#' Learning*, PMLR 80, 2314-2322.
#' @export
#' @examples
#' set.seed(1)
#' x <- matrix(rnorm(200), nrow = 50, dimnames = list(NULL, paste0("s", 1:4)))
#' x[, 2] <- x[, 1] + rnorm(50, sd = 0.5)         # s1 and s2 alike
#' weighted_kendall_kernel(x)                     # hyperbolic weights from the top
#' weighted_kendall_kernel(x, weighting = "top", k = 10)
#' weighted_kendall_kernel(x, weighting = "additive")
#' # your own position weights, e.g. exponential decay from the top
#' weighted_kendall_kernel(x, u = exp(-(1:50) / 10))
weighted_kendall_kernel <- function(x, ...) {
  UseMethod("weighted_kendall_kernel")
}

#' @rdname weighted_kendall_kernel
#' @export
weighted_kendall_kernel.default <- function(x, y = NULL, weighting = weightings, k = NULL,
                                            u = NULL, normalized = TRUE,
                                            na = c("fail", "pairwise"),
                                            threads = diffrank_threads(),
                                            progress = interactive(), BPPARAM = NULL,
                                            features = NULL, centre = FALSE, ...) {
  check_dots_empty(...)
  weighting <- match_choice(weighting, weightings, "weighting")
  check_centre(centre, y)
  normalized <- check_flag(normalized, "normalized")
  na <- match_choice(na, c("fail", "pairwise"), "na")
  sel <- select_features(features, x, y, na)
  p <- if (is.null(dim(sel$x))) length(sel$x) else nrow(sel$x)
  # an empty or missing `x` is named before `k` is checked against its rows
  if (p == 0L) rank_input(x, "x", na)
  spec <- weight_spec(weighting, k, u, p, normalized)
  out <- rank_kernel(sel$x, sel$y, kernel = spec$kernel, normalized = normalized, u = spec$u,
                     na = na, threads = threads, progress = progress, BPPARAM = BPPARAM)
  finish_features(out, sel, is.null(y), "weighted_kendall_kernel", centre = centre)
}

# the generic shows the default method's arguments (R/args_of_generics.R)
formals(weighted_kendall_kernel) <- formals(weighted_kendall_kernel.default)

#' @rdname weighted_kendall_kernel
#' @export
weighted_kendall_kernel.SummarizedExperiment <-
  kernel_se_method("weighted_kendall_kernel.default")

weightings <- c("multiplicative", "additive", "top", "average")

# A kernel of the assays of SummarizedExperiments (y may also be a matrix).
# `...` comes first, so that the kernels' own arguments (`k`, `lambda`) are
# never partially matched to this function's (`k` used to match `kernel`).
kernel_on_assays <- function(..., .kernel, .x, .y, .assay.type) {
  if (methods::is(.y, "SummarizedExperiment")) .y <- se_assay(.y, .assay.type, blocks = TRUE)
  .kernel(se_assay(.x, .assay.type, blocks = TRUE), .y, ...)
}

#' Pair counts of Kendall's tau
#'
#' The numbers of concordant, discordant and tied pairs between two vectors,
#' counted exactly (as doubles, exact up to 2^53) by Knight's O(n log n)
#' algorithm. Pairs with a missing value in either vector are dropped.
#'
#' @param x,y Numeric vectors of the same length.
#' @return A named numeric vector: `n` (the number of complete pairs of
#'   values), `n0` = n(n - 1)/2, `concordant`, `discordant`, `tied_x` (pairs
#'   tied in x, including those tied in both), `tied_y` and `tied_xy` (tied in
#'   both). concordant + discordant + tied_x + tied_y - tied_xy = n0.
#' @export
#' @examples
#' kendall_counts(c(1, 2, 3, 4), c(1, 3, 2, 2))
kendall_counts <- function(x, y) {
  for (arg in c("x", "y")) {
    v <- get(arg)
    if (!(is.numeric(v) || is.logical(v)) || !is.null(dim(v)) || is.object(v)) {
      abort("`%s` must be a numeric vector, not %s.", arg, describe(v))
    }
  }
  if (length(x) != length(y)) {
    abort("`x` and `y` must have the same length, not %d and %d.", length(x), length(y))
  }
  if (length(x) >= 2^32 - 1) abort("`x` is too long (at most 2^32 - 2 values).")
  kendall_pair_counts(as.double(x), as.double(y))
}

# The C++ kernel name and position weights of a weighted Kendall kernel for p
# features; with p = NULL, only the checks that do not need p. For a
# normalized kernel, which does not depend on the scale of u, u is scaled by a
# power of two (exactly) to a largest absolute value in [1, 2), so that the
# products and sums of weights neither underflow nor overflow.
weight_spec <- function(weighting, k, u, p, normalized = TRUE) {
  p_max <- if (is.null(p)) if (is.null(u)) Inf else length(u) else p
  if (weighting == "top") {
    if (is.null(k)) {
      abort("`k` must be given for weighting = \"top\": the number of top positions, from 2 to %s.",
            format(p_max))
    }
    if (!is.numeric(k) || length(k) != 1L || is.na(k) || k != round(k) || k < 2 || k > p_max) {
      abort("`k` must be a whole number from 2 to the number of features (%s), not %s.",
            format(p_max), describe(k))
    }
  } else if (!is.null(k)) {
    abort("`k` is only used with weighting = \"top\", not \"%s\".", weighting)
  }
  if (!is.null(u)) {
    if (!weighting %in% c("additive", "multiplicative")) {
      abort("`u` is only used with weighting = \"additive\" or \"multiplicative\", not \"%s\".",
            weighting)
    }
    if (!is.numeric(u) || !is.null(dim(u)) || is.object(u) || anyNA(u) || any(!is.finite(u))) {
      abort("`u` must be a vector of finite numbers, not %s.", describe(u))
    }
    if (length(u) != p_max) {
      abort("`u` must have one weight per feature (%d), not %d.", p_max, length(u))
    }
  }
  if (is.null(p)) return(NULL)
  if (!is.null(u)) {
    u <- as.double(u)
    largest <- max(abs(u))
    if (normalized && largest > 0) {
      e <- -floor(log2(largest))
      u <- u * 2^(e %/% 2) * 2^(e - e %/% 2)  # two factors: 2^1074 overflows
    }
  }
  switch(weighting,
    top = list(kernel = "product", u = rep(c(1, 0), c(k, p - k))),
    additive = list(kernel = "additive", u = if (is.null(u)) 1 / (seq_len(p) + 1) else u),
    multiplicative = list(kernel = "product", u = if (is.null(u)) 1 / (seq_len(p) + 1) else u),
    average = list(kernel = "average", u = double(0))
  )
}

# The length of the top-k lists (`k` of type = "topk"; 0 for full rankings),
# checked as far as it can be without the data (rank_kernel checks k <= p).
top_k <- function(type, k, na) {
  type <- match_choice(type, c("full", "topk"), "type")
  if (type == "full") {
    if (!is.null(k)) abort("`k` is only used with type = \"topk\", not \"full\".")
    return(0)
  }
  if (is.null(k)) {
    abort("`k` must be given for type = \"topk\": how many top features of each sample stay ranked.")
  }
  if (!is.numeric(k) || length(k) != 1L || is.object(k) || is.na(k) || !is.finite(k) ||
        k != round(k) || k < 1) {
    abort("`k` must be a whole number >= 1, not %s.", describe(k))
  }
  if (na == "pairwise") {
    abort(paste0("`type = \"topk\"` compares top-k lists on all the features: with missing ",
                 "values use na = \"interleave\" (kendall_kernel()), not \"pairwise\"."))
  }
  as.double(k)
}

# A features x samples double matrix from x (or y), checked for ranking.
rank_input <- function(x, arg, na) {
  if (is.null(x)) abort("`%s` must be a numeric vector, matrix or data frame, not NULL.", arg)
  m <- as_numeric_matrix(x, arg)
  if (nrow(m) < 2L) {
    abort("`%s` must have at least 2 features (rows) to rank, not %d.", arg, nrow(m))
  }
  if (ncol(m) < 1L) abort("`%s` must have at least one sample (column).", arg)
  if (nrow(m) >= 2^32 - 1) abort("`%s` has too many features (at most 2^32 - 2).", arg)
  if (na == "fail" && anyNA(m)) {
    abort("`%s` contains missing values (NA or NaN); remove them or use na = \"pairwise\".",
          arg)
  }
  m
}

rank_kernel <- function(x, y, kernel, lambda = 1, normalized = TRUE, u = double(0), na,
                        threads, progress, BPPARAM = NULL, top = 0) {
  threads <- check_threads(threads)
  progress <- check_flag(progress, "progress")
  if (is_block_input(x) || is_block_input(y)) {
    return(rank_kernel_blocks(x, y, kernel, lambda, normalized, u, na, threads, progress,
                              BPPARAM, top))
  }
  check_block_args(BPPARAM)
  scalar <- !is.null(y) && is.null(dim(x)) && is.null(dim(y)) &&
    !is.data.frame(x) && !is.data.frame(y)
  if (scalar && top == 0 && na != "interleave" && kernel %in% c("tau_a", "tau_b", "mallows") &&
        is.double(x) && is.double(y) &&
        !is.object(x) && !is.object(y) && length(x) == length(y) && length(x) >= 2L &&
        length(x) < 2^32 - 1 && (na == "pairwise" || !anyNA(x) && !anyNA(y)) &&
        (is.null(names(x)) || is.null(names(y)) || identical(names(x), names(y)))) {
    # Two plain double vectors that pass every check below: counted directly,
    # without the set-up of a kernel matrix (the same value).
    out <- rank_kernel_pair_cpp(x, y, kernel, lambda, normalized)
    if (is.nan(out)) {
      warn_undefined_kernel(1L)
      out <- NA_real_
    }
    return(out)
  }
  mx <- rank_input(x, "x", na)
  my <- if (is.null(y)) NULL else rank_input(y, "y", na)
  note_orientation(mx, "x")
  if (!is.null(my)) note_orientation(my, "y")
  if (!is.null(my)) {
    if (nrow(my) != nrow(mx)) {
      abort("`x` and `y` must have the same number of features (rows), not %d and %d.",
            nrow(mx), nrow(my))
    }
    if (!is.null(rownames(mx)) && !is.null(rownames(my)) &&
          !identical(rownames(mx), rownames(my))) {
      abort("`x` and `y` must have the same features in the same order; their row names differ.")
    }
  }
  if (length(u) > 0L && length(u) != nrow(mx)) {
    abort("`u` must have one weight per feature (%d), not %d.", nrow(mx), length(u))
  }
  check_top(top, nrow(mx))
  out <- rank_kernel_matrix(mx, my, kernel, lambda, normalized, u, threads, progress, top,
                            na == "interleave")
  finish_kernel(out, colnames(mx), if (is.null(my)) colnames(mx) else colnames(my), scalar)
}

check_top <- function(top, p) {
  if (top > p) abort("`k` must be at most the number of features (%d), not %s.", p, format(top))
}

# The kernel matrix with undefined values as NA (and a warning), its
# dimnames and class (a number for two vectors).
finish_kernel <- function(out, names_x, names_y, scalar) {
  undefined <- is.nan(out)
  if (any(undefined)) {
    out[undefined] <- NA_real_
    warn_undefined_kernel(sum(undefined))
  }
  if (scalar) return(out[1L, 1L])
  dimnames(out) <- list(names_x, names_y)
  as_kernel_matrix(out)
}

# A condition of its own class, so that a caller that turns undefined values
# into an error (rank_svm) can replace the warning.
warn_undefined_kernel <- function(n) {
  warning(structure(class = c("diffrank_undefined_kernel", "warning", "condition"), list(
    message = sprintf(paste0(
      "%d kernel value(s) are undefined and set to NA: a sample is constant on the ",
      "features compared, or a pair of samples shares fewer than 2 features."), n),
    call = NULL)))
}

as_kernel_matrix <- function(k) {
  if (requireNamespace("kernlab", quietly = TRUE)) kernlab::as.kernelMatrix(k) else k
}
