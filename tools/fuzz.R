# Fuzz check before a release (make release-checks): every export of the
# installed diffrank (S3 methods through their generics, and the closures of
# the operators: $vjp, $jvp, $jacobian) is called once with a valid call and
# then with adversarial values of one argument at a time (NA, NaN, +-Inf,
# NULL, length 0 and 1, constants, ties, wrong types and shapes, 0, negative,
# subnormal and near-overflow values, huge sizes, bad choices, a misspelt
# argument, a missing required argument). Calls run in batches in Rscript
# children under an address-space limit (prlimit --as), with a timeout per
# call: a child that dies is a crash, a call over the timeout a hang, and the
# rest of its batch goes to a new child. Each call gets one outcome:
#   ok, ok_warned                 a finite result (with warnings), or a non-finite
#                                 one from non-finite inputs
#   nonfinite_warned              a non-finite result with a warning
#   nonfinite_silent   (bad)      a non-finite result (NaN or Inf anywhere, NA in
#                                 the value itself) from finite inputs, no warning
#   error_clear                   the message names the varied argument in backticks
#                                 (or, when the variant changes a shape, the other
#                                 argument of the mismatch), or the condition has
#                                 one of diffrank's classes
#                                 (R's "argument "x" is missing" and "unused
#                                 argument (y = 1)" for the missing and misspelt
#                                 variants name the argument, and are clear too)
#   error_unclear      (bad)      R internals (match.arg, non-conformable, subscript out of
#                                 bounds, no applicable method, ...), a message that
#                                 names no argument or another one, or a valid call
#                                 that fails
#   crash, hang        (bad)      the child died / the call ran past --timeout
#   caller_modified    (bad)      an argument object was changed in place
# Prints the counts per outcome and the bad calls, writes every call to a CSV,
# and exits with status 1 if any call is bad.
#   Rscript tools/fuzz.R [--quick] [--out FILE.csv] [--jobs N] [--mem-gb G]
#                        [--timeout S] [--only REGEX]
#     --quick      a subset of the variants (a few minutes; the whole run takes
#                  about 10 minutes on 2 cores)
#     --out        the CSV of every call (default $TMPDIR/diffrank-fuzz.csv)
#     --jobs       children at a time (2); --mem-gb: their address space (3 GB);
#     --timeout    seconds per call (60); --only: the functions whose label
#                  (as printed, e.g. "predict.qmf", "soft_rank_fn$vjp") matches
#   Rscript tools/fuzz.R --self-test   (one call per outcome, bad ones included:
#                                       checks that the harness tells them apart)
# (from the source folder, diffrank installed; Linux: prlimit and /proc)

bad_outcomes <- c("nonfinite_silent", "error_unclear", "crash", "hang", "caller_modified")
all_outcomes <- c("ok", "ok_warned", "nonfinite_warned", "error_clear", bad_outcomes)

# ---------------------------------------------------------------------------
# Arguments

parse_args <- function(argv) {
  opts <- list(self_test = FALSE, quick = FALSE,
               out = file.path(Sys.getenv("TMPDIR", "/tmp"), "diffrank-fuzz.csv"), jobs = 2L,
               mem_gb = 3, timeout = 60, only = NULL, child = NULL)
  i <- 1L
  value <- function() {
    if (i >= length(argv)) stop("option ", argv[i], " needs a value")
    argv[i + 1L]
  }
  while (i <= length(argv)) {
    a <- argv[i]
    if (a == "--quick") {
      opts$quick <- TRUE
    } else if (a == "--self-test") {
      opts$self_test <- TRUE
    } else if (a %in% c("--out", "--jobs", "--mem-gb", "--timeout", "--only", "--child")) {
      v <- value()
      switch(a,
             "--out" = opts$out <- v,
             "--jobs" = opts$jobs <- as.integer(v),
             "--mem-gb" = opts$mem_gb <- as.numeric(v),
             "--timeout" = opts$timeout <- as.numeric(v),
             "--only" = opts$only <- v,
             "--child" = opts$child <- v)
      i <- i + 1L
    } else {
      stop("unknown option ", a, "; usage: Rscript tools/fuzz.R [--quick] [--out FILE.csv] ",
           "[--jobs N] [--mem-gb G] [--timeout S] [--only REGEX]")
    }
    i <- i + 1L
  }
  if (is.na(opts$jobs) || opts$jobs < 1L) stop("--jobs must be a whole number >= 1")
  if (!is.finite(opts$timeout) || opts$timeout <= 0) stop("--timeout must be > 0 seconds")
  if (!is.finite(opts$mem_gb) || opts$mem_gb <= 0) stop("--mem-gb must be > 0")
  opts
}

# ---------------------------------------------------------------------------
# Data. Plain data are made at once (the same in every process: the cases
# are rebuilt from them); fits and operators lazily, in the child that needs
# them, before the call that uses them starts.

make_data <- function(env) {
  set.seed(1)
  env$X_VEC <- c(a = 0.5, b = 2.1, c = 2.0, d = -1, e = 0.3, f = 1.7)
  env$V_VEC <- c(1, -0.5, 0.2, 0.7, -1, 0.4)
  env$W_VEC <- c(6, 5, 4, 3, 2, 1)
  env$X_MAT <- matrix(rnorm(8 * 4), 8, 4, dimnames = list(paste0("g", 1:8), paste0("s", 1:4)))
  env$V_MAT <- matrix(rnorm(8 * 4), 8, 4)
  env$X_MAT_NA <- replace(env$X_MAT, c(2, 11, 20, 21), NA)
  env$TARGET <- sort(rnorm(8))
  env$GROUPS <- c("A", "A", "B", "B")
  x <- matrix(rnorm(40 * 24), 40, dimnames = list(paste0("g", 1:40), paste0("s", 1:24)))
  env$Y_BIN <- factor(rep(c("a", "b"), 12))
  x[1:5, env$Y_BIN == "b"] <- x[1:5, env$Y_BIN == "b"] + 1.5
  env$X_EXPR <- x
  env$X_NEW <- x[, 1:5]
  env$RANK_X <- matrix(rnorm(4 * 30), 4)
  env$RANKINGS <- apply(-(matrix(rnorm(3 * 4), 3) %*% env$RANK_X), 2, rank)
  env$QMF_X <- exp(matrix(rnorm(20 * 2), 20) %*% matrix(rnorm(2 * 16), 2))
  env$SCORES <- cbind(obs1 = c(a = 2, b = 1, c = 0), obs2 = c(a = 0, b = 1, c = 2))
  env$TOPK_LABELS <- c("a", "c")
  env$PRED <- c(0.2, 1.5, -0.3, 0.8, 2.2, 1.1)
  env$RESPONSE <- c(0.1, 1.2, -0.5, 1.0, 2.0, 0.9)
  env$R_SOLVER <- function(theta) as.numeric(rank(-theta) <= 2)
  env$TRAIN <- c(1:8, 13:20)
  # --self-test: one function per outcome, to check that the harness sees each
  env$FAKE_OK <- function(x) x + 1
  env$FAKE_WARNED <- function(x) {
    warning("a warning")
    x
  }
  env$FAKE_NONFINITE_WARNED <- function(x) {
    warning("an overflow")
    x * Inf
  }
  env$FAKE_NONFINITE_SILENT <- function(x) x * 1e308 * 1e308
  env$FAKE_CLEAR <- function(x) stop("`x` is wrong")
  env$FAKE_UNCLEAR <- function(x) stop("non-conformable arguments")
  env$FAKE_CRASH <- function(x) tools::pskill(Sys.getpid(), 11L)   # SIGSEGV
  env$FAKE_HANG <- function(x) repeat Sys.sleep(1)
  # changes the caller's binding of its argument, as an in-place change would
  env$FAKE_MODIFY <- function(x) {
    name <- as.character(substitute(x))
    assign(name, x * 2, envir = parent.frame())
    x
  }
  env
}

self_test_outcomes <- c(FAKE_OK = "ok", FAKE_WARNED = "ok_warned",
                        FAKE_NONFINITE_WARNED = "nonfinite_warned",
                        FAKE_NONFINITE_SILENT = "nonfinite_silent", FAKE_CLEAR = "error_clear",
                        FAKE_UNCLEAR = "error_unclear", FAKE_CRASH = "crash", FAKE_HANG = "hang",
                        FAKE_MODIFY = "caller_modified")

