// Helpers shared by every glue file: the one kind of handle that keeps an
// operator's derivative state between R calls, and the one way options given
// as strings in R are turned into the core's enums.
#pragma once

#include <Rcpp.h>

#include <cstring>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

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

// Running long double sums that R keeps between the calls of a pass over
// column blocks (R/blocks.R) as raw bytes: `size` zeros for NULL (the first
// block), else the sums given, which must be `size` long.
inline std::vector<long double> sums_from_raw(Rcpp::Nullable<Rcpp::RawVector> raw,
                                              std::size_t size) {
  std::vector<long double> sums(size, 0.0L);
  if (raw.isNotNull()) {
    Rcpp::RawVector given(raw.get());
    if (static_cast<std::size_t>(given.size()) != size * sizeof(long double)) {
      Rcpp::stop("The running sums do not match the number of quantile levels.");
    }
    std::memcpy(sums.data(), given.begin(), size * sizeof(long double));
  }
  return sums;
}

inline Rcpp::RawVector sums_to_raw(const std::vector<long double>& sums) {
  Rcpp::RawVector raw(sums.size() * sizeof(long double));
  std::memcpy(raw.begin(), sums.data(), sums.size() * sizeof(long double));
  return raw;
}

// The number of sums in raw bytes of sums_to_raw().
inline std::size_t raw_sums_size(const Rcpp::RawVector& raw) {
  return raw.size() / sizeof(long double);
}

}  // namespace diffrank_glue
