#' Perturbed optimizers: any discrete solver made differentiable
#'
#' A discrete solver \eqn{y^*(\theta) = \arg\max_{y \in C} \langle y, \theta
#' \rangle}{y*(theta) = argmax over y in C of <y, theta>} (the largest entry,
#' the top k, the ranks, a shortest path, ...) is
#' piecewise constant in \eqn{\theta}{theta}: its derivative is zero or undefined.
#' Its *perturbed* version (Berthet et al. 2020) averages it over random
#' perturbations of \eqn{\theta}{theta},
#' \deqn{y_\varepsilon(\theta) = E[y^*(\theta + \varepsilon Z)],}{
#' y_eps(theta) = E[y*(theta + eps Z)],}
#' which is smooth in \eqn{\theta}{theta}, never locally constant, and tends to
#' \eqn{y^*(\theta)}{y*(theta)} as `eps` goes to 0. Its Jacobian follows from an
#' integration by parts, without differentiating the solver:
#' \deqn{J = E[y^*(\theta + \varepsilon Z) \nabla\nu(Z)^\top] / \varepsilon,}{
#' J = E[y*(theta + eps Z) grad nu(Z)'] / eps,}
#' where \eqn{\nu}{nu} is the negative log-density of the noise
#' (\eqn{\nabla\nu(z) = z}{grad nu(z) = z} for the standard normal,
#' \eqn{1 - e^{-z}}{1 - exp(-z)} for the
#' standard Gumbel). The perturbed maximum \eqn{F_\varepsilon(\theta) =
#' E[\max_{y \in C} \langle y, \theta + \varepsilon Z \rangle]}{F_eps(theta) =
#' E[max over y in C of <y, theta + eps Z>]} is convex with
#' gradient \eqn{y_\varepsilon(\theta)}{y_eps(theta)}; it gives the Fenchel-Young loss of
#' [fy_loss()].
#'
#' As for the other families of the package (see [diffrank_operator]),
#' `perturbed(x, solver, ...)` gives the value \eqn{y_\varepsilon(x)}{y_eps(x)} (`x` is
#' the \eqn{\theta}{theta} above), `perturbed_fn(x, solver, ...)` the operator with
#' its derivatives, and `perturbed_vjp(x, v, solver, ...)` the gradient of
#' `sum(v * value)` with respect to `x`. `perturbed_solver(solver, ...)` turns
#' a solver into a differentiable function: it returns a function of `x` that
#' gives what `perturbed_fn()` gives, with new draws at every call.
#' The former call `perturbed(solver, ...)`, which made that function, still
#' works in this release, with a deprecation warning.
#'
#' @section Near-constant results:
#' As `eps` grows the perturbed argmax, top-k and ranks tend to constants
#' (every entry equally likely to be selected, every rank the middle one).
#' When a column of the value has a spread below 1% of that of the solver's
#' output at `x` (the rule of [soft_rank()] and [sinkhorn_rank()]), a warning
#' says that `eps` is large for these data. The value is a Monte-Carlo mean,
#' whose noise alone spreads it by about `1 / sqrt(n_samples)` of the hard
#' result's spread, so the spread is judged net of that noise (estimated from
#' the draws, with a margin of two standard errors, when there are at least
#' 20 independent draws or antithetic pairs): a value whose spread is within
#' its Monte-Carlo noise is reported too. `"sort"` has no constant limit
#' (its value grows with `eps`) and is not judged.
#'
#' @section Estimates and draws:
#' Expectations are Monte-Carlo averages over `n_samples` draws of the noise,
#' made with R's random number generator on the main thread before any
#' computation: [set.seed()] reproduces the results, whatever the number of
#' threads. The same draws serve the value, `$maximum`, `$vjp()`, `$jvp()`
#' and `$jacobian()`: the vector-Jacobian product is exactly `v` times the
#' Jacobian estimate, and each call of the function returned by
#' `perturbed_solver()` makes new draws.
#'
#' With normal noise and `antithetic = TRUE` (the default) the draws come in
#' pairs \eqn{(z, -z)}{(z, -z)}: the estimates keep the formulas above over all
#' `n_samples` draws and stay unbiased, their variance is lower (the
#' Jacobian estimate no longer carries the large term
#' \eqn{y^*(\theta) Z^\top}{y*(theta) Z'} whose mean is zero), and half as many random
#' numbers are drawn. The Gumbel law is not symmetric: its draws are always
#' independent. With Gumbel noise, the perturbed argmax is exactly
#' `softmax(x / eps)`.
#'
#' @section Solvers:
#' Built-in solvers, written in C++ and run over the draws in parallel:
#' * `"argmax"`: the one-hot vector of the largest entry of `x`;
#' * `"topk"`: the indicator of the `k` largest entries (give `k`);
#' * `"rank"`: the ranks of `x`, 1 for the smallest (the vertex of the
#'   permutahedron of `1:n` that maximizes \eqn{\langle y, x \rangle}{<y, x>}); its
#'   perturbed version is a soft rank, compare [soft_rank()];
#' * `"sort"`: `sort(x)`. It is not the argmax of a linear objective, so it
#'   has no perturbed maximum and no Fenchel-Young loss, but its perturbed
#'   version and derivatives are valid.
#'
#' Any other solver is an R function `solver(theta, ...)` that takes a
#' numeric vector like a column of `x` and returns a numeric vector of a
#' fixed length (often that of `theta`): it is called once per draw (and per
#' column) with the perturbed vector, and the extra arguments in `...`. For
#' the perturbed maximum and the Fenchel-Young loss it must return the
#' maximizer of `sum(y * theta)` over its set, of the length of `theta`.
#' A function that cannot be called as `solver(theta, ...)` is an error
#' before any draw; an error raised inside the solver is re-raised with the
#' draw it failed on (class `diffrank_solver_error`, the solver's own
#' condition as its `parent`).
#'
#' @param x The scores \eqn{\theta}{theta}: a numeric vector, or a matrix (or data
#'   frame) whose columns are independent problems. Missing and infinite
#'   values are errors. For `print()`, a function made by
#'   `perturbed_solver()`.
#' @param solver `"argmax"`, `"topk"`, `"rank"`, `"sort"` or an R function;
#'   see the section Solvers.
#' @param eps Size of the perturbation, a positive number, in the units of
#'   `x`, at least `sqrt(.Machine$double.xmin)` (about `1.5e-154`): the
#'   derivative estimates divide by it.
#' @param n_samples Number of draws `M`, at least 1. The standard error of
#'   the estimates decreases as `1 / sqrt(n_samples)`.
#' @param noise `"normal"` (standard normal) or `"gumbel"` (standard Gumbel,
#'   drawn as `-log(-log(runif()))`).
#' @param antithetic Draw the normal noise in antithetic pairs; see the
#'   section Estimates and draws. Ignored for Gumbel noise.
#' @param ... For `"topk"`, `k`, the number of entries to select (a whole
#'   number from 1 to `nrow(x)`); for an R solver, further arguments passed to
#'   it; nothing for the other built-in solvers.
#' @param threads Number of threads over the draws of built-in solvers; see
#'   [diffrank_threads()]. The results do not depend on it.
#' @return `perturbed()` returns the perturbed maximizer, `perturbed_fn()$value`
#'   below. `perturbed_solver()` returns a function of class
#'   `diffrank_perturbed` whose only argument is `x` and which returns what
#'   `perturbed_fn()` returns. `perturbed_fn()` returns a [diffrank_operator]:
#'   * `value`: the perturbed maximizer, a vector (for a vector `x`) or a
#'     matrix with one column per column of `x`; rows named after `x` unless
#'     the solver is `"sort"` (or an R solver that names its own output);
#'   * `maximum`: the perturbed maximum of each column (`NA` where it is not
#'     defined);
#'   * `vjp(v)`, `jvp(u)` and `jacobian()`: the derivative estimates (the
#'     Jacobian is `length(value) x length(x)` for a vector, an array
#'     `rows x rows of x x columns` for a matrix).
#'
#'   `perturbed_vjp()` returns the gradient, shaped like `x`.
#' @references Berthet Q, Blondel M, Teboul O, Cuturi M, Vert JP, Bach F
#'   (2020). Learning with differentiable perturbed optimizers. *Advances in
#'   Neural Information Processing Systems 33 (NeurIPS 2020)*.
#'   \doi{10.48550/arXiv.2002.08676}
#' @seealso [fy_loss()] to learn with a perturbed solver, [rank_regression()]
#'   for label ranking, and [soft_rank()] and [sinkhorn_rank()] for
#'   deterministic soft ranks.
#' @export
#' @examples
#' set.seed(1)
#' x <- c(a = 1, b = 0.5, c = -1)
#' # close to exp(x / 0.5) / sum(exp(x / 0.5))
#' perturbed(x, "argmax", eps = 0.5, n_samples = 1000, noise = "gumbel")
#' # the same solver as a differentiable function of x
#' soft_argmax <- perturbed_solver("argmax", eps = 0.5, n_samples = 1000, noise = "gumbel")
#' op <- soft_argmax(x)
#' op
#' op$jacobian()
#' # perturbed ranks: 1.2 and 1.25 share ranks 3 and 4; the gradient of the
#' # second rank moves those two values only
#' op <- perturbed_fn(c(0.3, 1.2, 1.25, -0.7), "rank", eps = 0.1, n_samples = 500)
#' op$value
#' op$vjp(c(0, 1, 0, 0))
#' # top 2, and a solver written in R (here the same one)
#' perturbed_fn(c(0.3, 1.2, 1.25, -0.7), "topk", k = 2, eps = 0.1)$value
#' top2 <- function(theta) as.numeric(rank(-theta) <= 2)
#' perturbed_fn(c(0.3, 1.2, 1.25, -0.7), top2, eps = 0.1)$value
perturbed <- function(x, solver, eps = 1, n_samples = 100, noise = c("normal", "gumbel"),
                      antithetic = TRUE, ..., threads = diffrank_threads()) {
  old_call <- if (missing(x)) !missing(solver) && is_solver(solver) else is_solver(x)
  if (!old_call && missing(x)) abort("`x` is missing: give the scores to perturb.")
  if (old_call) {
    # the factory of diffrank 0.x: perturbed(solver, eps, ...), deprecated
    warning(warningCondition(paste0(
      "`perturbed(solver, ...)` is deprecated: use `perturbed_solver(solver, ...)` for the ",
      "function of `x` it made; `perturbed(x, solver, ...)` now returns the value, as ",
      "`soft_rank()` and `sinkhorn_rank()` do."),
      class = c("deprecatedWarning", "diffrank_deprecated"), call = sys.call()))
    call <- sys.call()
    call[[1L]] <- perturbed_solver
    return(eval(call, parent.frame()))
  }
  if (missing(solver)) abort("`solver` is missing: give a solver name or an R function.")
  perturbed_build(x, solver, eps, n_samples, noise, antithetic, ..., threads = threads,
                  warn_maximum = FALSE)$value
}

