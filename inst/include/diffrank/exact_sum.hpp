// Exact sums of doubles, whatever the order of their terms.
//
// The mean target of quantile normalization is a sum over samples. Summed in
// floating point, its last bits depend on the order of the terms, so a
// matrix split over processes (each summing its own columns) would get
// another target than the matrix in one piece. An ExactSum keeps the sum
// without rounding, as a superaccumulator (Neal 2015, "Fast exact summation
// using small and large superaccumulators", arXiv:1505.05571): a double is
// an integer significand times a power of two, and the sum is kept in
// fixed-point words, one per window of 32 binary exponents. Only the windows
// that the terms reach are stored, which for one quantile level of real
// data is one or two. Sums are added exactly, so partial sums can be formed
// anywhere and merged in any order; the mean is rounded once, to the
// nearest double.
#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace diffrank {

// The bytes of a window in exact_sums_to_bytes().
constexpr std::size_t kExactWindowBytes = 20;

class ExactSum {
 public:
  // A window's sum: a signed 128-bit integer (two's complement, hi:lo) in
  // units of 2^(32 * index - 1074). A term adds at most 2^85 to it, so it
  // cannot overflow before 2^42 terms.
  struct Window {
    std::int32_t index;
    std::uint64_t lo, hi;
  };

  // Adds a finite double exactly; a NaN or an infinity makes the sum NaN.
  void add(double value) {
    if (value == 0.0) return;
    std::uint64_t bits;
    std::memcpy(&bits, &value, sizeof bits);
    const int biased = static_cast<int>((bits >> 52) & 0x7ff);
    if (biased == 0x7ff) {
      invalid_ = true;
      return;
    }
    std::uint64_t significand = bits & ((std::uint64_t{1} << 52) - 1);
    // value = significand * 2^(position - 1074): subnormals have position 0
    // and no hidden bit
    int position = 0;
    if (biased > 0) {
      significand |= std::uint64_t{1} << 52;
      position = biased - 1;
    }
    const int shift = position & 31;
    const std::uint64_t lo = significand << shift;
    const std::uint64_t hi = shift == 0 ? 0 : significand >> (64 - shift);
    accumulate(window(position >> 5), lo, hi, (bits >> 63) != 0);
  }

  // Adds another exact sum: the result is the exact sum of both sets of
  // terms, whatever was added in which.
  void add(const ExactSum& other) {
    invalid_ = invalid_ || other.invalid_;
    other.for_each_window([this](const Window& w) { add_window(w); });
  }

  void add_window(const Window& w) { accumulate(window(w.index), w.lo, w.hi, false); }

  // The windows that hold a part of the sum, in no particular order.
  template <class F>
  void for_each_window(F&& f) const {
    for (std::size_t k = 0; k < used_; ++k) f(first_[k]);
    for (const Window& w : more_) f(w);
  }

  std::size_t windows() const { return used_ + more_.size(); }
  bool invalid() const { return invalid_; }
  void set_invalid() { invalid_ = true; }

  // The sum divided by count (> 0, below 2^32), rounded once to the nearest
  // double (ties to even): NaN for an invalid sum, +0 for a zero sum.
  double mean(std::uint64_t count) const {
    if (invalid_ || count == 0 || count > 0xffffffffu) return std::nan("");
    // The sum as base-2^32 digits with signs, the lowest of weight 2^-1074,
    // then carried: every window adds its four 32-bit digits from its index.
    std::array<std::int64_t, kDigits> digit{};
    bool any = false;
    for_each_window([&](const Window& w) {
      const std::int64_t top = static_cast<std::int64_t>(w.hi) >> 32;  // signed
      digit[w.index] += static_cast<std::int64_t>(w.lo & 0xffffffffu);
      digit[w.index + 1] += static_cast<std::int64_t>(w.lo >> 32);
      digit[w.index + 2] += static_cast<std::int64_t>(w.hi & 0xffffffffu);
      digit[w.index + 3] += top;
      any = true;
    });
    if (!any) return 0.0;
    carry(digit);
    const bool negative = digit[kDigits - 1] < 0;
    if (negative) {
      for (std::int64_t& d : digit) d = -d;
      carry(digit);
    }
    // Long division by count, from the top digit, with two more digits below
    // the lowest so that the quotient keeps at least 53 bits past any
    // rounding position a double can have.
    std::array<std::uint32_t, kDigits + 2> quotient{};
    std::uint64_t remainder = 0;
    for (std::size_t k = kDigits + 2; k-- > 0;) {
      const std::uint64_t d = k >= 2 ? static_cast<std::uint64_t>(digit[k - 2]) : 0;
      const std::uint64_t current = (remainder << 32) | d;
      quotient[k] = static_cast<std::uint32_t>(current / count);
      remainder = current % count;
    }
    const double magnitude = round_to_double(quotient, remainder != 0);
    return negative ? -magnitude : magnitude;
  }

 private:
  // 64 windows reach 2^(32 * 63 + 85 - 1074); four more digits hold their
  // 128-bit sums and the carries of up to 2^42 terms, and the top one the
  // sign.
  static constexpr std::size_t kDigits = 72;

  Window& window(int index) {
    for (std::size_t k = 0; k < used_; ++k) {
      if (first_[k].index == index) return first_[k];
    }
    for (Window& w : more_) {
      if (w.index == index) return w;
    }
    if (used_ < first_.size()) {
      first_[used_] = Window{index, 0, 0};
      return first_[used_++];
    }
    more_.push_back(Window{index, 0, 0});
    return more_.back();
  }

