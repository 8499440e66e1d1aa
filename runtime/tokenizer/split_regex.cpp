// SplitRegex: parser and backtracking matcher. See split_regex.hpp for the semantics reproduced.
#include "runtime/tokenizer/split_regex.hpp"

#include <algorithm>
#include <limits>

#include "common/error.hpp"
#include "runtime/tokenizer/unicode.hpp"

namespace moetier::tokenizer {
namespace {

constexpr uint32_t kUnbounded = std::numeric_limits<uint32_t>::max();

// Collapsed-view bytes of the categories (llama.cpp unicode_regex_split).
constexpr uint32_t kCollapsedOther = 0xD0;
constexpr uint32_t kCollapsedNumber = 0xD1;
constexpr uint32_t kCollapsedLetter = 0xD2;
constexpr uint32_t kCollapsedPunct = 0xD3;
constexpr uint32_t kCollapsedMark = 0xD4;
constexpr uint32_t kCollapsedSymbol = 0xD5;
constexpr uint32_t kCollapsedSpace = 0x0B;

bool is_c_space(uint32_t c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

struct Category {
  std::string_view name;
  uint32_t byte;
  std::vector<std::pair<uint32_t, uint32_t>> ascii;
};

const std::vector<Category>& categories() {
  static const std::vector<Category> cats = [] {
    const std::vector<std::pair<uint32_t, uint32_t>> letters = {{'A', 'Z'}, {'a', 'z'}};
    return std::vector<Category>{
        {"N", kCollapsedNumber, {{'0', '9'}}},
        {"L", kCollapsedLetter, letters},
        {"Lu", kCollapsedLetter, letters},
        {"Ll", kCollapsedLetter, letters},
        {"Lt", kCollapsedLetter, letters},
        {"Lm", kCollapsedLetter, letters},
        {"Lo", kCollapsedLetter, letters},
        {"P", kCollapsedPunct,
         {{'!', '#'}, {'%', '*'}, {',', '/'}, {':', ';'}, {'?', '@'}, {'[', ']'}, {'_', '_'}, {'{', '{'}, {'}', '}'}}},
        {"M", kCollapsedMark, {}},
        {"S", kCollapsedSymbol, {{'$', '$'}, {'+', '+'}, {'<', '>'}, {'^', '^'}, {'`', '`'}, {'|', '|'}}},
    };
  }();
  return cats;
}

const Category* find_category(std::string_view name) {
  for (const auto& c : categories())
    if (c.name == name) return &c;
  return nullptr;
}

// True when llama.cpp would use the collapsed view for this pattern.
bool uses_categories(std::string_view pattern) {
  for (const auto& c : categories())
    if (pattern.find("\\p{" + std::string(c.name) + "}") != std::string_view::npos) return true;
  return false;
}

}  // namespace

bool CharSet::match(uint32_t c) const {
  bool in = (space && is_c_space(c)) || (nonspace && !is_c_space(c));
  for (size_t i = 0; !in && i < ranges.size(); ++i) in = ranges[i].first <= c && c <= ranges[i].second;
  return in != negated;
}

// ---------------------------------------------------------------------------------------------------
// Parser: recursive descent over the pattern's codepoints.

class RegexParser {
 public:
  RegexParser(SplitRegex& re, std::string_view pattern) : re_(re), cpts_(decode_utf8(pattern)) {}

  void parse() {
    const int root = parse_alternation();
    if (pos_ != cpts_.size()) error("unbalanced ')'");
    re_.root_ = {root};
  }

 private:
  using Node = SplitRegex::Node;

  [[noreturn]] void error(std::string_view what) const {
    fail("pre-tokenizer regex \"{}\": {} at codepoint {}", re_.pattern_, what, pos_);
  }
  bool at_end() const { return pos_ >= cpts_.size(); }
  uint32_t peek(size_t ahead = 0) const { return pos_ + ahead < cpts_.size() ? cpts_[pos_ + ahead] : 0; }
  uint32_t next() {
    if (at_end()) error("unexpected end of pattern");
    return cpts_[pos_++];
  }
  int add(Node n) {
    re_.nodes_.push_back(std::move(n));
    return static_cast<int>(re_.nodes_.size()) - 1;
  }
  static CharSet single(uint32_t c) { return CharSet{{{c, c}}}; }

  int parse_alternation() {
    Node alt;
    alt.kind = Node::Kind::kAlt;
    alt.branches.emplace_back();
    while (!at_end() && peek() != ')') {
      if (peek() == '|') {
        ++pos_;
        alt.branches.emplace_back();
        continue;
      }
      alt.branches.back().push_back(parse_quantified());
    }
    return add(std::move(alt));
  }