build_self_test_specs <- function() {
  s <- lapply(names(self_test_outcomes), function(f) spec(f, as.name(f), q(x = X_VEC)))
  names(s) <- names(self_test_outcomes)
  s
}

make_fits <- function(env) {
  lazy <- function(name, expr) {
    eval(substitute(delayedAssign(name, expr, eval.env = env, assign.env = env),
                    list(name = name, expr = substitute(expr))))
  }
  lazy("QT", quantile_target(X_MAT, threads = 2))
  lazy("QSW", qsmooth_weights(X_MAT, GROUPS, threads = 2))
  lazy("FIT_QMF", qmf(QMF_X, rank = 2, max_epochs = 5L, verbose = FALSE, threads = 2))
  lazy("FIT_SUQUAN", suquan(X_EXPR, Y_BIN, lambda = 0.1, max_iter = 5L, threads = 2))
  lazy("FIT_CV", cv_suquan(X_EXPR, Y_BIN, nlambda = 3L, rounds = 0:1, nfolds = 3L,
                           max_iter = 5L, progress = FALSE, threads = 2))
  lazy("FIT_SVM", rank_svm(X_EXPR, Y_BIN, n_features = c(10, 40), cost = c(1, 10), nfolds = 3L,
                           threads = 2))
  lazy("FIT_RR", rank_regression(RANK_X, RANKINGS, n_samples = 20L, max_iter = 20L, threads = 2))
  lazy("SUM_QMF", summary(FIT_QMF))
  lazy("SUM_SUQUAN", summary(FIT_SUQUAN))
  lazy("SUM_CV", summary(FIT_CV))
  lazy("SUM_SVM", summary(FIT_SVM))
  lazy("SUM_RR", summary(FIT_RR))
  lazy("KSVM", kernlab::ksvm(mallows_kernel(X_EXPR[, TRAIN], lambda = 2, progress = FALSE),
                             Y_BIN[TRAIN], type = "C-svc"))
  lazy("KL_KENDALL", kendall_kernlab())
  lazy("KL_MALLOWS", mallows_kernlab())
  lazy("KL_KENDALL_TOP", kendall_kernlab(type = "topk", k = 3))
  lazy("FIT_MALLOWS", mallows_model(RANKINGS))
  lazy("AGG", aggregate_rankings(RANKINGS))
  lazy("MIX", mallows_mixture(RANKINGS, 2))
  lazy("KL_WKENDALL", weighted_kendall_kernlab())
  lazy("P_SOLVER", perturbed_solver("rank", eps = 0.5, n_samples = 50))
  lazy("SK_VALUE", sinkhorn_rank(X_MAT, eps = 0.05, threads = 2, progress = FALSE))
  lazy("OP_SOFT_RANK", soft_rank_fn(X_MAT, eps = 0.5, threads = 2))
  lazy("OP_SOFT_SORT", soft_sort_fn(X_MAT, eps = 0.1, threads = 2))
  lazy("OP_SK_RANK", sinkhorn_rank_fn(X_MAT, eps = 0.05, threads = 2, progress = FALSE))
  lazy("OP_SK_CDF", sinkhorn_cdf_fn(X_MAT, eps = 0.05, threads = 2, progress = FALSE))
  lazy("OP_SK_SORT", sinkhorn_sort_fn(X_MAT, eps = 0.05, threads = 2, progress = FALSE))
  lazy("OP_SK_QUANTILE", sinkhorn_quantile_fn(X_MAT, probs = c(0.25, 0.5), eps = 0.05,
                                              threads = 2, progress = FALSE))
  lazy("OP_SK_TOPK", soft_topk_fn(X_MAT, k = 2, eps = 0.05, threads = 2, progress = FALSE))
  lazy("OP_SK_PLAN", sinkhorn_plan_fn(X_MAT, eps = 0.05, threads = 2, progress = FALSE))
  lazy("OP_SK_QUANTIZE", sinkhorn_quantize_fn(X_MAT, eps = 0.05, threads = 2, progress = FALSE))
  lazy("OP_SK_SORT_BY", sinkhorn_sort_by_fn(X_MAT, by = X_MAT[, 1], eps = 0.05, threads = 2,
                                            progress = FALSE))
  lazy("OP_SK_NORMALIZE", sinkhorn_normalize_fn(X_MAT, target = TARGET, eps = 0.05, threads = 2,
                                                progress = FALSE))
  lazy("OP_BK_PLAN", birkhoff_plan_fn(X_MAT, eps = 0.01, threads = 2))
  lazy("OP_BK_RANK", birkhoff_rank_fn(X_MAT, threads = 2))
  lazy("OP_NET_SORT", network_sort_fn(X_MAT, threads = 2))
  lazy("OP_NET_PLAN", network_plan_fn(X_MAT, relaxation = "cauchy", threads = 2))
  lazy("OP_PERTURBED", perturbed_fn(X_VEC, "rank", eps = 0.5, n_samples = 50, threads = 2))
  lazy("OP_P_SOLVER", P_SOLVER(X_VEC))
  env
}

# ---------------------------------------------------------------------------
# The calls: `f`, the function (an expression); `args`, the valid call's
# arguments (expressions, evaluated in the data environment); `roles`, how
# to vary an argument when its name alone does not say (see role_of);
# `fixed`, arguments left alone; `required`, the arguments without a
# default (taken from the function's formals when `f` is a name).

spec <- function(label, f, args, roles = character(), fixed = character(), required = NULL,
                 se = FALSE) {
  list(label = label, f = f, args = args, roles = roles, fixed = fixed, required = required,
       se = se)
}

default_roles <- c(
  x = "data", y = "data", v = "data", u = "data", z = "data", w = "data", pred = "data",
  response = "data", target = "data", by = "data", weights = "data", target_weights = "data",
  newdata = "data", train = "data", rough = "data",
  eps = "number", tol = "number", lambda = "number", power = "number", width = "number",
  probs = "number", trim = "number", window = "number", alpha = "number",
  smooth = "number", cost = "number", lambda_min_ratio = "number", weight = "number",
  n_targets = "size", k = "size", max_iter = "size", n_samples = "size", threads = "size",
  rank = "size", n_quantiles = "size", batch_size = "size", max_epochs = "size",
  nfolds = "size", nlambda = "size", n_remove = "size",
  rounds = "size", n_features = "size", assay.type = "size", rows = "size",
  reg = "choice", scale = "choice", loss = "choice", noise = "choice", type = "choice",
  variant = "choice", na = "choice", weighting = "choice", remove_extreme = "choice",
  ties = "choice", endrule = "choice", family = "choice", method = "choice",
  measure = "choice", optimizer = "choice", operator = "choice", s = "choice",
  which = "choice", wrt = "choice", solver = "choice", f_init = "choice",
  decreasing = "flag", antithetic = "flag", normalized = "flag", centre = "flag",
  geometric = "flag", verbose = "flag", progress = "flag", learn_weights = "flag",
  extend = "flag", plot = "flag", legend = "flag",
  groups = "labels", labels = "labels", folds = "labels", features = "labels",
  subset = "labels"
)

role_of <- function(s, arg) {
  if (arg %in% names(s$roles)) return(s$roles[[arg]])
  if (arg %in% names(default_roles)) return(default_roles[[arg]])
  "other"
}

q <- function(...) as.list(substitute(list(...)))[-1L]

