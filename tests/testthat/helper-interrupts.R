# A long call run in its own Rscript process (diffrank from this session's
# library path) and sent SIGINT `delay` seconds after it started: the
# outcome ("interrupted", "finished", "error: ..." or "ignored SIGINT" when
# it ran on for `give_up` seconds), the seconds from the signal to the
# return to R, and whether the same process still computed afterwards. Used
# by test-interrupts.R and by tools/interrupts.R (before a release).
interrupt_outcome <- function(setup, call, delay = 1, give_up = 60) {
  dir <- tempfile("interrupt-")
  dir.create(dir)
  on.exit(unlink(dir, recursive = TRUE), add = TRUE)
  flag <- file.path(dir, "started")
  result <- file.path(dir, "result")
  child <- file.path(dir, "child.R")
  writeLines(c(
    "suppressPackageStartupMessages(library(diffrank))",
    "set.seed(1)",
    setup,
    sprintf("writeLines('go', '%s')", flag),
    sprintf("outcome <- tryCatch({ %s; 'finished' },", call),
    "  interrupt = function(e) 'interrupted',",
    "  error = function(e) paste('error:', conditionMessage(e)))",
    "returned <- as.numeric(Sys.time())",
    "usable <- tryCatch(identical(soft_rank(c(3, 1, 2), eps = 1e-3, scale = 'none'), c(3, 1, 2)),",
    "  error = function(e) FALSE)",
    sprintf("writeLines(c(outcome, format(returned, digits = 17), usable), '%s')", result)
  ), child)
  rscript <- file.path(R.home("bin"), "Rscript")
  libs <- paste(.libPaths(), collapse = .Platform$path.sep)
  pid <- as.integer(system(sprintf("R_LIBS='%s' '%s' '%s' > '%s' 2>&1 & echo $!", libs, rscript,
                                   child, file.path(dir, "log")), intern = TRUE))
  wait_for <- function(path, seconds) {
    waited <- 0
    while (!file.exists(path) && !file.exists(result) && waited < seconds) {
      Sys.sleep(0.02)
      waited <- waited + 0.02
    }
  }
  wait_for(flag, give_up)
  Sys.sleep(delay)
  signalled <- as.numeric(Sys.time())
  tools::pskill(pid, tools::SIGINT)
  wait_for(result, give_up)
  if (!file.exists(result)) {
    tools::pskill(pid, tools::SIGKILL)
    return(list(outcome = "ignored SIGINT", seconds = NA_real_, usable = NA))
  }
  Sys.sleep(0.1)  # let the child finish writing
  out <- readLines(result)
  list(outcome = out[1], seconds = as.numeric(out[2]) - signalled, usable = out[3] == "TRUE")
}
