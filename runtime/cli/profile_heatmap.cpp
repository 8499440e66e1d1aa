// The expert heat map SVG of `moetier profile` (see profile_heatmap.hpp).
#include "runtime/cli/profile_heatmap.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "common/error.hpp"

namespace moetier::cli {
namespace {

struct Rgb {
  double r, g, b;
};

/// Colour of t in [0, 1]: white, yellow, orange, dark red.
std::string heat_colour(double t) {
  static const Rgb stops[] = {{255, 255, 255}, {255, 226, 110}, {240, 130, 40}, {130, 0, 20}};
  t = std::clamp(t, 0.0, 1.0) * 3.0;
  const int i = std::min(2, static_cast<int>(t));
  const double f = t - i;
  const Rgb& a = stops[i];
  const Rgb& b = stops[i + 1];
  return fmt::format("rgb({},{},{})", std::lround(a.r + (b.r - a.r) * f), std::lround(a.g + (b.g - a.g) * f),
                     std::lround(a.b + (b.b - a.b) * f));
}

std::string xml_escaped(const std::string& s) {
  std::string out;
  for (const char c : s) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else if (c == '"') out += "&quot;";
    else if (static_cast<unsigned char>(c) >= 0x20 || c == '\t') out += c;
  }
  return out;
}

}  // namespace

std::string expert_heatmap_svg(const std::vector<std::vector<ExpertHeat>>& heat, const std::vector<bool>& dense,
                               const std::string& title) {
  const size_t n_layers = heat.size();
  const size_t n_experts = n_layers ? heat[0].size() : 0;
  for (const auto& row : heat)
    if (row.size() != n_experts) fail("heat map: rows of {} and {} experts", n_experts, row.size());
  uint64_t max_routed = 0;
  bool any_streamed = false;
  for (const auto& row : heat)
    for (const auto& h : row) {
      max_routed = std::max(max_routed, h.routed);
      any_streamed = any_streamed || h.hits + h.prefetched + h.misses > 0;
    }
  const int cell = std::clamp(static_cast<int>(960 / std::max<size_t>(n_experts, 1)), 4, 24);
  const int left = 70, top = 50, legend_h = 70;
  const int width = std::max(left + cell * static_cast<int>(n_experts) + 20, 900);  // room for the legend
  const int height = top + cell * static_cast<int>(n_layers) + legend_h;
  std::string s = fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" "
      "height=\"{}\" viewBox=\"0 0 {} {}\" font-family=\"sans-serif\" font-size=\"11\">\n"
      "<rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"white\"/>\n"
      "<text x=\"{}\" y=\"18\" font-size=\"14\">{}</text>\n"
      "<text x=\"{}\" y=\"38\">experts 0..{} (columns); layers 0..{} (rows, top to bottom); colour: times routed "
      "(sqrt scale, max {})</text>\n",
      width, height, width, height, width, height, left, xml_escaped(title), left, n_experts ? n_experts - 1 : 0,
      n_layers ? n_layers - 1 : 0, max_routed);
  for (size_t il = 0; il < n_layers; ++il) {
    const int y = top + cell * static_cast<int>(il);
    if (il % static_cast<size_t>((12 + cell - 1) / cell) == 0)  // labels 12 px apart at least
      s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n", left - 4, y + cell - 1, il);
    for (size_t e = 0; e < n_experts; ++e) {
      const ExpertHeat& h = heat[il][e];
      const int x = left + cell * static_cast<int>(e);
      const bool is_dense = il < dense.size() && dense[il];
      const double t = max_routed ? std::sqrt(static_cast<double>(h.routed) / static_cast<double>(max_routed)) : 0.0;
      const uint64_t req = h.hits + h.prefetched + h.misses;
      s += fmt::format(
          "<rect class=\"cell\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\" stroke=\"#ddd\" "
          "stroke-width=\"0.5\"><title>layer {} expert {}: routed {}",
          x, y, cell, cell, is_dense ? std::string("#bbb") : heat_colour(t), il, e, h.routed);
      if (is_dense) s += " (dense layer)";
      if (req) s += fmt::format("; streamed: {} hits, {} prefetched, {} misses", h.hits, h.prefetched, h.misses);
      s += "</title></rect>\n";
      if (req) {  // the demands' outcome: green hits, blue prefetched, red misses, side by side
        const int bar_h = std::max(2, cell / 4);
        const uint64_t parts[3] = {h.hits, h.prefetched, h.misses};
        const char* colours[3] = {"rgb(0,170,0)", "rgb(0,0,220)", "rgb(220,0,0)"};
        double at = x;
        for (int i = 0; i < 3; ++i) {
          const double w = cell * static_cast<double>(parts[i]) / static_cast<double>(req);
          if (w > 0)
            s += fmt::format("<rect class=\"io\" x=\"{:.2f}\" y=\"{}\" width=\"{:.2f}\" height=\"{}\" fill=\"{}\"/>\n", at,
                             y + cell - bar_h, w, bar_h, colours[i]);
          at += w;
        }
      }
    }
  }
  // Legend: the colour scale, and the streamed bar's meaning.
  const int ly = top + cell * static_cast<int>(n_layers) + 14;
  for (int i = 0; i <= 20; ++i)
    s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"10\" height=\"12\" fill=\"{}\"/>\n", left + i * 10, ly,
                     heat_colour(i / 20.0));
  s += fmt::format("<text x=\"{}\" y=\"{}\">0</text><text x=\"{}\" y=\"{}\">{} routed</text>\n", left, ly + 26,
                   left + 200, ly + 26, max_routed);
  if (any_streamed)
    s += fmt::format(
        "<rect x=\"{0}\" y=\"{1}\" width=\"10\" height=\"4\" fill=\"rgb(0,170,0)\"/><text x=\"{2}\" y=\"{3}\">hit</text>"
        "<rect x=\"{4}\" y=\"{1}\" width=\"10\" height=\"4\" fill=\"rgb(0,0,220)\"/><text x=\"{5}\" y=\"{3}\">prefetched</text>"
        "<rect x=\"{6}\" y=\"{1}\" width=\"10\" height=\"4\" fill=\"rgb(220,0,0)\"/><text x=\"{7}\" y=\"{3}\">miss</text>"
        "<text x=\"{8}\" y=\"{3}\">(bar at a streamed expert's foot: its cache demands)</text>\n",
        left + 260, ly + 4, left + 274, ly + 10, left + 310, left + 324, left + 400, left + 414, left + 450);
  s += "</svg>\n";
  return s;
}

}  // namespace moetier::cli
