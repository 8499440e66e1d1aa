#include "runtime/gguf/gguf_model.hpp"

#include <fmt/format.h>

#include <optional>
#include <regex>

#include "common/error.hpp"

namespace moetier::gguf {

std::string split_part_path(const std::string& first_path, int no, int count) {
  static const std::regex kSplit(R"((.*)-(\d{5})-of-(\d{5})\.gguf$)");
  std::smatch m;
  if (!std::regex_match(first_path, m, kSplit)) return "";
  return fmt::format("{}-{:05d}-of-{:05d}.gguf", m[1].str(), no, count);
}

void GgufModel::copy_to_huge_pages() {
  for (auto& m : maps_) m->copy_to_huge_pages();
}

GgufModel GgufModel::open(const std::string& path) {
  GgufModel model;
  auto first_map = std::make_shared<MappedFile>(path);
  model.files_.push_back(parse_gguf(first_map->bytes(), path));
  model.maps_.push_back(std::move(first_map));
  // Read what is needed from the first file now: files_ grows below, so no reference into it may be kept.
  const Metadata& md = model.files_.front().metadata;
  const int64_t split_count = md.get_int("split.count").value_or(1);
  const std::optional<int64_t> split_tensors = md.get_int("split.tensors.count");
  if (split_count < 1 || split_count > 9999) fail("{}: split.count {} (expected 1..9999)", path, split_count);
  if (split_count > 1) {
    const int64_t no = md.get_int("split.no").value_or(0);
    if (no != 0) fail("{}: split.no is {}: open the first part (split.no 0) of a split model", path, no);
    model.files_.reserve(static_cast<size_t>(split_count));  // md is not used after this point
    if (split_part_path(path, 1, static_cast<int>(split_count)).empty())
      fail("{}: split.count is {} but the name does not follow NAME-00001-of-{:05d}.gguf", path, split_count,
           split_count);
    for (int i = 1; i < split_count; ++i) {
      const std::string part = split_part_path(path, i + 1, static_cast<int>(split_count));
      auto map = std::make_shared<MappedFile>(part);
      GgufFile f = parse_gguf(map->bytes(), part);
      const int64_t part_no = f.metadata.get_int("split.no").value_or(-1);
      if (part_no != i) fail("{}: split.no is {} (expected {})", part, part_no, i);
      if (const auto c = f.metadata.get_int("split.count"); c && *c != split_count)
        fail("{}: split.count is {} but the first part says {}", part, *c, split_count);
      model.files_.push_back(std::move(f));
      model.maps_.push_back(std::move(map));
    }
  }
  for (uint32_t fi = 0; fi < model.files_.size(); ++fi) {
    for (auto t : model.files_[fi].tensors) {
      t.file_index = fi;
      if (!model.by_name_.emplace(t.name, model.tensors_.size()).second)
        fail("{}: tensor {} is also in {}", model.files_[fi].path, t.name,
             model.files_[model.tensors_[model.by_name_[t.name]].file_index].path);
      model.tensors_.push_back(std::move(t));
    }
  }
  if (split_count > 1) {
    if (split_tensors && *split_tensors != static_cast<int64_t>(model.tensors_.size()))
      fail("{}: split.tensors.count is {} but the {} parts hold {} tensors", path, *split_tensors, split_count,
           model.tensors_.size());
  }
  return model;
}

const TensorInfo* GgufModel::find(std::string_view name) const {
  auto it = by_name_.find(std::string(name));
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

const TensorInfo& GgufModel::require(std::string_view name) const {
  const TensorInfo* t = find(name);
  if (!t) fail("{}: missing tensor {}", path(), name);
  return *t;
}

std::string GgufModel::architecture() const {
  auto a = metadata().get_string("general.architecture");
  if (!a) fail("{}: missing metadata key general.architecture", path());
  return *a;
}

uint64_t GgufModel::total_tensor_bytes() const {
  uint64_t n = 0;
  for (const auto& t : tensors_) n += t.n_bytes;
  return n;
}

std::span<const std::byte> GgufModel::data(const TensorInfo& t) const {
  return maps_.at(t.file_index)->bytes().subspan(t.offset, t.n_bytes);
}

FileByteRange GgufModel::byte_range(const TensorInfo& t, uint64_t offset_in_tensor, uint64_t length) const {
  if (length == UINT64_MAX) length = t.n_bytes - std::min(offset_in_tensor, t.n_bytes);
  if (offset_in_tensor > t.n_bytes || length > t.n_bytes - offset_in_tensor)
    fail("{}: tensor {}: byte range [{}, +{}) outside the tensor's {} bytes", file_path(t.file_index), t.name,
         offset_in_tensor, length, t.n_bytes);
  return {t.file_index, t.offset + offset_in_tensor, length};
}

}  // namespace moetier::gguf