# Whether the first argument of perturbed() is a solver (the deprecated
# factory call) rather than scores.
is_solver <- function(x) {
  is.function(x) ||
    (is.character(x) && length(x) == 1L && !is.na(x) && x %in% perturbed_solvers)
}

#' @rdname perturbed
#' @export
perturbed_solver <- function(solver, eps = 1, n_samples = 100, noise = c("normal", "gumbel"),
                             antithetic = TRUE, ..., threads = diffrank_threads()) {
  spec <- perturbed_spec(solver, eps, n_samples, noise, antithetic, list(...), threads)
  structure(function(x) perturbed_operator(x, spec), class = c("diffrank_perturbed", "function"),
            spec = spec)
}

#' @rdname perturbed
#' @export
perturbed_fn <- operator_form("perturbed", "fn")

#' @rdname perturbed
#' @param v For `perturbed_vjp()`, the vector (or matrix) to multiply the
#'   Jacobian with from the left, of the shape of the value.
#' @export
perturbed_vjp <- operator_form("perturbed", "vjp")

#' @rdname perturbed
#' @export
print.diffrank_perturbed <- function(x, ...) {
  check_dots_empty(...)
  spec <- attr(x, "spec")
  cat(sprintf("<diffrank_perturbed> perturbed %s: a function of x giving a diffrank_operator\n",
              spec$label))
  settings <- perturbed_settings(spec)
  cat("  ", paste(names(settings), vapply(settings, format_setting, ""), sep = " = ",
                  collapse = ", "), "\n", sep = "")
  invisible(x)
}