build_specs <- function() {
  sk <- function(label, extra = list(), roles = character()) {
    spec(label, as.name(label),
         c(list(x = quote(X_MAT)), extra, q(eps = 0.05, threads = 2, progress = FALSE)),
         roles = roles)
  }
  skv <- function(label, extra = list(), roles = character()) {
    spec(label, as.name(label),
         c(list(x = quote(X_MAT), v = quote(V_MAT)), extra, q(eps = 0.05, threads = 2,
                                                              progress = FALSE)),
         roles = roles)
  }
  s <- list(
    spec("soft_rank", quote(soft_rank), q(x = X_MAT, eps = 0.5, reg = "l2", decreasing = FALSE,
                                          scale = "local", threads = 2)),
    spec("soft_sort", quote(soft_sort), q(x = X_MAT, eps = 0.1, reg = "l2", decreasing = FALSE,
                                          scale = "spacing", threads = 2)),
    spec("soft_rank_fn", quote(soft_rank_fn), q(x = X_MAT, eps = 0.5, reg = "kl", threads = 2)),
    spec("soft_sort_fn", quote(soft_sort_fn), q(x = X_VEC, eps = 0.1, scale = "sd", threads = 2)),
    spec("soft_rank_vjp", quote(soft_rank_vjp), q(x = X_MAT, v = V_MAT, eps = 0.5, threads = 2)),
    spec("soft_sort_vjp", quote(soft_sort_vjp), q(x = X_VEC, v = V_VEC, eps = 0.1, threads = 2)),
    spec("spearman_loss", quote(spearman_loss), q(pred = PRED, response = RESPONSE, eps = 0.5,
                                                  threads = 2)),
    spec("plot_soft_path", quote(plot_soft_path), q(x = X_VEC, operator = "rank", reg = "l2",
                                                    plot = TRUE)),
    spec("isotonic_regression", quote(isotonic_regression),
         q(y = V_VEC, weights = W_VEC, decreasing = FALSE)),
    spec("project_permutahedron", quote(project_permutahedron), q(z = X_VEC, w = W_VEC, reg = "l2")),
    spec("sinkhorn_rank", quote(sinkhorn_rank),
         q(x = X_MAT, eps = 0.05, n_targets = 4, decreasing = FALSE, scale = "squash", power = 2,
           tol = 1e-6, max_iter = 1000L, threads = 2, progress = FALSE)),
    sk("sinkhorn_cdf", extra = q(weights = W_VEC[1:8 %% 6 + 1])),
    sk("sinkhorn_sort", extra = q(target_weights = c(1, 2, 3, 2), n_targets = 4)),
    sk("sinkhorn_quantile", extra = q(probs = c(0.25, 0.5), width = 0.1)),
    sk("soft_topk", extra = q(k = 2)),
    sk("sinkhorn_plan"),
    sk("sinkhorn_sort_by", extra = q(by = X_MAT[, 1])),
    sk("sinkhorn_quantize", extra = q(n_targets = 3)),
    spec("sinkhorn_normalize", quote(sinkhorn_normalize),
         q(x = X_MAT, target = TARGET, eps = 0.05, scale = "none", threads = 2, progress = FALSE),
         se = TRUE),
    sk("sinkhorn_rank_fn"), sk("sinkhorn_cdf_fn"), sk("sinkhorn_sort_fn"),
    sk("sinkhorn_quantile_fn", extra = q(probs = 0.5)), sk("soft_topk_fn", extra = q(k = 2)),
    sk("sinkhorn_normalize_fn", extra = q(target = TARGET)),
    sk("sinkhorn_plan_fn"),
    sk("sinkhorn_sort_by_fn", extra = q(by = X_MAT[, 1])),
    sk("sinkhorn_quantize_fn", extra = q(n_targets = 3)),
    skv("sinkhorn_quantize_vjp", extra = q(n_targets = 3)),
    spec("sinkhorn_sort_by_vjp", quote(sinkhorn_sort_by_vjp),
         q(x = X_MAT, v = V_MAT, by = X_MAT[, 1], eps = 0.05, threads = 2, progress = FALSE)),
    spec("sinkhorn_plan_vjp", quote(sinkhorn_plan_vjp),
         q(x = X_MAT, v = array(V_MAT, c(8, 8, 4)), eps = 0.05, threads = 2, progress = FALSE)),
    skv("sinkhorn_rank_vjp"), skv("sinkhorn_cdf_vjp"), skv("sinkhorn_sort_vjp"),
    spec("sinkhorn_quantile_vjp", quote(sinkhorn_quantile_vjp),
         q(x = X_MAT, v = V_MAT[1, , drop = FALSE], probs = 0.5, eps = 0.05, threads = 2,
           progress = FALSE)),
    skv("soft_topk_vjp", extra = q(k = 2)),
    skv("sinkhorn_normalize_vjp", extra = q(target = TARGET)),
    spec("birkhoff_plan", quote(birkhoff_plan),
         q(x = X_MAT, eps = 1e-3, n_targets = 4, weights = W_VEC[1:8 %% 6 + 1],
           target_weights = c(1, 2, 3, 2), decreasing = FALSE, scale = "squash", power = 2,
           tol = 1e-9, max_iter = 100L, threads = 2)),
    spec("birkhoff_rank", quote(birkhoff_rank), q(x = X_MAT, eps = 1e-3, threads = 2)),
    spec("birkhoff_sort", quote(birkhoff_sort), q(x = X_VEC, eps = 1e-3, scale = "none")),
    spec("birkhoff_rank_fn", quote(birkhoff_rank_fn), q(x = X_MAT, eps = 0.01, threads = 2)),
    spec("birkhoff_rank_vjp", quote(birkhoff_rank_vjp),
         q(x = X_MAT, v = V_MAT, eps = 0.01, threads = 2)),
    spec("birkhoff_plan_vjp", quote(birkhoff_plan_vjp),
         q(x = X_MAT, v = array(V_MAT, c(8, 8, 4)), eps = 0.01, threads = 2)),
    spec("birkhoff_plan_fn", quote(birkhoff_plan_fn), q(x = X_VEC, n_targets = 3, threads = 2)),
    spec("birkhoff_sort_fn", quote(birkhoff_sort_fn), q(x = X_MAT, decreasing = TRUE)),
    spec("birkhoff_sort_vjp", quote(birkhoff_sort_vjp),
         q(x = X_MAT, v = V_MAT, eps = 0.01, power = 1.5, threads = 2)),
    spec("network_plan_fn", quote(network_plan_fn), q(x = X_MAT, network = "odd_even")),
    spec("network_sort_fn", quote(network_sort_fn), q(x = X_VEC, scale = "sd")),
    spec("network_rank_vjp", quote(network_rank_vjp),
         q(x = X_MAT, v = V_MAT, relaxation = "cauchy", decreasing = TRUE, threads = 2)),
    spec("network_sort", quote(network_sort),
         q(x = X_MAT, eps = 0.25, network = "bitonic", relaxation = "logistic",
           decreasing = FALSE, scale = "spacing", threads = 2)),
    spec("network_rank", quote(network_rank), q(x = X_MAT, network = "odd_even", threads = 2)),
    spec("network_plan", quote(network_plan), q(x = X_VEC, relaxation = "cauchy")),
    spec("network_rank_fn", quote(network_rank_fn), q(x = X_MAT, eps = 1, threads = 2)),
    spec("network_sort_vjp", quote(network_sort_vjp), q(x = X_MAT, v = V_MAT, threads = 2)),
    spec("network_plan_vjp", quote(network_plan_vjp),
         q(x = X_MAT, v = array(V_MAT, c(8, 8, 4)), threads = 2)),
    spec("soft_quantile_loss", quote(soft_quantile_loss),
         q(pred = PRED, response = RESPONSE, probs = 0.5, width = 0.05, eps = 0.01, threads = 2)),
    spec("soft_topk_loss", quote(soft_topk_loss),
         q(pred = SCORES, response = TOPK_LABELS, k = 1, eps = 0.01, threads = 2),
         roles = c(response = "labels")),
    spec("perturbed", quote(perturbed),
         q(x = X_VEC, solver = "rank", eps = 0.5, n_samples = 50, noise = "normal",
           antithetic = TRUE, threads = 2)),
    spec("perturbed[topk]", quote(perturbed), q(x = X_VEC, solver = "topk", k = 2, eps = 0.5,
                                                n_samples = 50, threads = 2)),
    spec("perturbed[R solver]", quote(perturbed), q(x = X_VEC, solver = R_SOLVER, eps = 0.5,
                                                    n_samples = 20, threads = 2)),
    spec("perturbed_fn", quote(perturbed_fn), q(x = X_MAT, solver = "argmax", eps = 0.5,
                                                n_samples = 50, noise = "gumbel", threads = 2)),
    spec("perturbed_vjp", quote(perturbed_vjp), q(x = X_VEC, v = V_VEC, solver = "sort", eps = 0.5,
                                                  n_samples = 50, threads = 2)),
    spec("perturbed_solver", quote(perturbed_solver), q(solver = "rank", eps = 0.5, n_samples = 50,
                                                        threads = 2)),
    spec("perturbed_solver()(x)", quote(P_SOLVER), q(x = X_VEC)),
    spec("fy_loss", quote(fy_loss), q(pred = X_VEC, response = W_VEC, solver = "rank", eps = 0.5,
                                      n_samples = 50, threads = 2)),
    spec("normalize_quantiles", quote(normalize_quantiles),
         q(x = X_MAT, target = NULL, ties = "midrank", threads = 2), se = TRUE),
    spec("normalize_quantiles[target]", quote(normalize_quantiles),
         q(x = X_MAT, target = TARGET, subset = 1:6, threads = 2)),
    spec("quantile_target", quote(quantile_target),
         q(x = X_MAT, threads = 2, weights = c(1, 2, 1, 1), trim = 0, geometric = FALSE,
           n_quantiles = 8), se = TRUE),
    spec("predict.quantile_target", quote(predict), q(object = QT, newdata = X_MAT[, 1:2],
                                                      ties = "average", threads = 2),
         fixed = "object"),
    spec("print.quantile_target", quote(print), q(x = QT), fixed = "x"),
    spec("plot.quantile_target", quote(plot), q(x = QT), fixed = "x"),
    spec("normalize_quantiles_robust", quote(normalize_quantiles_robust),
         q(x = X_MAT, remove_extreme = "variance", n_remove = 1, trim = 0, geometric = FALSE,
           threads = 2), se = TRUE),
    spec("robust_weights", quote(robust_weights), q(x = X_MAT, remove_extreme = "mean",
                                                    n_remove = 1), se = TRUE),
    spec("normalize_quantiles_groups", quote(normalize_quantiles_groups),
         q(x = X_MAT, groups = GROUPS, window = 0.05, endrule = "constant", threads = 2)),
    spec("qsmooth_weights", quote(qsmooth_weights), q(x = X_MAT, groups = GROUPS, window = 0.05,
                                                      threads = 2)),
    spec("plot_qsmooth_weights", quote(plot_qsmooth_weights), q(weights = QSW)),
    spec("kendall_kernel", quote(kendall_kernel),
         q(x = X_MAT, y = NULL, variant = "tau_b", na = "fail", threads = 2, progress = FALSE,
           centre = FALSE), se = TRUE),
    spec("kendall_kernel[topk, interleave]", quote(kendall_kernel),
         q(x = X_MAT_NA, y = NULL, variant = "tau_a", na = "interleave", type = "topk", k = 3,
           threads = 2, progress = FALSE)),
    spec("mallows_kernel[topk]", quote(mallows_kernel),
         q(x = X_MAT, lambda = 2, type = "topk", k = 3, threads = 2, progress = FALSE)),
    spec("mallows_kernel", quote(mallows_kernel),
         q(x = X_MAT, y = X_MAT[, 1:2], lambda = 1, normalized = TRUE, threads = 2,
           progress = FALSE), se = TRUE),
    spec("weighted_kendall_kernel", quote(weighted_kendall_kernel),
         q(x = X_MAT, weighting = "top", k = 3, threads = 2, progress = FALSE), se = TRUE),
    spec("kendall_counts", quote(kendall_counts), q(x = X_VEC, y = V_VEC)),
    spec("kendall_kernlab", quote(kendall_kernlab), q(variant = "tau_a")),
    spec("mallows_kernlab", quote(mallows_kernlab), q(lambda = 1, normalized = TRUE)),
    spec("weighted_kendall_kernlab", quote(weighted_kendall_kernlab),
         q(weighting = "additive", normalized = TRUE)),
    spec("kendall_kernlab()(x, y)", quote(KL_KENDALL), q(x = X_VEC, y = V_VEC)),
    spec("kendall_kernlab(topk)(x, y)", quote(KL_KENDALL_TOP), q(x = X_VEC, y = V_VEC)),
    spec("mallows_kernlab()(x, y)", quote(KL_MALLOWS), q(x = X_VEC, y = V_VEC)),
    spec("weighted_kendall_kernlab()(x, y)", quote(KL_WKENDALL), q(x = X_VEC, y = V_VEC)),
    spec("print.diffrank_kernlab", quote(print), q(x = KL_MALLOWS), fixed = "x"),
    spec("support_kernel", quote(support_kernel),
         q(fit = KSVM, newdata = X_EXPR[, -TRAIN], train = X_EXPR[, TRAIN], lambda = 2,
           kernel = mallows_kernel), fixed = c("fit", "kernel")),
    spec("qmf", quote(qmf), q(x = QMF_X, rank = 2, n_quantiles = 8L, eps = 0.01, loss = "squared",
                              lambda = 0.01, batch_size = 8L, max_epochs = 3L, optimizer = "lbfgs",
                              threads = 2, verbose = FALSE), se = TRUE),
    spec("qmf[adam]", quote(qmf), q(x = QMF_X, rank = 1, loss = "kl", optimizer = "adam",
                                    max_epochs = 3L, threads = 2, verbose = FALSE)),
    spec("predict.qmf", quote(predict), q(object = FIT_QMF, newdata = QMF_X[, 1:3],
                                          type = "fitted", tol = 1e-8, max_iter = 50L, threads = 2),
         fixed = "object"),
    spec("sample_coordinates.qmf", quote(sample_coordinates),
         q(object = FIT_QMF, newdata = QMF_X[, 1:3], threads = 2), fixed = "object"),
    spec("coef.qmf", quote(coef), q(object = FIT_QMF), fixed = "object"),
    spec("fitted.qmf", quote(fitted), q(object = FIT_QMF), fixed = "object"),
    spec("residuals.qmf", quote(residuals), q(object = FIT_QMF), fixed = "object"),
    spec("print.qmf", quote(print), q(x = FIT_QMF), fixed = "x"),
    spec("summary.qmf", quote(summary), q(object = FIT_QMF), fixed = "object"),
    spec("print.summary.qmf", quote(print), q(x = SUM_QMF), fixed = "x"),
    spec("plot.qmf", quote(plot), q(x = FIT_QMF, which = "quantiles", rows = 1:3), fixed = "x"),
    spec("suquan", quote(suquan), q(x = X_EXPR, y = Y_BIN, family = "binomial", method = "bnd",
                                    lambda = 0.1, alpha = 0, rounds = 1, smooth = 0,
                                    f_init = "mean", max_iter = 5L, tol = 1e-3, threads = 2),
         roles = c(y = "labels"), se = TRUE),
    spec("predict.suquan", quote(predict), q(object = FIT_SUQUAN, newdata = X_NEW,
                                             type = "response", threads = 2), fixed = "object"),
    spec("coef.suquan", quote(coef), q(object = FIT_SUQUAN), fixed = "object"),
    spec("print.suquan", quote(print), q(x = FIT_SUQUAN), fixed = "x"),
    spec("summary.suquan", quote(summary), q(object = FIT_SUQUAN), fixed = "object"),
    spec("print.summary.suquan", quote(print), q(x = SUM_SUQUAN), fixed = "x"),
    spec("plot.suquan", quote(plot), q(x = FIT_SUQUAN), fixed = "x"),
    spec("cv_suquan", quote(cv_suquan),
         q(x = X_EXPR, y = Y_BIN, lambda = NULL, nlambda = 3L, rounds = 0:1, nfolds = 3L,
           measure = "deviance", max_iter = 5L, progress = FALSE, threads = 2),
         roles = c(y = "labels"), se = TRUE),
    spec("predict.cv_suquan", quote(predict), q(object = FIT_CV, newdata = X_NEW, type = "class",
                                                s = "lambda_1se", threads = 2), fixed = "object"),
    spec("coef.cv_suquan", quote(coef), q(object = FIT_CV, s = "lambda_min"), fixed = "object"),
    spec("print.cv_suquan", quote(print), q(x = FIT_CV), fixed = "x"),
    spec("summary.cv_suquan", quote(summary), q(object = FIT_CV), fixed = "object"),
    spec("print.summary.cv_suquan", quote(print), q(x = SUM_CV), fixed = "x"),
    spec("plot.cv_suquan", quote(plot), q(x = FIT_CV), fixed = "x"),
    spec("rank_svm", quote(rank_svm),
         q(x = X_EXPR, y = Y_BIN, kernel = "kendall", n_features = c(10, 40), cost = c(1, 10),
           nfolds = 3L, centre = FALSE, threads = 2), roles = c(y = "labels"), se = TRUE),
    spec("predict.rank_svm", quote(predict), q(object = FIT_SVM, newdata = X_NEW,
                                               type = "decision"), fixed = "object"),
    spec("print.rank_svm", quote(print), q(x = FIT_SVM), fixed = "x"),
    spec("summary.rank_svm", quote(summary), q(object = FIT_SVM), fixed = "object"),
    spec("print.summary.rank_svm", quote(print), q(x = SUM_SVM), fixed = "x"),
    spec("coef.rank_svm", quote(coef), q(object = FIT_SVM), fixed = "object"),
    spec("rank_regression", quote(rank_regression),
         q(x = RANK_X, y = RANKINGS, loss = "fy", eps = 1, n_samples = 20L, lambda = 1e-3,
           max_iter = 20L, threads = 2), se = TRUE),
    spec("rank_regression[soft_rank]", quote(rank_regression),
         q(x = RANK_X, y = RANKINGS, loss = "soft_rank", eps = 1, lambda = 1e-3, max_iter = 20L,
           threads = 2)),
    spec("rmallows", quote(rmallows), q(n = 5, consensus = W_VEC, theta = 0.5, threads = 2)),
    spec("dmallows", quote(dmallows), q(x = RANKINGS, consensus = c(2, 1, 3), theta = 0.5,
                                        log = FALSE)),
    spec("mallows_model", quote(mallows_model), q(x = RANKINGS, consensus = NULL,
                                                  model = "mallows", threads = 2)),
    spec("mallows_model[generalized]", quote(mallows_model),
         q(x = RANKINGS, consensus = c(2, 1, 3), model = "generalized", threads = 2)),
    spec("rmallows[generalized]", quote(rmallows), q(n = 5, consensus = W_VEC,
                                                     theta = c(2, 1, 1, 0.5, 0), threads = 2)),
    spec("print.mallows_model", quote(print), q(x = FIT_MALLOWS), fixed = "x"),
    spec("aggregate_rankings", quote(aggregate_rankings),
         q(x = RANKINGS, method = "kemeny", missing = "bottom", weights = NULL, threads = 2)),
    spec("aggregate_rankings[copeland]", quote(aggregate_rankings),
         q(x = RANKINGS, method = "copeland", missing = "ignore", weights = NULL,
           threads = 2)),
    spec("print.rank_aggregation", quote(print), q(x = AGG), fixed = "x"),
    spec("mallows_mixture", quote(mallows_mixture),
         q(x = RANKINGS, n_components = 2, n_starts = 2, max_iter = 20, tol = 1e-8,
           threads = 2)),
    spec("mallows_mixture[select]", quote(mallows_mixture),
         q(x = RANKINGS, n_components = 1:2, n_starts = 1, holdout = 0.3, threads = 2)),
    spec("print.mallows_mixture", quote(print), q(x = MIX), fixed = "x"),
    spec("predict.mallows_mixture", quote(predict), q(object = MIX, newdata = RANKINGS,
                                                      threads = 2), fixed = "object"),
    spec("predict.rank_regression", quote(predict), q(object = FIT_RR, newdata = RANK_X[, 1:3],
                                                      type = "score"), fixed = "object"),
    spec("coef.rank_regression", quote(coef), q(object = FIT_RR), fixed = "object"),
    spec("print.rank_regression", quote(print), q(x = FIT_RR), fixed = "x"),
    spec("summary.rank_regression", quote(summary),
         q(object = FIT_RR, newdata = RANK_X, y = RANKINGS), fixed = "object"),
    spec("print.summary.rank_regression", quote(print), q(x = SUM_RR), fixed = "x"),
    spec("print.sinkhorn_result", quote(print), q(x = SK_VALUE), fixed = "x"),
    # base R's arithmetic and math: what they accept is R's, not the package's
    spec("Ops.sinkhorn_result", quote(`+`), q(e1 = SK_VALUE, e2 = X_MAT), fixed = c("e1", "e2")),
    spec("Math.sinkhorn_result", quote(log), q(x = SK_VALUE, base = 2), fixed = c("x", "base")),
    spec("print.diffrank_perturbed", quote(print), q(x = P_SOLVER), fixed = "x"),
    spec("diffrank_threads", quote(diffrank_threads), list())
  )
  # the closures of every operator
  ops <- c(OP_SOFT_RANK = "soft_rank_fn", OP_SOFT_SORT = "soft_sort_fn",
           OP_SK_RANK = "sinkhorn_rank_fn", OP_SK_CDF = "sinkhorn_cdf_fn",
           OP_SK_SORT = "sinkhorn_sort_fn", OP_SK_QUANTILE = "sinkhorn_quantile_fn",
           OP_SK_TOPK = "soft_topk_fn", OP_SK_NORMALIZE = "sinkhorn_normalize_fn",
           OP_SK_PLAN = "sinkhorn_plan_fn", OP_SK_SORT_BY = "sinkhorn_sort_by_fn",
           OP_SK_QUANTIZE = "sinkhorn_quantize_fn",
           OP_BK_PLAN = "birkhoff_plan_fn", OP_BK_RANK = "birkhoff_rank_fn",
           OP_NET_SORT = "network_sort_fn", OP_NET_PLAN = "network_plan_fn",
           OP_PERTURBED = "perturbed_fn", OP_P_SOLVER = "perturbed_solver()")
  # the cotangent and tangent of each: shaped like the value and the input
  vshape <- list(OP_SK_QUANTILE = quote(V_MAT[1:2, ]), OP_SK_PLAN = quote(array(V_MAT, c(8, 8, 4))),
                 OP_BK_PLAN = quote(array(V_MAT, c(8, 8, 4))),
                 OP_NET_PLAN = quote(array(V_MAT, c(8, 8, 4))),
                 OP_PERTURBED = quote(V_VEC),
                 OP_P_SOLVER = quote(V_VEC))
  ushape <- list(OP_PERTURBED = quote(V_VEC), OP_P_SOLVER = quote(V_VEC))
  for (op in names(ops)) {
    v <- if (is.null(vshape[[op]])) quote(V_MAT) else vshape[[op]]
    u <- if (is.null(ushape[[op]])) quote(V_MAT) else ushape[[op]]
    opn <- as.name(op)
    s[[length(s) + 1L]] <- spec(sprintf("%s$vjp", ops[[op]]), bquote(.(opn)$vjp),
                                list(v = v, wrt = "x"), required = "v")
    s[[length(s) + 1L]] <- spec(sprintf("%s$vjp[all]", ops[[op]]), bquote(.(opn)$vjp),
                                list(v = v, wrt = "all"), fixed = "wrt", required = "v")
    # the Sinkhorn operators have no $jvp (has_jvp is FALSE): it is an error by design
    if (!grepl("^OP_SK_", op)) {
      s[[length(s) + 1L]] <- spec(sprintf("%s$jvp", ops[[op]]), bquote(.(opn)$jvp), list(u = u),
                                  required = "u")
    }
    s[[length(s) + 1L]] <- spec(sprintf("%s$jacobian", ops[[op]]), bquote(.(opn)$jacobian),
                                list(wrt = "x"), required = character())
    s[[length(s) + 1L]] <- spec(sprintf("print.diffrank_operator[%s]", ops[[op]]), quote(print),
                                list(x = opn), fixed = "x")
  }
  names(s) <- vapply(s, `[[`, "", "label")
  s
}

