// libFuzzer target for the whole load path: arbitrary bytes are opened as a GGUF model (through a memfd,
// so the real GgufModel::open / mmap code runs), the hyper-parameters are read and validated, the weights
// bound (load_model), the tokenizer built, a 2-token prompt encoded and one forward step run through a
// Session (prefill + one generated token, greedy). Any problem must surface as a moetier::Error: a crash,
// a sanitizer report, another exception, a hang or a non-finite logit that was not reported is a bug.
// Seeds: fuzz/make_load_seeds.cpp (micro models of every architecture, several weight types).
// Build and run: fuzz/run.sh SECONDS load (clang, whole project instrumented, ASan + UBSan).
#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/error.hpp"
#include "runtime/gguf/gguf_model.hpp"
#include "runtime/models/model.hpp"
#include "runtime/session/session.hpp"
#include "runtime/tokenizer/tokenizer.hpp"
#include "scheduler/thread_pool.hpp"

namespace {

/// An anonymous in-memory file holding the input, reachable by path as /proc/self/fd/N.
class MemFile {
 public:
  MemFile(const uint8_t* data, size_t size) : fd_(::memfd_create("fuzz-load.gguf", MFD_CLOEXEC)) {
    if (fd_ < 0) return;
    size_t done = 0;
    while (done < size) {
      const ssize_t n = ::write(fd_, data + done, size - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    ok_ = done == size;
  }
  ~MemFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  bool ok() const { return ok_; }
  std::string path() const { return "/proc/self/fd/" + std::to_string(fd_); }

 private:
  int fd_ = -1;
  bool ok_ = false;
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  moetier::sched::ThreadPoolOptions po;
  po.n_threads = 1;
  po.pin = false;
  moetier::sched::configure_global_pool(po);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace moetier;
  MemFile file(data, size);
  if (!file.ok()) return 0;
  try {
    const auto g = gguf::GgufModel::open(file.path());
    auto model = models::load_model(g);
    const auto tok = tokenizer::Tokenizer::from_gguf(g);
    if (tok.n_vocab() != model->hparams().n_vocab) return 0;  // moetier run refuses this pair with an Error
    std::vector<int32_t> prompt = tok.encode("Hi", true, false);
    if (prompt.empty()) prompt.push_back(0);
    if (prompt.size() > 2) prompt.resize(2);
    Session session(*model, tok, 4);
    GenerateParams gp;
    gp.n_predict = 1;
    gp.sampling.temperature = 0.0f;
    std::vector<float> logits;
    const GenerateStats st = session.generate(prompt, gp, [](const std::string&) {}, &logits);
    // The run must have stopped with an Error rather than hand out a token computed from NaN.
    for (float x : logits)
      if (!std::isfinite(x)) __builtin_trap();
    if (st.tokens.size() > 1) __builtin_trap();
  } catch (const Error&) {
  }
  return 0;
}