#' Perturbed Fenchel-Young loss
#'
#' The Fenchel-Young loss of a perturbed solver (Berthet et al. 2020), a
#' convex loss for learning scores `pred` whose solution should be the
#' observed `target` (a ranking, a one-hot label, a path, ...):
#' \deqn{L(\theta; y) = F_\varepsilon(\theta) - \langle \theta, y \rangle -
#' \varepsilon \langle y, E[Z] \rangle,}{L(theta; y) = F_eps(theta) - <theta, y> - eps <y, E[Z]>,}
#' with \eqn{F_\varepsilon}{F_eps} the perturbed maximum of [perturbed_fn()]. Its
#' gradient is \eqn{y_\varepsilon(\theta) - y}{y_eps(theta) - y}, the perturbed maximizer minus
#' the target: no derivative of the solver is needed.
#'
#' The expectations are estimated from `n_samples` draws \eqn{Z_m}{Z_m}, as the
#' mean over the draws of \eqn{\max_{y' \in C} \langle y', \theta +
#' \varepsilon Z_m \rangle - \langle y, \theta + \varepsilon Z_m \rangle}{max over y' in C
#' of <y', theta + eps Z_m> - <y, theta + eps Z_m>}.
#' For a target in the convex hull of the solver's set every term is
#' non-negative, so the loss is non-negative; it is zero when the solver
#' returns the target for every draw (scores far in the direction of the
#' target), and its gradient, `$gradient`, is exactly the perturbed maximizer
#' minus the target for the same draws. The last term of the formula is the
#' constant that makes the loss zero at its minimum: zero for normal noise,
#' \eqn{\varepsilon \gamma \sum_i y_i}{eps gamma sum_i y_i} (Euler's
#' \eqn{\gamma}{gamma}) for Gumbel noise.
#' For the argmax with Gumbel noise the loss is the multinomial logistic loss
#' `eps * log(sum(exp(pred / eps))) - sum(pred * response)`.
#'
#' For [stats::optim()], call [set.seed()] at the start of the objective and
#' of its gradient, so that both use the same draws at every step (common
#' random numbers): the objective is then a fixed convex piecewise-linear
#' function, and the gradient is its gradient (`withr::with_seed()` does the
#' same without resetting the session's random stream). Otherwise every
#' evaluation makes new draws, as stochastic gradient descent wants.
#'
#' @inheritParams perturbed
#' @param antithetic Draw the normal noise in antithetic pairs; see the
#'   section Estimates and draws of [perturbed()]. Ignored for Gumbel noise.
#' @param pred The scores, a numeric vector, or a matrix with one problem per
#'   column (one observation per column).
#' @param response The observed solutions (the target of the loss), of the
#'   shape of `pred`: points of the solver's set (for `"rank"`, ranks with 1
#'   for the smallest; for `"argmax"`, one-hot vectors) or of its convex
#'   hull. Formerly `target`, still accepted by name with a warning for one
#'   release.
#' @param solver `"argmax"`, `"topk"`, `"rank"` or an R function returning
#'   the maximizer of `sum(y * theta)` (of the length of `theta`).
#' @return A list with `value`, the loss averaged over the columns of `pred`,
#'   and `gradient`, its gradient with respect to `pred` (shaped like `pred`,
#'   with its names): `(perturbed maximizer - response) / ncol(pred)`.
#' @references Berthet Q, Blondel M, Teboul O, Cuturi M, Vert JP, Bach F
#'   (2020). Learning with differentiable perturbed optimizers. *NeurIPS
#'   2020*. \doi{10.48550/arXiv.2002.08676}
#'
#'   Blondel M, Martins AFT, Niculae V (2020). Learning with Fenchel-Young
#'   losses. *Journal of Machine Learning Research* 21(35), 1-69.
#' @seealso [rank_regression()], which fits a linear model with this loss.
#' @export
#' @examples
#' # learn scores whose ranks are the target ranks, by gradient descent
#' target <- c(2, 4, 1, 3)
#' theta <- rep(0, 4)
#' set.seed(1)
#' for (step in 1:50) theta <- theta - 0.5 * fy_loss(theta, target, "rank")$gradient
#' rank(theta)
#' # with optim and common random numbers
#' loss <- function(theta) {
#'   set.seed(42)
#'   fy_loss(theta, target, "rank", eps = 0.5, n_samples = 200)
#' }
#' fit <- optim(rep(0, 4), function(t) loss(t)$value, function(t) loss(t)$gradient,
#'              method = "BFGS")
#' rank(fit$par)
fy_loss <- function(pred, response, solver, eps = 1, n_samples = 100,
                    noise = c("normal", "gumbel"), antithetic = TRUE, ...,
                    threads = diffrank_threads()) {
  solver_args <- take_renamed(list(...), "target", "response", "fy_loss()")
  if (missing(response)) abort("`response` is missing: give the observed solutions.")
  spec <- perturbed_spec(solver, eps, n_samples, noise, antithetic, solver_args, threads,
                         arg = "pred")
  fw <- perturbed_forward(pred, spec, arg = "pred")
  perturbed_warn_near_constant(fw, spec)
  if (!fw$has_maximum) {
    abort("`solver` has no Fenchel-Young loss: it must maximize sum(y * theta) and return a vector of the length of `pred` (\"sort\" does not).")
  }
  like <- if (fw$shape$vector) fw$shape$nrow else c(fw$shape$nrow, fw$shape$ncol)
  response <- check_direction(response, like, "response", "`pred`")
  losses <- perturbed_state_fy_cpp(fw$state, response, spec$threads)
  if (nonfinite_kind_cpp(losses) != 0L) {
    fw <- perturbed_downscale(fw, spec)
    losses <- perturbed_state_fy_cpp(fw$scaled_state, response, spec$threads) * fw$scale
    warn_nonfinite(losses, c("pred", "eps"))
  }
  gradient <- (fw$value - as.vector(response)) / fw$shape$ncol
  list(value = mean(losses), gradient = shape_like_input(gradient, fw$shape, TRUE))
}