# ---------------------------------------------------------------------------
# Adversarial values of one argument, by role. Deterministic: every process
# rebuilds the same cases.

scaled_to <- function(b, top) {
  m <- max(abs(b[is.finite(b)]), 0)
  if (m == 0) return(b * 0 + top)
  b / m * top
}

with_first <- function(b, value) {
  b[1L] <- value
  b
}

data_variants <- function(b) {
  if (is.function(b) || is.environment(b) || (is.list(b) && !is.data.frame(b))) {
    return(list(null = NULL, char = "a", num = 1))
  }
  if (is.factor(b) || is.character(b)) return(label_variants(b))
  if (!is.numeric(b) && !is.logical(b)) return(list(null = NULL, char = "a"))
  out <- list(
    na = with_first(b, NA), nan = with_first(b, NaN), inf = with_first(b, Inf),
    ninf = with_first(b, -Inf), null = NULL
  )
  if (is.matrix(b)) {
    out$len0 <- b[, 0L, drop = FALSE]
    out$rows0 <- b[0L, , drop = FALSE]
    out$len1 <- b[1L, , drop = FALSE]
    out$col1 <- b[, 1L, drop = FALSE]
    out$transposed <- t(b)
    out$mismatched <- b[-nrow(b), , drop = FALSE]
    out$list <- as.list(b)
    out$char <- array(as.character(b), dim(b), dimnames(b))
    out$df_char <- data.frame(id = as.character(seq_len(nrow(b))), b[, -1L, drop = FALSE],
                              stringsAsFactors = FALSE)
    out$df <- as.data.frame(b)
    out$vector <- as.vector(b)
    out$array3 <- array(b, c(dim(b), 1L))
  } else {
    out$len0 <- b[0L]
    out$len1 <- b[1L]
    out$mismatched <- b[-length(b)]
    out$list <- as.list(b)
    out$char <- as.character(b)
    out$factor <- factor(b)
    out$df_char <- data.frame(a = as.character(b), stringsAsFactors = FALSE)
    out$longer <- c(b, b)
  }
  out$const <- b * 0 + 1
  out$zero <- b * 0
  out$ties <- round(b)
  out$negative <- -b
  out$tiny_5e324 <- scaled_to(b, 5e-324)
  out$tiny_1e300 <- scaled_to(b, 1e-300)
  out$big_1e307 <- scaled_to(b, 1e307)
  out$big_1e308 <- scaled_to(b, 1e308)
  out$spread_1e308 <- with_first(b * 0, 1e308)  # one huge value, the rest 0
  out$logical <- b > 0
  out
}

