#' Default number of threads
#'
#' The number of threads diffrank's functions use when their `threads`
#' argument is not given: the option `diffrank.threads`, or 2 when it is not
#' set. Results never depend on the number of threads.
#'
#' A `threads` argument (or the option) is a whole number of at least 1;
#' larger numbers than 1024 are taken as 1024, and no call runs more threads
#' than the machine has cores, whatever it is given. Set
#' `options(diffrank.threads = parallel::detectCores())` to use every core.
#'
#' @return An integer from 1 to 1024.
#' @export
#' @examples
#' diffrank_threads()
#' old <- options(diffrank.threads = 1)
#' diffrank_threads()
#' options(old)
diffrank_threads <- function() {
  threads <- getOption("diffrank.threads", 2L)
  check_threads(threads, "getOption(\"diffrank.threads\")")
}


check_threads <- function(threads, arg = "threads") {
  if (!is.numeric(threads) || is.object(threads) || length(threads) != 1L || is.na(threads) ||
      threads < 1 || !is.finite(threads) || threads != round(threads)) {
    abort("`%s` must be a whole number of threads, at least 1, not %s.",
          arg, describe(threads))
  }
  # the most threads a call starts, defined once in src/parallel.h
  as.integer(min(threads, max_threads_cpp()))
}
