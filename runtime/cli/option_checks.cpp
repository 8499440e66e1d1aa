#include "runtime/cli/option_checks.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "common/error.hpp"
#include "runtime/cli/tier_options.hpp"

namespace moetier::cli {
namespace {

std::string number_text(long double v) {
  if (v == std::floor(v) && std::fabs(v) < 1e18L) return fmt::format("{}", static_cast<long long>(v));
  return fmt::format("{}", static_cast<double>(v));
}

std::string range_text(long double lo, long double hi) {
  const bool open_lo = std::isinf(lo), open_hi = std::isinf(hi) || hi >= 9.2e18L;
  if (open_lo && open_hi) return "a finite number";
  if (open_hi) return ">= " + number_text(lo);
  if (open_lo) return "<= " + number_text(hi);
  return number_text(lo) + ".." + number_text(hi);
}

}  // namespace

namespace detail {

CLI::Validator range_validator(long double lo, long double hi, std::string meaning, bool finite, AsOptionType as_type) {
  const std::string expected = range_text(lo, hi) + (meaning.empty() ? "" : "; " + meaning);
  return CLI::Validator(
      [lo = as_type(lo), hi = as_type(hi), finite, expected, as_type](std::string& s) -> std::string {
        const char* begin = s.c_str();
        char* end = nullptr;
        const long double parsed = std::strtold(begin, &end);
        if (end == begin) return "";  // not a number: the type conversion reports it
        while (*end && std::isspace(static_cast<unsigned char>(*end))) ++end;
        if (*end) return "";
        const long double v = as_type(parsed);  // as the option will hold it
        if ((finite && !std::isfinite(v)) || !(v >= lo && v <= hi))
          return fmt::format("{} is out of range (expected {})", s, expected);
        return "";
      },
      range_text(lo, hi));
}

}  // namespace detail

CLI::Validator non_empty() {
  return CLI::Validator([](std::string& s) -> std::string { return s.empty() ? "empty value" : ""; }, "");
}

CLI::Validator parsed_by(std::string option, std::function<void(const std::string&)> parse) {
  return CLI::Validator(
      [option = std::move(option), parse = std::move(parse)](std::string& s) -> std::string {
        try {
          parse(s);
        } catch (const Error& e) {
          std::string msg = e.what();
          if (msg.rfind(option + " ", 0) == 0) msg.erase(0, option.size() + 1);
          return msg;
        }
        return "";
      },
      "");
}

double parse_nvme_fraction(const std::string& text) {
  if (text == "all") return 1.0;
  double fraction = -1;
  try {
    size_t pos = 0;
    fraction = std::stod(text, &pos);
    if (pos != text.size()) fraction = -1;
  } catch (...) {
  }
  if (!(fraction >= 0.0 && fraction <= 1.0))
    fail("--experts-on-nvme \"{}\": expected all or a fraction between 0 and 1", text);
  return fraction;
}

CacheSize parse_cache_size(const std::string& text) {
  CacheSize c;
  const bool all_digits = !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
  if (all_digits) {
    errno = 0;
    const unsigned long long n = std::strtoull(text.c_str(), nullptr, 10);
    if (errno == ERANGE || n == 0 || n > (1ull << 32))
      fail("--cache-size {}: expected a number of experts (1 or more) or a size with a unit such as 64MiB", text);
    c.experts = n;
    return c;
  }
  const bool has_unit = std::any_of(text.begin(), text.end(), [](char ch) { return std::isalpha(static_cast<unsigned char>(ch)); });
  if (!has_unit)
    fail("--cache-size {}: expected a whole number of experts, or a size with a unit such as 64MiB or 1.5GB", text);
  c.bytes = parse_bytes(text, "--cache-size");
  if (c.bytes == 0) fail("--cache-size {}: the cache must hold at least one expert", text);
  return c;
}

void check_tier_options(const TierOptions& o, const std::function<bool(const std::string&)>& given,
                        bool trace_predicts) {
  if (!o.device_slots.empty() && o.vram_budget.empty() && o.sim_device.empty())
    fail("--device-slots needs a device: --sim-device SIZE or --vram-budget SIZE");
  if (!o.any()) {
    for (const char* name : {"--cache-size", "--cache-policy", "--trace", "--save-plan", "--io-queue-depth", "--no-prefetch"})
      if (given(name))
        fail("{} needs a tier: add --ram-budget SIZE, --vram-budget SIZE, --experts-on-nvme all|FRACTION or --plan FILE",
             name);
    return;
  }
  if (given("--cache-size") && o.experts_on_nvme.empty())
    fail("--cache-size applies to --experts-on-nvme only (with --ram-budget the bytes left over are the cache; a --plan "
         "file sets its own cache)");
  const bool orders = !o.ram_budget.empty() || !o.vram_budget.empty() || (!o.sim_device.empty() && o.plan.empty());
  if (given("--trace") && !orders && !trace_predicts)
    fail("--trace orders --ram-budget's and --vram-budget's resident experts; it has no effect with {}",
         o.plan.empty() ? "--experts-on-nvme" : "--plan");
  (void)device_options(o);  // --vram-budget without a device, or above --sim-device's capacity
}

}  // namespace moetier::cli
