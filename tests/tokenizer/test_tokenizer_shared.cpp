// Tokenizer against llama.cpp reference data in ../shared: the tokenizer test vectors of each
// vocabulary (tokenizer-vectors/*.inp/.out, add_special = false, parse_special = false) and the
// golden prompts (golden/<stem>/golden.json: tokens with add_special = parse_special = true, pieces).
#include <doctest/doctest.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/gguf/gguf_model.hpp"
#include "runtime/tokenizer/tokenizer.hpp"
#include "runtime/tokenizer/unicode.hpp"
#include "tests/shared_data.hpp"

namespace fs = std::filesystem;
using moetier::tokenizer::Tokenizer;

namespace {

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  REQUIRE_MESSAGE(f.good(), "cannot open " << p.string());
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::vector<std::string> split_on(const std::string& s, const std::string& sep) {
  std::vector<std::string> out;
  size_t pos = 0;
  for (size_t hit; (hit = s.find(sep, pos)) != std::string::npos; pos = hit + sep.size()) out.push_back(s.substr(pos, hit - pos));
  out.push_back(s.substr(pos));
  return out;
}

std::vector<int32_t> parse_ids(const std::string& line) {
  std::vector<int32_t> ids;
  std::istringstream ss(line);
  for (int64_t v; ss >> v;) ids.push_back(static_cast<int32_t>(v));
  return ids;
}

std::string hex(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (const char c : bytes) {
    out.push_back(kHex[static_cast<uint8_t>(c) >> 4]);
    out.push_back(kHex[static_cast<uint8_t>(c) & 15]);
  }
  return out;
}

std::string show_ids(const std::vector<int32_t>& ids) {
  std::string s;
  for (const auto id : ids) s += std::to_string(id) + " ";
  return s;
}

// Runs every vector of `inp_path` through `tok`; returns the number that match.
size_t check_vectors(const Tokenizer& tok, const fs::path& inp_path) {
  const std::vector<std::string> inputs = split_on(read_file(inp_path), "\n__ggml_vocab_test__\n");
  fs::path out_path = inp_path;
  out_path.replace_extension(".out");
  std::vector<std::string> lines = split_on(read_file(out_path), "\n");
  // The file ends with a newline; the last test string is followed by "\n__ggml_vocab_test__\n" too.
  std::vector<std::string> cases = inputs;
  if (!cases.empty() && cases.back().empty()) cases.pop_back();
  REQUIRE(lines.size() >= cases.size());
  size_t ok = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto expected = parse_ids(lines[i]);
    const auto got = tok.encode(cases[i], false, false);
    CHECK_MESSAGE(got == expected, inp_path.filename().string() << " case " << i << " input '" << cases[i]
                                                                   << "'\n  expected " << show_ids(expected)
                                                                   << "\n  got      " << show_ids(got));
    ok += got == expected;
  }
  MESSAGE(inp_path.filename().string() << ": " << ok << "/" << cases.size() << " vectors match");
  return ok;
}

}  // namespace

TEST_CASE("llama.cpp tokenizer vectors" * doctest::skip(moetier::test::no_shared())) {
  const fs::path dir = moetier::test::shared_dir() / "tokenizer-vectors";
  struct Vocab {
    const char* vectors;
    fs::path gguf;
  };
  const Vocab vocabs[] = {
      {"ggml-vocab-llama-spm.gguf.inp", dir / "ggml-vocab-llama-spm.gguf"},
      {"ggml-vocab-deepseek-llm.gguf.inp", dir / "ggml-vocab-deepseek-llm.gguf"},
      {"ggml-vocab-qwen2.gguf.inp", moetier::test::shared_dir() / "models" / "qwen3moe-tiny-q8_0.gguf"},
  };
  for (const auto& v : vocabs) {
    SUBCASE(v.vectors) {
      const auto model = moetier::gguf::GgufModel::open(v.gguf.string());
      const Tokenizer tok = Tokenizer::from_gguf(model);
      check_vectors(tok, dir / v.vectors);
    }
  }
}