  int parse_quantified() {
    int atom = parse_atom();
    for (;;) {
      uint32_t lo = 0, hi = 0;
      const uint32_t c = peek();
      if (c == '*') {
        lo = 0, hi = kUnbounded, ++pos_;
      } else if (c == '+') {
        lo = 1, hi = kUnbounded, ++pos_;
      } else if (c == '?') {
        lo = 0, hi = 1, ++pos_;
      } else if (c == '{') {
        ++pos_;
        lo = parse_number();
        hi = lo;
        if (peek() == ',') {
          ++pos_;
          hi = peek() == '}' ? kUnbounded : parse_number();
        }
        if (next() != '}') error("expected '}'");
        if (hi < lo) error("bad {n,m} bounds");
      } else {
        return atom;
      }
      if (peek() == '?') error("lazy quantifiers are not supported");
      if (re_.nodes_[atom].kind == Node::Kind::kLook || re_.nodes_[atom].kind == Node::Kind::kEnd)
        error("quantified assertion");
      Node rep;
      rep.kind = Node::Kind::kRepeat;
      rep.child = {atom};
      rep.min = lo;
      rep.max = hi;
      atom = add(std::move(rep));
    }
  }

  uint32_t parse_number() {
    if (!(peek() >= '0' && peek() <= '9')) error("expected a number");
    uint32_t v = 0;
    while (peek() >= '0' && peek() <= '9') v = v * 10 + (next() - '0');
    return v;
  }

  int parse_atom() {
    const uint32_t c = next();
    switch (c) {
      case '(': {
        bool look = false, negate = false;
        if (peek() == '?') {
          ++pos_;
          const uint32_t kind = next();
          if (kind == '=' || kind == '!') {
            look = true;
            negate = kind == '!';
          } else if (kind != ':') {
            error("unsupported group type");
          }
        }
        const int body = parse_alternation();
        if (next() != ')') error("expected ')'");
        if (look) {
          Node n;
          n.kind = Node::Kind::kLook;
          n.negate = negate;
          n.branches = std::move(re_.nodes_[body].branches);
          return add(std::move(n));
        }
        return reduce(body);
      }
      case '[': return char_node({parse_bracket()});
      case '\\': return char_node({parse_escape(false)});
      case '$': {
        Node n;
        n.kind = Node::Kind::kEnd;
        return add(std::move(n));
      }
      case '.': case '^': case ')': case '|': case '*': case '+': case '?': case '{':
        --pos_;
        error("unsupported or misplaced metacharacter");
      default: return char_node({literal(c)});
    }
  }

  int char_node(std::vector<CharSet> pred) {
    Node n;
    n.kind = Node::Kind::kChar;
    n.pred = std::move(pred);
    return add(std::move(n));
  }

  CharSet literal(uint32_t c) {
    if (c >= 128 && re_.input_ == RegexInput::kCollapsed)
      error("pattern mixes \\p{..} categories with non-ASCII characters (llama.cpp rejects this)");
    return single(c);
  }

  // After '\'. Inside a bracket `in_bracket` is true (only affects error text).
  CharSet parse_escape(bool in_bracket) {
    const uint32_t e = next();
    switch (e) {
      case 's': return CharSet{{}, true, false, false};
      case 'S': return CharSet{{}, false, true, false};
      case 'd': return CharSet{{{'0', '9'}}};
      case 'D': return CharSet{{{'0', '9'}}, false, false, true};
      case 'r': return single('\r');
      case 'n': return single('\n');
      case 't': return single('\t');
      case 'f': return single('\f');
      case 'v': return single('\v');
      case 'p': {
        if (next() != '{') error("expected '{' after \\p");
        std::string name;
        while (!at_end() && peek() != '}') name.push_back(static_cast<char>(next()));
        if (next() != '}') error("expected '}'");
        const Category* cat = find_category(name);
        if (!cat || re_.input_ != RegexInput::kCollapsed) error("unsupported category \\p{" + name + "}");
        CharSet set;
        set.ranges = cat->ascii;
        set.ranges.emplace_back(cat->byte, cat->byte);
        return set;
      }
      default:
        if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '0' && e <= '9'))
          error(in_bracket ? "unsupported escape in [...]" : "unsupported escape");
        return literal(e);  // identity escape: \\ \[ \- \$ ...
    }
  }