# ---------------------------------------------------------------------------
# helpers

perturbed_solvers <- c("argmax", "topk", "rank", "sort")

# The checked settings of a perturbed operator.
perturbed_spec <- function(solver, eps, n_samples, noise, antithetic, dots, threads,
                           arg = "x") {
  noise <- match_choice(noise, c("normal", "gumbel"), "noise")
  spec <- list(eps = check_perturbed_eps(eps),
               n_samples = check_whole(n_samples, "n_samples"), noise = noise,
               antithetic = check_flag(antithetic, "antithetic") && noise == "normal",
               threads = check_threads(threads), k = 1L, fun = NULL, args = list(), arg = arg)
  if (is.function(solver)) {
    check_solver_signature(solver, dots)
    spec$solver <- "user"
    spec$label <- "user solver"
    spec$fun <- solver
    spec$args <- dots
    return(spec)
  }
  if (!is.character(solver) || length(solver) != 1L || is.na(solver) ||
      !(solver %in% perturbed_solvers)) {
    abort("`solver` must be one of %s or an R function, not %s.",
          paste0("\"", perturbed_solvers, "\"", collapse = ", "), describe(solver))
  }
  spec$solver <- solver
  spec$label <- solver
  allowed <- if (solver == "topk") "k" else character()
  unknown <- setdiff(names(dots) %||% rep("", length(dots)), allowed)
  if (length(unknown) > 0L) {
    abort("Unknown argument %s for the \"%s\" solver: check its spelling.",
          if (nzchar(unknown[1L])) sprintf("`%s`", unknown[1L]) else "an unnamed value", solver)
  }
  if (solver == "topk") {
    if (is.null(dots$k)) abort("`k` is missing: give the number of entries the \"topk\" solver selects.")
    spec$k <- check_whole(dots$k, "k")
  }
  spec
}