label_variants <- function(b) {
  list(
    na = with_first(b, NA), null = NULL, len0 = b[0L], len1 = b[1L],
    one_class = rep(b[1L], length(b)), mismatched = b[-length(b)],
    numeric = seq_along(b) / 3, list = as.list(b), df = data.frame(y = b),
    all_na = b[NA_integer_][seq_along(b)]
  )
}

number_variants <- function(b) {
  list(na = NA_real_, nan = NaN, inf = Inf, ninf = -Inf, null = NULL, len0 = numeric(0),
       len2 = c(b, b)[1:2 + 0L], char = "a", list = list(b), zero = 0, negative = -1,
       tiny_5e324 = 5e-324, tiny_1e300 = 1e-300, big_1e307 = 1e307, big_1e308 = 1e308,
       logical = TRUE)
}

size_variants <- function(b) {
  c(number_variants(b), list(frac = 2.5, huge_1e9 = 1e9, intmax = .Machine$integer.max,
                             int_na = NA_integer_))
}

choice_variants <- function(b) {
  list(bogus = "bogus", na = NA_character_, len2 = c("bogus", "other"), num = 1, null = NULL,
       len0 = character(0), empty = "", upper = if (is.character(b)) toupper(b[1L]) else "RANK")
}

flag_variants <- function(b) {
  list(na = NA, char = "yes", len2 = c(TRUE, FALSE), null = NULL, num = 2, len0 = logical(0))
}