  CharSet parse_bracket() {
    CharSet set;
    if (peek() == '^') {
      set.negated = true;
      ++pos_;
    }
    bool first = true;
    while (first || peek() != ']') {
      if (at_end()) error("unterminated [...]");
      first = false;
      CharSet atom;
      uint32_t lo = 0;
      bool is_char = true;
      if (peek() == '\\') {
        ++pos_;
        atom = parse_escape(true);
        is_char = atom.ranges.size() == 1 && !atom.space && !atom.nonspace && !atom.negated &&
                  atom.ranges[0].first == atom.ranges[0].second;
        lo = is_char ? atom.ranges[0].first : 0;
      } else {
        lo = next();
        atom = literal(lo);
      }
      if (is_char && peek() == '-' && peek(1) != ']' && pos_ + 1 < cpts_.size()) {
        ++pos_;  // range
        uint32_t hi = 0;
        if (peek() == '\\') {
          ++pos_;
          const CharSet h = parse_escape(true);
          if (h.ranges.size() != 1 || h.space || h.nonspace || h.negated || h.ranges[0].first != h.ranges[0].second)
            error("class escape as range end");
          hi = h.ranges[0].first;
        } else {
          hi = next();
          literal(hi);
        }
        if (hi < lo) error("range out of order");
        set.ranges.emplace_back(lo, hi);
        continue;
      }
      if (atom.negated) {
        if (!atom.ranges.empty()) error("\\D inside [...] is not supported");
      }
      set.space |= atom.space;
      set.nonspace |= atom.nonspace;
      set.ranges.insert(set.ranges.end(), atom.ranges.begin(), atom.ranges.end());
    }
    ++pos_;  // ']'
    return set;
  }

  // A group that always consumes exactly one symbol without choice points — optional lookaheads of
  // one-symbol bodies followed by one one-symbol atom, e.g. ((?=[\p{L}])([^a-z])) — becomes a kChar
  // node (a conjunction of sets), so that repeating it needs no backtracking state.
  bool single_symbol(int idx, std::vector<CharSet>& out) const {
    const Node& n = re_.nodes_[idx];
    if (n.kind == Node::Kind::kChar) {
      out.insert(out.end(), n.pred.begin(), n.pred.end());
      return true;
    }
    if (n.kind != Node::Kind::kAlt || n.branches.size() != 1 || n.branches[0].empty()) return false;
    const auto& seq = n.branches[0];
    std::vector<CharSet> acc;
    for (size_t i = 0; i + 1 < seq.size(); ++i) {
      const Node& look = re_.nodes_[seq[i]];
      if (look.kind != Node::Kind::kLook || look.branches.size() != 1 || look.branches[0].size() != 1) return false;
      std::vector<CharSet> body;
      if (!single_symbol(look.branches[0][0], body)) return false;
      if (look.negate) {
        if (body.size() != 1) return false;
        body[0].negated = !body[0].negated;  // at the end of input the consuming atom fails anyway
      }
      acc.insert(acc.end(), body.begin(), body.end());
    }
    if (!single_symbol(seq.back(), acc)) return false;
    out.insert(out.end(), acc.begin(), acc.end());
    return true;
  }

  int reduce(int group) {
    std::vector<CharSet> pred;
    if (single_symbol(group, pred)) return char_node(std::move(pred));
    return group;
  }

  SplitRegex& re_;
  std::vector<uint32_t> cpts_;
  size_t pos_ = 0;
};

SplitRegex SplitRegex::compile(std::string_view pattern) {
  SplitRegex re;
  re.pattern_ = std::string(pattern);
  re.input_ = uses_categories(pattern) ? RegexInput::kCollapsed : RegexInput::kWide;
  RegexParser(re, pattern).parse();
  return re;
}