`%||%` <- function(a, b) if (is.null(a)) b else a

# The derivative estimates divide by eps (J = E[y Z'] / eps, scaled by
# 1 / (eps * n_samples)): below sqrt(.Machine$double.xmin) that scale leaves
# the double range and a denormal eps gave all-NaN derivatives. One rule for
# every entry point, so that a value and its derivatives accept the same eps.
perturbed_eps_min <- sqrt(.Machine$double.xmin)

check_perturbed_eps <- function(eps) {
  eps <- check_number(eps, "eps", lower = 0, allow_lower = FALSE)
  if (eps < perturbed_eps_min) {
    abort(paste0("`eps` must be at least %s (sqrt(.Machine$double.xmin)), not %s: the ",
                 "derivative estimates divide by `eps` and would leave the range of double precision."),
          format(perturbed_eps_min, digits = 3), format(eps, digits = 3))
  }
  eps
}

# A solver is called as solver(theta, <the arguments in ...>): checked once,
# before any draw, so that a function of another signature is an error that
# says so rather than R's "unused argument (points[, 1])" from inside the loop.
check_solver_signature <- function(solver, dots) {
  definition <- if (is.primitive(solver)) args(solver) else solver
  if (!is.function(definition)) return(invisible())  # a primitive without a known signature
  formals <- formals(definition)
  usage <- "`solver` must be a function of one numeric vector (the perturbed scores), called as solver(theta, ...) with the extra arguments given in `...`"
  labels <- names(dots) %||% rep("", length(dots))
  call <- as.call(c(list(quote(solver), quote(theta)), stats::setNames(vector("list", length(dots)), labels)))
  matched <- tryCatch(match.call(definition, call), error = function(e) NULL)
  if (is.null(matched)) {
    # the extra arguments in backticks: a misspelt argument of perturbed()
    # itself (`threadss = 2`) ends up here, and must be named
    extra <- paste0(", ", ifelse(nzchar(labels), paste0("`", labels, "` = "), ""), "...", collapse = "")
    abort("%s; a function(%s) cannot be called as solver(theta%s).", usage,
          paste(names(formals), collapse = ", "), if (length(dots) == 0L) "" else extra)
  }
  required <- names(formals)[vapply(formals, function(a) identical(a, quote(expr = )), TRUE)]
  unset <- setdiff(required, c(names(matched)[-1L], "..."))
  if (length(unset) > 0L) {
    abort("%s; its argument `%s` has no default and no value in `...`.", usage, unset[1L])
  }
  invisible()
}

# Runs expr, calls of an R solver (and code that cannot fail): an error
# raised inside the solver comes back with where it happened (`where()`,
# read when it happens), of class diffrank_solver_error with the original
# condition as its parent.
with_solver_context <- function(expr, where) {
  withCallingHandlers(expr, error = function(e) {
    message <- sprintf("`solver` failed on %s: %s", where(), conditionMessage(e))
    stop(structure(class = c("diffrank_solver_error", "error", "condition"),
                   list(message = message, call = exported_caller(), parent = e)))
  })
}

perturbed_settings <- function(spec) {
  out <- list(solver = spec$label, eps = spec$eps, n_samples = spec$n_samples,
              noise = spec$noise, antithetic = spec$antithetic)
  if (spec$solver == "topk") out$k <- spec$k
  out
}

# The base noise vectors of ncol problems of length n, from R's generator:
# n x (draws per problem) x ncol, with ceil(M / 2) draws per problem when
# they are paired.
perturbed_draws <- function(spec, n, ncol) {
  # the draws, the perturbed points and their solutions: three doubles per
  # value and draw
  check_memory(24 * as.double(n) * spec$n_samples * ncol, "n_samples", spec$n_samples)
  # in double precision: n_samples may be .Machine$integer.max
  per_problem <- if (spec$antithetic) (spec$n_samples + 1) %/% 2 else spec$n_samples
  count <- as.double(n) * per_problem * ncol
  if (count * (1 + spec$antithetic) > .Machine$integer.max) {
    abort("`n_samples` = %s draws of %d x %d values are too many (at most 2^31 values).",
          big(spec$n_samples), n, ncol)
  }
  draw <- function(k) if (spec$noise == "normal") stats::rnorm(k) else -log(-log(stats::runif(k)))
  # Drawn in chunks (the same stream as one call) with an interrupt check in
  # between: R's generators do not check, and 1e9 draws take a minute.
  chunk <- 2^22
  if (count <= chunk) return(draw(count))
  out <- numeric(count)
  for (start in seq(1, count, by = chunk)) {
    end <- min(count, start + chunk - 1)
    out[start:end] <- draw(end - start + 1)
    check_interrupt_cpp()
  }
  out
}

