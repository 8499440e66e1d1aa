// Minimal reader of NumPy .npy files (format 1.0/2.0, little-endian '<f4' or '<i4', C order) for the
// golden reference data. Throws std::runtime_error on anything else.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace moetier::test {

struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<float> f32;    // '<f4'
  std::vector<int32_t> i32;  // '<i4'
};

inline NpyArray read_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open");
  char magic[6];
  in.read(magic, 6);
  if (std::memcmp(magic, "\x93NUMPY", 6) != 0) throw std::runtime_error(path + ": not an npy file");
  uint8_t ver[2];
  in.read(reinterpret_cast<char*>(ver), 2);
  uint32_t hlen = 0;
  if (ver[0] == 1) {
    uint16_t h16 = 0;
    in.read(reinterpret_cast<char*>(&h16), 2);
    hlen = h16;
  } else {
    in.read(reinterpret_cast<char*>(&hlen), 4);
  }
  std::string header(hlen, ' ');
  in.read(header.data(), hlen);
  NpyArray a;
  const bool f4 = header.find("'<f4'") != std::string::npos;
  const bool i4 = header.find("'<i4'") != std::string::npos;
  if (!f4 && !i4) throw std::runtime_error(path + ": unsupported dtype in " + header);
  if (header.find("'fortran_order': False") == std::string::npos) throw std::runtime_error(path + ": not C order");
  const auto lp = header.find('(', header.find("'shape'"));
  const auto rp = header.find(')', lp);
  std::string dims = header.substr(lp + 1, rp - lp - 1);
  int64_t n = 1;
  size_t pos = 0;
  while (pos < dims.size()) {
    while (pos < dims.size() && (dims[pos] == ' ' || dims[pos] == ',')) ++pos;
    if (pos >= dims.size()) break;
    size_t end = pos;
    while (end < dims.size() && dims[end] != ',') ++end;
    const int64_t d = std::stoll(dims.substr(pos, end - pos));
    a.shape.push_back(d);
    n *= d;
    pos = end;
  }
  if (f4) {
    a.f32.resize(static_cast<size_t>(n));
    in.read(reinterpret_cast<char*>(a.f32.data()), n * 4);
  } else {
    a.i32.resize(static_cast<size_t>(n));
    in.read(reinterpret_cast<char*>(a.i32.data()), n * 4);
  }
  if (!in) throw std::runtime_error(path + ": truncated data");
  return a;
}

}  // namespace moetier::test