other_variants <- function(b) {
  list(null = NULL, char = "a", list = list(), na = NA)
}

variants_of <- function(role, b) {
  switch(role, data = data_variants(b), labels = label_variants(b),
         number = number_variants(b), size = size_variants(b), choice = choice_variants(b),
         flag = flag_variants(b), other_variants(b))
}

quick_variants <- c("base", "na", "inf", "null", "len0", "char", "df_char", "transposed",
                    "mismatched", "zero", "tiny_5e324", "big_1e308", "huge_1e9", "bogus",
                    "missing", "misspelt", "one_class", "se")

# Data frame of every case: spec label, varied argument, variant name.
build_cases <- function(specs, env, quick) {
  rows <- list()
  add <- function(label, arg, variant, role) {
    rows[[length(rows) + 1L]] <<- data.frame(label = label, arg = arg, variant = variant,
                                             role = role, stringsAsFactors = FALSE)
  }
  for (s in specs) {
    add(s$label, "", "base", "")
    for (arg in setdiff(names(s$args), s$fixed)) {
      b <- base_value(s, arg, env)
      role <- role_of(s, arg)
      for (v in names(variants_of(role, b))) add(s$label, arg, v, role)
      if (arg == "x" && isTRUE(s$se)) add(s$label, arg, "se", role)
    }
    for (arg in required_args(s, env)) add(s$label, arg, "missing", "required")
    add(s$label, misspelt_name(s), "misspelt", "extra")
  }
  cases <- do.call(rbind, rows)
  if (quick) cases <- cases[cases$variant %in% quick_variants, , drop = FALSE]
  # SummarizedExperiment takes seconds to load: its calls go together, last
  cases <- cases[order(cases$variant == "se"), , drop = FALSE]
  rownames(cases) <- NULL
  cases
}

base_value <- function(s, arg, env) {
  expr <- s$args[[arg]]
  # fits and operators are made in the child; here only their role matters
  nms <- all.names(expr)
  if (any(grepl("^(QT|QSW|FIT_|SUM_|KSVM|KL_|P_SOLVER|OP_|SK_VALUE)", nms))) return(list())
  eval(expr, env)
}

required_args <- function(s, env) {
  if (!is.null(s$required)) return(s$required)
  if (!is.name(s$f) || !exists(as.character(s$f), envir = env)) return(character())
  f <- get(as.character(s$f), envir = env)
  fm <- formals(if (is.primitive(f)) args(f) else f)
  req <- names(fm)[vapply(fm, function(d) identical(d, quote(expr = )), logical(1))]
  setdiff(intersect(req, names(s$args)), c(s$fixed, "..."))
}

# A misspelling of an argument of the call (one letter added, so that R's
# partial matching cannot take it for the real one).
misspelt_name <- function(s) {
  cand <- setdiff(names(s$args), c("x", "object", s$fixed))
  if (length(cand) == 0L) return("thread")
  paste0(cand[length(cand)], "s")
}

# ---------------------------------------------------------------------------
# One call, in a child

plain <- function(x, depth = 0L) {
  if (depth > 3L) return(FALSE)
  if (is.null(x) || is.atomic(x)) {
    a <- attributes(x)
    return(is.null(a) || all(vapply(a, plain, logical(1), depth + 1L)))
  }
  if (is.list(x)) {
    a <- attributes(x)
    return(all(vapply(x, plain, logical(1), depth + 1L)) &&
             (is.null(a) || all(vapply(a, plain, logical(1), depth + 1L))))
  }
  FALSE
}

all_finite <- function(x) {
  if (is.numeric(x) || is.complex(x)) return(!any(!is.finite(x)))
  if (is.data.frame(x) || (is.list(x) && !is.object(x))) {
    return(all(vapply(x, all_finite, logical(1))))
  }
  TRUE
}

# The first non-finite numeric entry of a result, as a path ("" when none).
# Inside the components of a fit or a list, NA (not NaN) is a placeholder by
# design (for example the change of the first epoch of qmf()'s history); NaN
# and Inf are judged everywhere.
nonfinite_path <- function(x, path = "value", depth = 0L) {
  if (inherits(x, "diffrank_operator")) return(nonfinite_path(x$value, paste0(path, "$value")))
  if (is.numeric(x) && !is.object(x) || is.matrix(x) && is.numeric(x) || is.double(x)) {
    bad <- !is.finite(x)
    if (depth > 0L) bad <- bad & !(is.na(x) & !is.nan(x))
    return(if (any(bad)) path else "")
  }
  if (is.list(x) && depth < 2L) {
    for (i in seq_along(x)) {
      nm <- names(x)[i]
      p <- nonfinite_path(x[[i]], paste0(path, "$", if (is.null(nm) || !nzchar(nm)) i else nm),
                          depth + 1L)
      if (nzchar(p)) return(p)
    }
  }
  ""
}

# Variants that change an argument's shape: an error that names the other
# argument of the mismatch (`weights` must have the length of `y`) is clear.
# "len2" is one: two quantile levels (`probs`) make the value two rows, and
# the cotangent `v` of one row is then the wrong shape.
shape_variants <- c("len0", "rows0", "len1", "len2", "col1", "transposed", "mismatched",
                    "vector", "longer", "one_class", "array3")

internal_patterns <- c(
  "argument \"[^\"]+\" is missing", "unused argument", "arg. should be one of",
  "'arg' must be of length", "non-conformable", "subscript out of bounds",
  "no applicable method", "object '[^']+' not found", "could not find function",
  "std::bad_alloc", "cannot allocate vector", "NAs introduced", "missing value where",
  "argument is of length zero", "invalid 'type'", "incorrect number of dimensions",
  "replacement has", "argument of length 0", "non-numeric argument", "\\$ operator is invalid",
  "attempt to apply non-function", "invalid argument to unary operator",
  "Not compatible with requested type", "not a matrix", "index out of bounds",
  "dims \\[product", "NA/NaN/Inf in foreign function call", "Expecting a single value"
)