# The forward pass: checks x, draws the noise (unless `z` is given), solves
# every draw and returns the value (a plain vector, d x ncol), the maxima,
# the C++ state and the shapes.
perturbed_forward <- function(x, spec, z = NULL, arg = spec$arg) {
  m <- as_numeric_matrix(x, arg)
  if (nrow(m) == 0L || ncol(m) == 0L) {
    abort("`%s` must have at least one value (and one column), not %d x %d.", arg, nrow(m),
          ncol(m))
  }
  if (anyNA(m)) abort("`%s` must not contain missing values (NA or NaN).", arg)
  if (any(is.infinite(m))) abort("`%s` must not contain infinite values.", arg)
  shape <- input_shape(x, m)
  n <- nrow(m)
  if (spec$solver == "topk" && spec$k > n) {
    abort("`k` must be at most the number of values (%d), not %d.", n, spec$k)
  }
  if (is.null(z)) z <- perturbed_draws(spec, n, ncol(m))
  if (!is.finite(max(abs(m)) + spec$eps * max(abs(range(z))))) {
    abort("`%s` or `eps` is too large: the perturbed values overflow.", arg)
  }
  options <- list(solver = spec$solver, noise = spec$noise, eps = spec$eps, k = spec$k,
                  n_samples = spec$n_samples, antithetic = spec$antithetic)
  in_names <- if (shape$vector) shape$names else rownames(m)
  if (spec$solver == "user") {
    sol <- user_solutions(m, z, options, spec)
    d <- sol$d
    row_names <- sol$names %||% if (d == n) in_names else NULL
    res <- perturbed_state_cpp(m, n, z, options, sol$y, d, spec$threads)
  } else {
    d <- n
    row_names <- if (spec$solver == "sort") NULL else in_names
    res <- perturbed_state_cpp(m, n, z, options, NULL, d, spec$threads)
  }
  fw <- list(value = res$value, maximum = res$maximum, state = res$state, shape = shape, d = d,
             row_names = row_names, m = m, z = z,
             solutions = if (spec$solver == "user") sol$y,
             has_maximum = spec$solver != "sort" && d == n)
  if (fw$has_maximum && nonfinite_kind_cpp(fw$maximum) != 0L) {
    fw <- perturbed_downscale(fw, spec)
    fw$maximum <- fw$maximum * fw$scale
  }
  if (!shape$vector) names(fw$maximum) <- colnames(m)
  fw
}

# The perturbed maximum and the Fenchel-Young loss are positively homogeneous
# in (x, eps), and dividing both by a power of two changes no draw's
# solution: when <y, x + eps Z> leaves the double range (scores near
# 1e308), they are computed on x / 2^e with eps / 2^e and the same draws and
# solutions, then multiplied by 2^e (`scale`). `scaled_state` holds that
# problem for the loss; the derivatives keep `state` (the scaled problem's
# Jacobian is 2^e times the original's).
perturbed_downscale <- function(fw, spec) {
  if (!is.null(fw$scale)) return(fw)
  e <- ceiling(log2(max(abs(fw$m)) + spec$eps * max(abs(fw$z))))
  options <- list(solver = spec$solver, noise = spec$noise, eps = spec$eps * 2^-e, k = spec$k,
                  n_samples = spec$n_samples, antithetic = spec$antithetic)
  res <- perturbed_state_cpp(fw$m * 2^-e, nrow(fw$m), fw$z, options, fw$solutions, fw$d,
                             spec$threads)
  fw$scaled_state <- res$state
  fw$maximum <- res$maximum
  fw$scale <- 2^e
  fw
}