std::vector<uint32_t> SplitRegex::to_symbols(std::span<const uint32_t> cpts, RegexInput input) {
  std::vector<uint32_t> out(cpts.size());
  for (size_t i = 0; i < cpts.size(); ++i) {
    const uint32_t c = cpts[i];
    if (c < 128) {
      out[i] = c;
      continue;
    }
    const CodepointFlags f = codepoint_flags(c);
    if (f.is_whitespace()) {
      out[i] = kCollapsedSpace;
    } else if (input == RegexInput::kWide) {
      out[i] = c;
    } else {
      switch (f.category()) {
        case CodepointFlags::kNumber: out[i] = kCollapsedNumber; break;
        case CodepointFlags::kLetter: out[i] = kCollapsedLetter; break;
        case CodepointFlags::kPunctuation: out[i] = kCollapsedPunct; break;
        case CodepointFlags::kMark: out[i] = kCollapsedMark; break;
        case CodepointFlags::kSymbol: out[i] = kCollapsedSymbol; break;
        default: out[i] = kCollapsedOther; break;
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Matcher: continuation-passing backtracking with ECMAScript priorities (first alternative first,
// greedy repetition longest first). Repetitions of one-symbol atoms are counted iteratively, so the
// recursion depth depends on the pattern, not on the length of the match.

class RegexMatcher {
 public:
  using Node = SplitRegex::Node;

  RegexMatcher(const SplitRegex& re, std::span<const uint32_t> sym, size_t end) : re_(re), sym_(sym), end_(end) {}

  bool match_at(size_t pos, size_t& match_end) {
    if (!run(&re_.root_, 0, pos, nullptr)) return false;
    match_end = match_end_;
    return true;
  }

 private:
  struct Cont {
    const std::vector<int>* seq = nullptr;  // continue with seq[idx...] ...
    size_t idx = 0;
    const Cont* next = nullptr;             // ... then with `next` (nullptr: accept)
    const Node* rep = nullptr;              // or: one more try of repetition `rep` after `count` iterations
    uint32_t count = 0;
    size_t iter_start = 0;
  };

  static bool match_pred(const std::vector<CharSet>& pred, uint32_t c) {
    for (const auto& s : pred)
      if (!s.match(c)) return false;
    return true;
  }

  bool resume(const Cont* k, size_t pos) {
    if (!k) {
      match_end_ = pos;
      return true;
    }
    if (k->rep) {
      if (pos == k->iter_start && k->count > k->rep->min) return false;  // empty iteration
      return repeat(*k->rep, k->count, pos, k->next);
    }
    return run(k->seq, k->idx, pos, k->next);
  }

  bool repeat(const Node& n, uint32_t count, size_t pos, const Cont* after) {
    if (count < n.max) {
      const Cont more{nullptr, 0, after, &n, count + 1, pos};
      if (run(&n.child, 0, pos, &more)) return true;
    }
    return count >= n.min && resume(after, pos);
  }

  bool lookahead(const Node& n, size_t pos) {
    const size_t saved = match_end_;
    bool found = false;
    for (const auto& b : n.branches)
      if ((found = run(&b, 0, pos, nullptr))) break;
    match_end_ = saved;
    return found;
  }

  bool run(const std::vector<int>* seq, size_t i, size_t pos, const Cont* k) {
    for (;;) {
      if (i == seq->size()) return resume(k, pos);
      const Node& n = re_.nodes_[(*seq)[i]];
      switch (n.kind) {
        case Node::Kind::kChar:
          if (pos < end_ && match_pred(n.pred, sym_[pos])) {
            ++pos, ++i;
            continue;
          }
          return false;
        case Node::Kind::kEnd:
          if (pos != end_) return false;
          ++i;
          continue;
        case Node::Kind::kLook:
          if (lookahead(n, pos) == n.negate) return false;
          ++i;
          continue;
        case Node::Kind::kAlt: {
          const Cont c{seq, i + 1, k};
          for (const auto& b : n.branches)
            if (run(&b, 0, pos, &c)) return true;
          return false;
        }
        case Node::Kind::kRepeat: {
          const Cont c{seq, i + 1, k};
          const Node& child = re_.nodes_[n.child[0]];
          if (child.kind != Node::Kind::kChar) return repeat(n, 0, pos, &c);
          const size_t limit = std::min<size_t>(n.max, end_ - pos);
          size_t count = 0;
          while (count < limit && match_pred(child.pred, sym_[pos + count])) ++count;
          if (count < n.min) return false;
          for (size_t j = count;; --j) {
            if (resume(&c, pos + j)) return true;
            if (j == n.min) return false;
          }
        }
      }
    }
  }

  const SplitRegex& re_;
  std::span<const uint32_t> sym_;
  size_t end_;
  size_t match_end_ = 0;
};

bool SplitRegex::search(std::span<const uint32_t> symbols, size_t from, size_t end, size_t& match_begin,
                        size_t& match_end) const {
  RegexMatcher m(*this, symbols, end);
  for (size_t start = from; start < end; ++start) {
    size_t e = 0;
    if (m.match_at(start, e) && e > start) {
      match_begin = start;
      match_end = e;
      return true;
    }
  }
  return false;
}

std::vector<size_t> SplitRegex::split(std::span<const uint32_t> symbols, std::span<const size_t> pieces) const {
  std::vector<size_t> out;
  out.reserve(pieces.size());
  size_t seg_start = 0;
  for (const size_t len : pieces) {
    const size_t seg_end = seg_start + len;
    size_t cur = seg_start, mb = 0, me = 0;
    while (cur < seg_end && search(symbols, cur, seg_end, mb, me)) {
      if (mb > cur) out.push_back(mb - cur);
      out.push_back(me - mb);
      cur = me;
    }
    if (cur < seg_end) out.push_back(seg_end - cur);
    seg_start = seg_end;
  }
  return out;
}

}  // namespace moetier::tokenizer