classify_error <- function(e, arg, variant, call_args) {
  msg <- conditionMessage(e)
  if (variant == "base" && !self_test) return(c("error_unclear", "the valid call failed"))
  # R's own argument-matching errors name the argument the user got wrong
  # (`argument "x" is missing, with no default`, `unused argument (y = 1)`):
  # as clear as a message of the package, for the variants that cause them.
  quoted <- gsub(".", "\\.", arg, fixed = TRUE)
  if (variant == "missing" && grepl(sprintf("argument \"%s\" is missing", quoted), msg)) {
    return(c("error_clear", "R names the missing argument"))
  }
  if (variant == "misspelt" && grepl(sprintf("unused argument \\(%s = ", quoted), msg)) {
    return(c("error_clear", "R names the unused argument"))
  }
  internal <- internal_patterns[vapply(internal_patterns, grepl, logical(1), msg)]
  if (length(internal) > 0L) return(c("error_unclear", "R internals"))
  if (any(grepl("^diffrank_", class(e)))) return(c("error_clear", "diffrank condition"))
  if (self_test) arg <- "x"
  named <- grepl(sprintf("`[^`]*\\b%s\\b[^`]*`", gsub(".", "\\.", arg, fixed = TRUE)), msg,
                 perl = TRUE)
  if (named) return(c("error_clear", ""))
  other <- regmatches(msg, gregexpr("`[^`]+`", msg))[[1L]]
  others <- setdiff(call_args, arg)
  if (variant %in% shape_variants && length(others) && length(other) &&
      any(vapply(others, function(a) any(grepl(sprintf("\\b%s\\b", a), other, perl = TRUE)),
                 logical(1)))) {
    return(c("error_clear", sprintf("names %s (the other side of a shape mismatch)", other[1L])))
  }
  c("error_unclear", if (length(other)) paste("names", other[1L], "not the varied argument")
                     else "names no argument")
}

run_case <- function(case, specs, env) {
  s <- specs[[case$label]]
  args <- s$args
  # the fits and operators the call uses are made first, outside the timing
  for (nm in intersect(unlist(lapply(c(list(s$f), args), all.names)), ls(env))) {
    suppressWarnings(suppressMessages(get(nm, envir = env)))
  }
  ce <- new.env(parent = env)
  values <- lapply(args, eval, envir = env)
  if (case$variant == "missing") {
    values[[case$arg]] <- NULL
  } else if (case$variant == "misspelt") {
    values[case$arg] <- list(1)
  } else if (case$variant == "se") {
    suppressPackageStartupMessages(requireNamespace("SummarizedExperiment", quietly = TRUE))
    values[["x"]] <- SummarizedExperiment::SummarizedExperiment(list(counts = values[["x"]]))
  } else if (case$variant != "base") {
    # built as in the parent (build_cases), so that the names match
    vs <- variants_of(case$role, base_value(s, case$arg, env))
    if (!case$variant %in% names(vs)) stop("no variant ", case$variant, " of ", case$arg)
    values[case$arg] <- list(vs[[case$variant]])
  }
  arg_names <- sprintf(".arg_%d", seq_along(values))
  for (i in seq_along(values)) assign(arg_names[i], values[[i]], envir = ce)
  call <- as.call(c(list(s$f), stats::setNames(lapply(arg_names, as.name), names(values))))
  checkable <- vapply(values, plain, logical(1))
  copies <- lapply(values[checkable], function(v) unserialize(serialize(v, NULL)))
  finite_in <- all(vapply(values[!vapply(values, is.object, logical(1)) |
                                   vapply(values, is.data.frame, logical(1))],
                          all_finite, logical(1)))
  warnings <- character()
  wclasses <- character()
  set.seed(42)
  t0 <- proc.time()[["elapsed"]]
  result <- withCallingHandlers(
    tryCatch({
      utils::capture.output(value <- eval(call, ce))
      list(ok = TRUE, value = value)
    }, error = function(e) list(ok = FALSE, error = e)),
    warning = function(w) {
      warnings <<- c(warnings, conditionMessage(w))
      wclasses <<- c(wclasses, class(w)[1L])
      invokeRestart("muffleWarning")
    },
    message = function(m) invokeRestart("muffleMessage"))
  seconds <- proc.time()[["elapsed"]] - t0
  modified <- names(copies)[!mapply(identical, copies,
                                    mget(arg_names[checkable], envir = ce))]
  outcome <- if (length(modified)) {
    c("caller_modified", paste("changed:", paste(modified, collapse = ", ")))
  } else if (!result$ok) {
    classify_error(result$error, case$arg, case$variant, names(values))
  } else {
    path <- nonfinite_path(result$value)
    if (nzchar(path) && length(warnings)) {
      c("nonfinite_warned", path)
    } else if (nzchar(path) && finite_in) {
      c("nonfinite_silent", path)
    } else if (length(warnings)) {
      c("ok_warned", if (nzchar(path)) paste("non-finite input, non-finite", path) else "")
    } else {
      c("ok", if (nzchar(path)) paste("non-finite input, non-finite", path) else "")
    }
  }
  list(outcome = outcome[1L], reason = outcome[2L], seconds = seconds,
       message = if (!result$ok) conditionMessage(result$error) else "",
       warnings = paste(unique(sprintf("[%s] %s", wclasses, warnings)), collapse = " | "))
}

one_line <- function(x) gsub("[\t\r\n]+", " ", x)

child_main <- function(batch_file) {
  batch <- readRDS(batch_file)
  progress <- batch$progress
  cat(sprintf("PID\t%d\n", Sys.getpid()), file = progress, append = TRUE)
  suppressPackageStartupMessages(library(diffrank))
  grDevices::pdf(NULL)
  options(warn = 1)
  env <- make_fits(make_data(new.env(parent = asNamespace("diffrank"))))
  self_test <<- batch$self_test
  specs <- if (self_test) build_self_test_specs() else build_specs()
  for (i in seq_len(nrow(batch$cases))) {
    case <- batch$cases[i, ]
    cat(sprintf("START\t%d\t%.3f\n", case$id, as.numeric(Sys.time())), file = progress,
        append = TRUE)
    r <- run_case(case, specs, env)
    # EOL marks a line written in full
    cat(paste("END", case$id, r$outcome, one_line(r$reason), sprintf("%.3f", r$seconds),
              one_line(r$warnings), one_line(r$message), "EOL", sep = "\t"), "\n", sep = "",
        file = progress, append = TRUE)
  }
  cat("DONE\n", file = progress, append = TRUE)
}

# ---------------------------------------------------------------------------
# The parent: batches of cases in Rscript children

process_alive <- function(pid) {
  stat <- sprintf("/proc/%d/stat", pid)
  if (!file.exists(stat)) return(FALSE)
  s <- tryCatch(readLines(stat, warn = FALSE), error = function(e) "")
  # a zombie (state Z) has died but has not been reaped
  !grepl("^[0-9]+ \\(.*\\) [ZX] ", s[1L])
}

read_progress <- function(file) {
  if (!file.exists(file)) return(character())
  readLines(file, warn = FALSE)
}