# The near-constant rule of warn_near_constant() (R/checks.R) for a
# perturbed operator: each column of the value against the solver's output
# at x (for the built-in solvers, its limit as eps -> 0: tied entries share
# the argmax, the top-k mass and their ranks). The value is a Monte-Carlo
# mean whose noise alone has a spread of about 1 / sqrt(n_samples) of the
# hard result's, so a column is judged by its spread net of that noise: the
# variance across its entries minus the mean estimated variance of an entry
# (from the draws' solutions; pairs of antithetic draws are one sample) and
# two standard errors of the variance of pure noise across its entries
# (with at least 20 independent samples: 20 draws, or 20 antithetic pairs). The
# draws are examined only for the columns that could be near-constant, those
# whose spread is within a bound on the noise or below 1% of a bound on the
# hard result's. "sort" has no constant limit and is not judged.
perturbed_warn_near_constant <- function(fw, spec) {
  if (spec$solver == "sort") return(invisible())
  n <- fw$shape$nrow
  d <- fw$d
  ncol <- fw$shape$ncol
  value <- matrix(fw$value, d, ncol)
  M <- spec$n_samples
  units <- if (spec$antithetic) M %/% 2L else M
  if (d < 2L) return(invisible())
  # an R solver's outputs near the double limit are judged in a power-of-two
  # unit (the rule is scale-free), so that their variances do not overflow
  unit <- if (spec$solver == "user") power_of_two_unit(fw$solutions) else 1
  if (unit != 1) value <- value / unit
  vars <- apply(value, 2L, stats::var)
  # the variance across d entries of pure noise: its mean, times d / (d - 1)
  # when the entries have a fixed sum (argmax, top-k, ranks), has a standard
  # error of about sqrt(2 / (d - 1)) of it; two are taken off as well. With
  # fewer than 20 independent samples the noise is not estimated well
  # enough, and the value is judged as it is.
  denoise <- units >= 20L
  margin <- if (denoise) d / (d - 1) * (1 + 2 * sqrt(2 / (d - 1))) else 0
  # bounds: entries in [lo, hi] have a hard spread below hi - lo and a draw
  # variance at most (v - lo) (hi - v) (twice that for a mean of a pair)
  lo <- switch(spec$solver, argmax = , topk = 0, rank = 1, NA)
  hi <- switch(spec$solver, argmax = , topk = 1, rank = n, NA)
  candidates <- if (is.na(lo)) {
    seq_len(ncol)
  } else {
    bd <- (value - lo) * (hi - value)
    bd[bd < 0] <- 0
    noise <- colMeans(bd) * (1 + spec$antithetic) / M
    which(vars < (near_constant_fraction * (hi - lo))^2 + 2 * margin * noise)
  }
  if (length(candidates) == 0L) return(invisible())
  reference <- matrix(0, d, ncol)
  judged <- value
  nb <- length(fw$z) / (n * ncol)
  options <- list(solver = spec$solver, noise = spec$noise, eps = spec$eps, k = spec$k,
                  n_samples = M, antithetic = spec$antithetic)
  for (j in candidates) {
    theta <- fw$m[, j]
    reference[, j] <- perturbed_hard(theta, spec) / unit
    if (!denoise) next
    y <- if (spec$solver == "user") {
      fw$solutions[, (j - 1) * M + seq_len(M), drop = FALSE] / unit
    } else {
      points <- perturbed_points_cpp(theta, n, fw$z[(j - 1L) * n * nb + seq_len(n * nb)],
                                     options)
      apply(points, 2L, perturbed_hard, spec = spec, ties = FALSE)
    }
    if (spec$antithetic) y <- (y[, 2L * seq_len(units) - 1L] + y[, 2L * seq_len(units)]) / 2
    noise <- mean((rowSums(y^2) - rowSums(y)^2 / units) / (units - 1)) / units
    v <- value[, j]
    net <- vars[j] - noise * margin
    shrink <- if (vars[j] > 0) sqrt(max(0, net) / vars[j]) else 0
    judged[, j] <- mean(v) + shrink * (v - mean(v))
  }
  warn_near_constant(judged, reference, sprintf("perturbed %s", spec$label), spec$eps)
}

# The solver's output at theta: for the built-in solvers with `ties`, the
# limit of the perturbed value as eps -> 0 (tied entries share).
perturbed_hard <- function(theta, spec, ties = TRUE) {
  n <- length(theta)
  switch(spec$solver,
    argmax = if (ties) as.numeric(theta == max(theta)) / sum(theta == max(theta))
             else replace(numeric(n), which.max(theta), 1),
    topk = {
      top <- as.numeric(rank(-theta, ties.method = "first") <= spec$k)
      if (ties) stats::ave(top, theta) else top
    },
    rank = rank(theta, ties.method = if (ties) "average" else "first"),
    sort = sort(theta),
    user = {
      args <- c(list(theta), spec$args)
      as.double(with_solver_context(do.call(spec$fun, args), function() "the unperturbed scores"))
    })
}

# Calls an R solver on every perturbed point and checks what it returns:
# the solutions as a d x (n_samples * ncol) matrix, d and the names of the
# first solution.
user_solutions <- function(m, z, options, spec) {
  points <- perturbed_points_cpp(m, nrow(m), z, options)
  fun <- spec$fun
  args <- spec$args
  solve <- if (length(args) == 0L) fun else function(p) do.call(fun, c(list(p), args))
  draws <- spec$n_samples
  where <- function(t) {
    if (ncol(m) == 1L) sprintf("draw %d", t)
    else sprintf("draw %d of column %d", (t - 1L) %% draws + 1L, (t - 1L) %/% draws + 1L)
  }
  t <- 1L
  context <- function() {
    sprintf("a perturbed input (draw %d of %d%s)", (t - 1L) %% draws + 1L, draws,
            if (ncol(m) == 1L) "" else sprintf(", column %d of %d", (t - 1L) %/% draws + 1L, ncol(m)))
  }
  # Only the solver's calls run under the handler (and code that cannot
  # fail): a draw whose output is not usable ends the loop, and is reported
  # after it.
  first <- with_solver_context(solve(points[, 1L]), context)
  if (!(is.numeric(first) || is.logical(first)) || is.object(first) || length(first) == 0L) {
    abort("`solver` must return a numeric vector, not %s (%s).", describe(first), where(1L))
  }
  d <- length(first)
  y <- matrix(0, d, ncol(points))
  y[, 1L] <- first
  failed <- 0L
  with_solver_context({
    for (t in seq_len(ncol(points))[-1L]) {
      out <- solve(points[, t])
      if (!(is.numeric(out) || is.logical(out)) || length(out) != d) {
        failed <- t
        break
      }
      y[, t] <- out
    }
  }, context)
  if (failed > 0L) {
    abort("`solver` must return a numeric vector of the same length for every draw: %d values for draw 1, %s for %s.",
          d, describe(out), where(failed))
  }
  if (anyNA(y) || any(is.infinite(y))) {
    t <- which(colSums(!is.finite(y)) > 0L)[1L]
    abort("`solver` must return finite values; it returned NA, NaN or Inf for %s.", where(t))
  }
  list(y = y, d = d, names = names(first))
}