TEST_CASE("golden prompts: tokens and pieces" * doctest::skip(moetier::test::no_shared())) {
  const fs::path shared = moetier::test::shared_dir();
  size_t n_models = 0;
  for (const auto& entry : fs::directory_iterator(shared / "models")) {
    if (entry.path().extension() != ".gguf") continue;
    const std::string stem = entry.path().stem().string();
    const fs::path golden_path = shared / "golden" / stem / "golden.json";
    if (!fs::exists(golden_path)) continue;
    ++n_models;
    CAPTURE(stem);
    const auto model = moetier::gguf::GgufModel::open(entry.path().string());
    const Tokenizer tok = Tokenizer::from_gguf(model);
    const auto golden = nlohmann::json::parse(read_file(golden_path));
    CHECK(golden.at("n_vocab").get<int32_t>() == tok.n_vocab());
    for (const auto& p : golden.at("prompts")) {
      const int index = p.at("index").get<int>();
      CAPTURE(index);
      std::string name = std::to_string(index);
      name.insert(0, 1, 'p').append(".txt");
      const std::string text = read_file(shared / "golden" / "prompts" / name);
      CHECK(text == p.at("text").get<std::string>());
      const auto expected = p.at("tokens").get<std::vector<int32_t>>();
      const auto got = tok.encode(text, true, true);
      CHECK_MESSAGE(got == expected, "expected " << show_ids(expected) << "\n got " << show_ids(got));
      const auto pieces_hex = p.at("token_pieces_hex").get<std::vector<std::string>>();
      REQUIRE(pieces_hex.size() == expected.size());
      std::string concatenated;
      for (size_t i = 0; i < expected.size(); ++i) {
        CHECK_MESSAGE(hex(tok.token_to_piece(expected[i], true)) == pieces_hex[i], "token " << expected[i]);
        concatenated += tok.token_to_piece(expected[i], true);
      }
      // The generated tokens' pieces too.
      const auto greedy = p.at("greedy_tokens").get<std::vector<int32_t>>();
      const auto greedy_hex = p.at("greedy_pieces_hex").get<std::vector<std::string>>();
      REQUIRE(greedy.size() == greedy_hex.size());
      for (size_t i = 0; i < greedy.size(); ++i)
        CHECK_MESSAGE(hex(tok.token_to_piece(greedy[i], true)) == greedy_hex[i], "greedy token " << greedy[i]);
    }
  }
  CHECK(n_models >= 3);
}

TEST_CASE("loading the qwen2 vocabulary (151936 tokens, 151387 merges)" * doctest::skip(moetier::test::no_shared())) {
  const fs::path path = moetier::test::shared_dir() / "models" / "qwen3moe-tiny-q8_0.gguf";
  const auto model = moetier::gguf::GgufModel::open(path.string());
  const auto cpu_ms = [] {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
  };
  const auto t0 = std::chrono::steady_clock::now();
  const double c0 = cpu_ms();
  const Tokenizer tok = Tokenizer::from_gguf(model);
  const double cpu = cpu_ms() - c0;
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  MESSAGE("Tokenizer::from_gguf(qwen2 vocab): " << ms << " ms wall, " << cpu << " ms CPU");
  CHECK(tok.n_vocab() == 151936);
  CHECK(tok.bos() == 151643);
  CHECK(tok.eos() == 151643);
  CHECK_FALSE(tok.add_bos());
  // llama.cpp's EOG list for this vocabulary (see golden/qwen3moe-tiny-q8_0/llama_model_info.txt).
  CHECK(tok.vocab().eog_ids() == std::vector<int32_t>{128247, 151643, 151645});
  CHECK(tok.vocab().special().eot == 151645);
  CHECK(tok.is_eog(151645));
  CHECK_FALSE(tok.is_eog(785));
}

TEST_CASE("round trip on random text: pieces reproduce the input, streaming never splits a character" *
          doctest::skip(moetier::test::no_shared())) {
  using moetier::tokenizer::StreamingDetokenizer;
  // Codepoints of several scripts and kinds: ASCII, whitespace variants, marks, CJK, emoji, digits.
  const std::vector<uint32_t> pool = {'a',    'Z',    'q',    '0',    '7',    ' ',    ' ',     '\n',    '\t',
                                      '\r',   '\'',   '!',    '~',    '<',    '|',    '>',     0xA0,    0x3000,
                                      0xE9,   0xDF,   0x4E2D, 0x6587, 0x1F600, 0xB2,  0x301,   0x3A9,   0x964,
                                      0x639,  0x2019, 0x2013, 0xFF01, 0x85,   0x1F30D, 0x200B, 0xAC00};
  std::mt19937 rng(1234);
  for (const char* stem : {"mixtral-tiny-f32", "qwen3moe-tiny-q8_0", "deepseek2-tiny-f32"}) {
    CAPTURE(stem);
    const auto model = moetier::gguf::GgufModel::open((moetier::test::shared_dir() / "models" / stem).string() + ".gguf");
    const Tokenizer tok = Tokenizer::from_gguf(model);
    const bool spm = tok.vocab().type() == moetier::tokenizer::VocabType::kSpm;
    for (int iter = 0; iter < 150; ++iter) {
      std::string text;
      const size_t len = rng() % 40;
      for (size_t i = 0; i < len; ++i) moetier::tokenizer::append_utf8(text, pool[rng() % pool.size()]);
      CAPTURE(text);
      const auto ids = tok.encode(text, false, false);
      std::string pieces, streamed;
      StreamingDetokenizer stream(tok);
      for (const auto id : ids) {
        REQUIRE((id >= 0 && id < tok.n_vocab()));
        pieces += tok.token_to_piece(id);
        const std::string chunk = stream.push(id);
        for (const uint32_t c : moetier::tokenizer::decode_utf8(chunk)) CHECK(c != moetier::tokenizer::kReplacementChar);
        streamed += chunk;
      }
      streamed += stream.finish();
      CHECK(pieces == ((spm && !text.empty()) ? " " + text : text));
      CHECK(streamed == pieces);
      // Arbitrary bytes (mostly invalid UTF-8) never throw and give valid ids.
      std::string junk;
      for (size_t i = 0; i < len; ++i) junk.push_back(static_cast<char>(rng() & 0xFF));
      for (const auto id : tok.encode(junk, true, true)) REQUIRE((id >= 0 && id < tok.n_vocab()));
    }
  }
}
