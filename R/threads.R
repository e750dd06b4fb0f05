#' Default number of threads
#'
#' The number of threads diffrank's functions use when their `threads`
#' argument is not given: the option `diffrank.threads`, or 2 when it is not
#' set. Results never depend on the number of threads.
#'
#' @return An integer, at least 1.
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
  if (!is.numeric(threads) || length(threads) != 1L || is.na(threads) ||
      threads < 1 || threads != round(threads) || !is.finite(threads)) {
    abort("`%s` must be a whole number of threads, at least 1, not %s.",
          arg, describe(threads))
  }
  as.integer(threads)
}