# A d x ncol result (a plain vector) in the shape of the value: a vector for
# a vector x, else a matrix with the column names of x.
perturbed_shape <- function(out, fw) {
  if (fw$shape$vector) {
    out <- as.vector(out)
    names(out) <- fw$row_names
    return(out)
  }
  dim(out) <- c(fw$d, fw$shape$ncol)
  dn <- list(fw$row_names, fw$shape$dimnames[[2L]])
  if (!all(vapply(dn, is.null, TRUE))) dimnames(out) <- dn
  out
}

# The builder of the perturbed family (R/operator_table.R): the operator of
# perturbed_fn(). Its value and one-call VJP forms do not warn about a
# non-finite perturbed maximum, which only the operator object shows.
perturbed_build <- function(x, solver, eps, n_samples, noise, antithetic, ..., threads,
                            warn_maximum = TRUE) {
  if (is.null(solver)) abort("`solver` is missing: give a solver name or an R function.")
  perturbed_operator(x, perturbed_spec(solver, eps, n_samples, noise, antithetic, list(...),
                                       threads), warn_maximum)
}

perturbed_build_vjp <- function(x, v, ...) perturbed_build(x, ..., warn_maximum = FALSE)$vjp(v)

perturbed_operator <- function(x, spec, warn_maximum = TRUE) {
  fw <- perturbed_forward(x, spec)
  perturbed_warn_near_constant(fw, spec)
  fw$m <- fw$z <- fw$solutions <- fw$scaled_state <- NULL
  state <- fw$state
  threads <- spec$threads
  product <- function(direction, transpose) {
    out <- perturbed_state_product_cpp(state, direction, transpose, threads)
    if (nonfinite_kind_cpp(out) == 0L) return(out)
    # Directions near the double limit overflow in <v, y_m> (or <u, grad nu>):
    # redone with the direction scaled by a power of two (exact) and the
    # result scaled back, it is finite whenever the true product is.
    size <- max(abs(direction))
    if (size > 1) {
      e <- floor(log2(size))
      out <- perturbed_state_product_cpp(state, direction * 2^-e, transpose, threads) * 2^e
    }
    # what is left is the solutions' own size (as "sort" of scores near 1e308)
    warn_nonfinite(out, c(if (transpose) "v" else "u", "x"))
  }
  jacobian <- function() {
    jac <- perturbed_state_jacobian_cpp(state, threads)
    in_names <- if (fw$shape$vector) fw$shape$names else fw$shape$dimnames[[1L]]
    if (fw$shape$vector) {
      jac <- matrix(jac, fw$d, fw$shape$nrow)
      if (!is.null(fw$row_names) || !is.null(in_names)) {
        dimnames(jac) <- list(fw$row_names, in_names)
      }
      return(jac)
    }
    dn <- list(fw$row_names, in_names, fw$shape$dimnames[[2L]])
    if (!all(vapply(dn, is.null, TRUE))) dimnames(jac) <- dn
    jac
  }
  op <- new_operator(
    value = perturbed_shape(fw$value, fw),
    input = fw$shape,
    vjp_impl = function(v, wrt) list(x = shape_like_input(product(v, TRUE), fw$shape, TRUE)),
    jvp_impl = function(u) perturbed_shape(product(u, FALSE), fw),
    jacobian_impl = jacobian,
    label = sprintf("perturbed %s", spec$label),
    settings = perturbed_settings(spec),
    details = perturbed_details(fw, spec),
    diagnostics = list(maximum = fw$maximum)
  )
  op$maximum <- fw$maximum
  if (warn_maximum && fw$has_maximum) warn_nonfinite(fw$maximum, c("x", "eps"))
  op
}

perturbed_details <- function(fw, spec) {
  draws <- if (spec$antithetic) {
    sprintf("%d draws of normal noise in antithetic pairs", spec$n_samples)
  } else {
    sprintf("%d independent draws of %s noise", spec$n_samples, spec$noise)
  }
  maximum <- if (!fw$has_maximum) {
    "no perturbed maximum: the solver is not an argmax of <y, x>"
  } else if (length(fw$maximum) == 1L) {
    sprintf("perturbed maximum %s", format(fw$maximum, digits = 6))
  } else {
    sprintf("perturbed maxima from %s to %s", format(min(fw$maximum), digits = 6),
            format(max(fw$maximum), digits = 6))
  }
  c(draws, maximum)
}
