// Helpers shared by every glue file: the one kind of handle that keeps an
// operator's derivative state between R calls, and the one way options given
// as strings in R are turned into the core's enums.
#pragma once

#include <Rcpp.h>

#include <initializer_list>
#include <string>
#include <utility>

namespace diffrank_glue {

// The state of a differentiable operator (what its vjp/jvp need), owned by an
// external pointer that R frees with the operator object.
template <class State>
Rcpp::XPtr<State> make_handle(State* state) {
  return Rcpp::XPtr<State>(state, true);
}

// The state behind a handle; a handle of an object saved with saveRDS() and
// reloaded points nowhere.
template <class State>
State* handle_state(SEXP handle) {
  if (TYPEOF(handle) != EXTPTRSXP || R_ExternalPtrAddr(handle) == nullptr) {
    Rcpp::stop(
        "This operator object was saved and reloaded: its derivative state is gone; "
        "recompute it.");
  }
  return Rcpp::XPtr<State>(handle).get();
}

// value as one of the named choices, or an R error naming the argument.
template <class E>
E parse_choice(const std::string& value, const char* arg,
               std::initializer_list<std::pair<const char*, E>> choices) {
  std::string known;
  for (const auto& c : choices) {
    if (value == c.first) return c.second;
    known += known.empty() ? "" : ", ";
    known += std::string("\"") + c.first + "\"";
  }
  Rcpp::stop("`%s` must be one of %s, not \"%s\".", arg, known, value);
}

// An element of an options list given by the R wrapper.
template <class T>
T option(const Rcpp::List& options, const char* name) {
  if (!options.containsElementNamed(name)) Rcpp::stop("internal: option `%s` is missing", name);
  return Rcpp::as<T>(options[name]);
}

}  // namespace diffrank_glue