run_all <- function(cases, opts, script) {
  workdir <- tempfile("fuzz-")
  dir.create(workdir)
  results <- data.frame(outcome = rep(NA_character_, nrow(cases)), reason = "", seconds = NA_real_,
                        warnings = "", message = "", stringsAsFactors = FALSE)
  chunk <- if (opts$quick) 40L else 60L
  # cases of a label stay together, so that a child makes a fit once
  queue <- split(cases$id, ceiling(seq_len(nrow(cases)) / chunk))
  running <- list()
  n_started <- 0L
  done <- 0L
  started_at <- Sys.time()
  last_report <- 0
  start_child <- function(ids) {
    n_started <<- n_started + 1L
    tag <- sprintf("child%04d", n_started)
    progress <- file.path(workdir, paste0(tag, ".progress"))
    log <- file.path(workdir, paste0(tag, ".log"))
    batch_file <- file.path(workdir, paste0(tag, ".rds"))
    saveRDS(list(cases = cases[match(ids, cases$id), ], progress = progress,
                 self_test = opts$self_test), batch_file)
    rscript <- file.path(R.home("bin"), "Rscript")
    system2("prlimit", c(sprintf("--as=%.0f", opts$mem_gb * 2^30), rscript, shQuote(script),
                         "--child", shQuote(batch_file)),
            stdout = log, stderr = log, wait = FALSE)
    list(tag = tag, ids = ids, progress = progress, log = log, pid = NA_integer_,
         launched = Sys.time())
  }
  record <- function(id, outcome, reason, seconds, warnings, message) {
    if (is.na(results$outcome[id])) done <<- done + 1L
    results[id, ] <<- list(outcome, reason, seconds, warnings, message)
  }
  while (length(queue) || length(running)) {
    while (length(running) < opts$jobs && length(queue)) {
      running[[length(running) + 1L]] <- start_child(queue[[1L]])
      queue <- queue[-1L]
    }
    Sys.sleep(0.25)
    keep <- rep(TRUE, length(running))
    for (j in seq_along(running)) {
      r <- running[[j]]
      # whether the child lives is read before its progress, so that a child
      # that finishes between the two reads is not taken for a crash
      alive <- if (is.na(r$pid)) {
        difftime(Sys.time(), r$launched, units = "secs") < 120
      } else process_alive(r$pid)
      lines <- read_progress(r$progress)
      fields <- strsplit(lines, "\t", fixed = TRUE)
      kind <- vapply(fields, `[`, "", 1L)
      if (is.na(r$pid) && any(kind == "PID")) {
        r$pid <- as.integer(fields[[which(kind == "PID")[1L]]][2L])
        running[[j]] <- r
      }
      ended <- integer()
      for (f in fields[kind == "END"]) {
        if (length(f) != 8L || f[8L] != "EOL") next
        id <- as.integer(f[2L])
        ended <- c(ended, id)
        if (is.na(results$outcome[id])) record(id, f[3L], f[4L], as.numeric(f[5L]), f[6L], f[7L])
      }
      starts <- fields[kind == "START" & lengths(fields) == 3L]
      current <- if (length(starts)) as.integer(starts[[length(starts)]][2L]) else NA_integer_
      if (!is.na(current) && current %in% ended) current <- NA_integer_
      left <- setdiff(r$ids, c(ended, current))
      if ("DONE" %in% kind) {
        keep[j] <- FALSE
        next
      }
      if (!alive) {
        log <- tail(read_progress(r$log), 3L)
        if (is.na(current) && length(ended) == 0L) {
          # died before its first call (start-up, or the making of a fit): the harness's fault
          stop(sprintf("child %s died before its first call; its log %s ends with:\n%s", r$tag,
                       r$log, paste(log, collapse = "\n")))
        }
        if (is.na(current)) {
          # between two calls (a finalizer, or the making of a fit): charged to the next one
          current <- left[1L]
          left <- left[-1L]
          reason <- "the child process died between calls, before this one"
        } else {
          reason <- "the child process died"
        }
        record(current, "crash", reason, NA_real_, "", one_line(paste(log, collapse = " ")))
        if (length(left)) queue <- c(list(left), queue)
        keep[j] <- FALSE
        next
      }
      if (!is.na(current)) {
        t0 <- as.numeric(starts[[length(starts)]][3L])
        if (!is.na(t0) && as.numeric(Sys.time()) - t0 > opts$timeout) {
          tools::pskill(r$pid, tools::SIGKILL)
          record(current, "hang", sprintf("no result after %g s", opts$timeout), opts$timeout,
                 "", "")
          if (length(left)) queue <- c(list(left), queue)
          keep[j] <- FALSE
        }
      }
    }
    running <- running[keep]
    now <- as.numeric(difftime(Sys.time(), started_at, units = "secs"))
    if (now - last_report >= 30) {
      last_report <- now
      cat(sprintf("%d of %d calls, %.0f s\n", done, nrow(cases), now))
    }
  }
  unlink(workdir, recursive = TRUE)
  cbind(cases, results)
}

# ---------------------------------------------------------------------------

self_test <- FALSE

self_test_main <- function(opts, env, script) {
  self_test <<- TRUE
  cases <- data.frame(label = names(self_test_outcomes), arg = "", variant = "base", role = "",
                      stringsAsFactors = FALSE)
  cases$id <- seq_len(nrow(cases))
  opts$timeout <- min(opts$timeout, 5)
  res <- run_all(cases, opts, script)
  res$expected <- self_test_outcomes[res$label]
  print(res[, c("label", "expected", "outcome", "reason")], row.names = FALSE)
  if (any(is.na(res$outcome) | res$outcome != res$expected)) {
    cat("self-test FAILED: the harness misclassifies the calls above\n")
    quit(status = 1L)
  }
  cat("self-test passed: every outcome class is detected\n")
}

main <- function() {
  argv <- commandArgs(trailingOnly = TRUE)
  opts <- parse_args(argv)
  full <- commandArgs(FALSE)
  script <- normalizePath(sub("^--file=", "", grep("^--file=", full, value = TRUE)[1L]))
  if (!is.null(opts$child)) return(invisible(child_main(opts$child)))
  if (!file.exists("/proc/self/stat") || !nzchar(Sys.which("prlimit"))) {
    stop("tools/fuzz.R needs Linux (/proc) and prlimit (util-linux)")
  }
  if (!requireNamespace("diffrank", quietly = TRUE)) stop("install diffrank first")
  env <- make_data(new.env(parent = asNamespace("diffrank")))
  if (opts$self_test) return(invisible(self_test_main(opts, env, script)))
  specs <- build_specs()
  exports <- getNamespaceExports("diffrank")
  covered <- unique(unlist(lapply(specs, function(s) all.names(s$f))))
  labels <- names(specs)
  untested <- setdiff(exports, c(covered, sub("[.[(].*", "", labels)))
  if (length(untested)) {
    cat("exports without a call in tools/fuzz.R:", paste(untested, collapse = ", "), "\n")
  }
  s3 <- getNamespaceInfo("diffrank", "S3methods")
  s3 <- paste(s3[, 1L], s3[, 2L], sep = ".")
  s3_untested <- s3[!s3 %in% sub("\\[.*", "", labels) &
                      !grepl("\\.(default|SummarizedExperiment)$", s3)]
  if (length(s3_untested)) {
    cat("S3 methods without a call in tools/fuzz.R:", paste(s3_untested, collapse = ", "), "\n")
  }
  # a new export or method fails the check until it has a call here
  uncovered <- length(untested) + length(s3_untested) > 0L
  cases <- build_cases(specs, env, opts$quick)
  if (!is.null(opts$only)) cases <- cases[grepl(opts$only, cases$label), , drop = FALSE]
  if (nrow(cases) == 0L) stop("no call matches --only ", opts$only)
  cases$id <- seq_len(nrow(cases))
  cat(sprintf("%d calls of %d functions, %d jobs, timeout %g s, address space %g GB per child\n",
              nrow(cases), length(unique(cases$label)), opts$jobs, opts$timeout, opts$mem_gb))
  t0 <- Sys.time()
  res <- run_all(cases, opts, script)
  elapsed <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
  res$outcome[is.na(res$outcome)] <- "crash"
  utils::write.csv(res[, c("label", "arg", "variant", "role", "outcome", "reason", "seconds",
                           "message", "warnings")], opts$out, row.names = FALSE)
  counts <- table(factor(res$outcome, levels = all_outcomes))
  cat(sprintf("\n%d calls in %.0f s; every call in %s\n\n", nrow(res), elapsed, opts$out))
  for (o in names(counts)) {
    cat(sprintf("%-17s %6d%s\n", o, counts[[o]], if (o %in% bad_outcomes) "  (bad)" else ""))
  }
  bad <- res[res$outcome %in% bad_outcomes, , drop = FALSE]
  if (nrow(bad)) {
    cat(sprintf("\n%d bad calls (function, varied argument = value: outcome, reason; message)\n",
                nrow(bad)))
    bad <- bad[order(match(bad$outcome, bad_outcomes), bad$label), ]
    for (i in seq_len(nrow(bad))) {
      b <- bad[i, ]
      cat(sprintf("%-16s %s(%s = <%s>): %s%s\n", b$outcome, b$label, b$arg, b$variant,
                  if (nzchar(b$reason)) paste0(b$reason, "; ") else "",
                  substr(b$message, 1L, 200L)))
    }
  }
  base_bad <- res[res$variant == "base" & !res$outcome %in% c("ok", "ok_warned"), ]
  if (nrow(base_bad)) {
    cat("\nvalid calls that did not succeed:", paste(base_bad$label, collapse = ", "), "\n")
  }
  if (uncovered) cat("\nsome exports or methods have no call in tools/fuzz.R (listed at the top)\n")
  if (nrow(bad) || uncovered) quit(status = 1L)
}

main()
