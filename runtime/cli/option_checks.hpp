// Checks of command-line values shared by the subcommands: numeric ranges and non-empty strings as CLI11
// validators (they run while parsing, so a bad value is reported before any model is opened), the
// --cache-size forms, and which tier options need which tier.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <type_traits>

#include <CLI/CLI.hpp>

namespace moetier::cli {

struct TierOptions;

namespace detail {
/// `v` as the option's type T would hold it (a float or double option rounds; ±inf beyond its range).
template <class T>
long double as_option_type(long double v) {
  if constexpr (std::is_floating_point_v<T>) {
    if (std::isfinite(v) && (v > std::numeric_limits<T>::max() || v < -std::numeric_limits<T>::max()))
      return v > 0 ? std::numeric_limits<long double>::infinity() : -std::numeric_limits<long double>::infinity();
    return static_cast<long double>(static_cast<T>(v));
  } else {
    return v;  // integers: long double holds every bound exactly, and CLI11 refuses fractions itself
  }
}
using AsOptionType = long double (*)(long double);
CLI::Validator range_validator(long double lo, long double hi, std::string meaning, bool finite, AsOptionType as_type);
}  // namespace detail

/// A number in [lo, hi] (inclusive; NaN is out of range), compared as the option's type T holds it (the
/// value and both bounds rounded to T: `--nvme-gbps 0.001` is the double 0.001 and meets a 0.001
/// bound; a float option's 1e39 is inf). The message names the value and the range: "-2 is out of range
/// (expected >= -1; -1: until end of generation or a full context)"; `meaning` (may be empty) explains
/// special values. Values that are not numbers pass through to CLI11's conversion, which reports them.
template <class T = long double>
CLI::Validator in_range(long double lo, long double hi, std::string meaning = "") {
  return detail::range_validator(lo, hi, std::move(meaning), false, &detail::as_option_type<T>);
}

/// in_range<T>(lo, +inf) refusing inf and NaN (in T: a float option refuses 1e39): a finite number >= lo.
template <class T = long double>
CLI::Validator finite_at_least(long double lo, std::string meaning = "") {
  return detail::range_validator(lo, std::numeric_limits<long double>::infinity(), std::move(meaning), true,
                                 &detail::as_option_type<T>);
}

/// Refuses the empty string ("--ram-budget ''" is a mistake, not "off").
CLI::Validator non_empty();

/// A value that `parse(value)` accepts; its moetier::Error message becomes the usage error (without a
/// leading "`option` ", which CLI11 adds itself). Used for --ram-budget (parse_bytes), --cache-size,
/// --cache-policy and --experts-on-nvme, so that they are checked while parsing, before the model is
/// opened.
CLI::Validator parsed_by(std::string option, std::function<void(const std::string&)> parse);

/// --experts-on-nvme: "all" or a fraction in [0, 1]. Throws Error otherwise.
double parse_nvme_fraction(const std::string& text);

/// --cache-size: a plain integer counts experts (cache slots, each sized for the largest streamed
/// expert); a number with a unit (64MiB, 1.5GB, 4096B; units as parse_bytes) is bytes.
struct CacheSize {
  uint64_t experts = 0;  // > 0 when given as an expert count
  uint64_t bytes = 0;    // > 0 when given as a byte size
};
/// Parses --cache-size (see CacheSize). Throws Error for 0, a fraction without a unit, or anything else.
CacheSize parse_cache_size(const std::string& text);

/// Throws Error (one line) for tier options that would be ignored: --cache-size, --cache-policy,
/// --trace, --save-plan, --io-queue-depth or --no-prefetch without --plan / --ram-budget /
/// --vram-budget / --sim-device / --experts-on-nvme; --cache-size with anything but --experts-on-nvme;
/// --trace with anything but --ram-budget / --vram-budget / --sim-device unless `trace_predicts` (`plan`
/// reads the trace for its prediction with any tier); and the device errors of device_options
/// (tier_options.hpp: --vram-budget without a device, or above the simulated device's capacity).
/// `given(name)` says whether the option `name` (long name, e.g. "--io-queue-depth") was on the
/// command line.
void check_tier_options(const TierOptions& o, const std::function<bool(const std::string&)>& given,
                        bool trace_predicts);

}  // namespace moetier::cli