  static void accumulate(Window& w, std::uint64_t lo, std::uint64_t hi, bool subtract) {
    if (subtract) {
      const std::uint64_t borrow = w.lo < lo ? 1 : 0;
      w.lo -= lo;
      w.hi -= hi + borrow;
    } else {
      w.lo += lo;
      w.hi += hi + (w.lo < lo ? 1 : 0);
    }
  }

  // Brings every digit but the top one into [0, 2^32).
  static void carry(std::array<std::int64_t, kDigits>& digit) {
    for (std::size_t k = 0; k + 1 < kDigits; ++k) {
      const std::int64_t c = digit[k] >> 32;  // floor division: arithmetic shift
      digit[k] -= c * (std::int64_t{1} << 32);
      digit[k + 1] += c;
    }
  }

  // The non-negative number quotient (base-2^32 digits, the lowest of weight
  // 2^(-1074 - 64)) plus a remainder below its lowest bit when `inexact`,
  // rounded to the nearest double.
  static double round_to_double(const std::array<std::uint32_t, kDigits + 2>& quotient,
                                bool inexact) {
    std::size_t top = quotient.size();
    while (top > 0 && quotient[top - 1] == 0) --top;
    if (top == 0) return 0.0;  // below 2^-1138 and not zero: a remainder only
    auto bit = [&](long b) -> unsigned {
      return b < 0 ? 0u : (quotient[static_cast<std::size_t>(b) / 32] >> (b % 32)) & 1u;
    };
    long highest = 32 * static_cast<long>(top - 1) + 31;
    while (!bit(highest)) --highest;
    // the lowest bit kept: 53 bits, or down to 2^-1074 (bit 64) for a
    // subnormal result
    const long lowest = highest - 52 > 64 ? highest - 52 : 64;
    if (highest < 64 - 1) {
      // below half the smallest subnormal: rounds to zero
      return 0.0;
    }
    std::uint64_t kept = 0;
    for (long b = highest; b >= lowest; --b) kept = (kept << 1) | bit(b);
    const unsigned round = bit(lowest - 1);
    bool sticky = inexact;
    for (long b = lowest - 2; b >= 0 && !sticky; --b) {
      if (b % 32 == 31 && quotient[static_cast<std::size_t>(b) / 32] == 0) {
        b -= 31;  // a whole zero digit
        continue;
      }
      sticky = bit(b) != 0;
    }
    if (round && (sticky || (kept & 1u))) ++kept;
    return std::ldexp(static_cast<double>(kept), static_cast<int>(lowest) - 1074 - 64);
  }

  std::array<Window, 2> first_{};
  std::size_t used_ = 0;
  std::vector<Window> more_;
  bool invalid_ = false;
};

// The sums of a vector of ExactSum as bytes, to be kept or sent between
// processes: the number of sums (8 bytes), then for each sum a flag (1 if
// invalid), its number of windows, and its windows (index, lo, hi).
inline std::vector<unsigned char> exact_sums_to_bytes(const std::vector<ExactSum>& sums) {
  std::size_t size = sizeof(std::uint64_t);
  for (const ExactSum& s : sums) size += 2 + s.windows() * kExactWindowBytes;
  std::vector<unsigned char> bytes(size);
  unsigned char* out = bytes.data();
  const std::uint64_t count = sums.size();
  std::memcpy(out, &count, sizeof count);
  out += sizeof count;
  for (const ExactSum& s : sums) {
    *out++ = s.invalid() ? 1 : 0;
    *out++ = static_cast<unsigned char>(s.windows());
    s.for_each_window([&](const ExactSum::Window& w) {
      std::memcpy(out, &w.index, sizeof w.index);
      std::memcpy(out + 4, &w.lo, sizeof w.lo);
      std::memcpy(out + 12, &w.hi, sizeof w.hi);
      out += kExactWindowBytes;
    });
  }
  return bytes;
}

// Adds the sums in bytes of exact_sums_to_bytes() to `sums`; false (and sums
// unspecified) when the bytes are not such sums of sums.size() values.
inline bool add_exact_sums_from_bytes(const unsigned char* bytes, std::size_t size,
                                      std::vector<ExactSum>& sums) {
  const unsigned char* end = bytes + size;
  std::uint64_t count = 0;
  if (size < sizeof count) return false;
  std::memcpy(&count, bytes, sizeof count);
  if (count != sums.size()) return false;
  bytes += sizeof count;
  for (ExactSum& s : sums) {
    if (end - bytes < 2) return false;
    if (bytes[0] > 1) return false;
    if (bytes[0] == 1) s.set_invalid();
    const std::size_t windows = bytes[1];
    bytes += 2;
    if (static_cast<std::size_t>(end - bytes) < windows * kExactWindowBytes) return false;
    for (std::size_t k = 0; k < windows; ++k) {
      ExactSum::Window w;
      std::memcpy(&w.index, bytes, sizeof w.index);
      std::memcpy(&w.lo, bytes + 4, sizeof w.lo);
      std::memcpy(&w.hi, bytes + 12, sizeof w.hi);
      if (w.index < 0 || w.index > 63) return false;
      s.add_window(w);
      bytes += kExactWindowBytes;
    }
  }
  return bytes == end;
}

}  // namespace diffrank
