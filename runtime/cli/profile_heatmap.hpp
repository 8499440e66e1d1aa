// The expert heat map of `moetier profile`: an SVG grid of layers (rows) x experts (columns), each cell
// coloured by how often the router chose that expert (white = never, through yellow and orange to dark
// red = the most chosen expert of the whole run), and, for experts streamed from NVMe, a bar at the cell's
// foot split in the shares of their demands that were cache hits (green), prefetched (blue) and misses
// (red). Every cell carries a <title> with the figures (hover in a browser).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moetier::cli {

/// What one (layer, expert) saw during the profiled generation.
struct ExpertHeat {
  uint64_t routed = 0;      ///< times the router chose it (prompt and generated tokens)
  uint64_t hits = 0;        ///< demands (streamed experts) served from the DRAM cache
  uint64_t prefetched = 0;  ///< demands whose read the previous layer's prediction had started
  uint64_t misses = 0;      ///< demands that had to read it then
};

/// heat[layer][expert]: n_layers rows of n_experts each. dense[layer]: the layer has no routed experts
/// (its row is drawn grey). Returns the SVG document: one <rect class="cell"> per (layer, expert), in
/// row-major order, plus axes and a legend. Throws moetier::Error when rows differ in length.
std::string expert_heatmap_svg(const std::vector<std::vector<ExpertHeat>>& heat, const std::vector<bool>& dense,
                               const std::string& title);

}  // namespace moetier::cli
