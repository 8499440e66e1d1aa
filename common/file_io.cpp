#include "common/file_io.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <mutex>
#include <random>
#include <filesystem>
#include <fstream>
#include <regex>
#include <vector>

#include "common/error.hpp"

namespace moetier {
namespace {

/// The process's umask, read without changing it (umask(2) would, for every thread), from
/// /proc/self/status; 022 when it cannot be read.
mode_t current_umask() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("Umask:", 0) == 0) return static_cast<mode_t>(std::strtoul(line.c_str() + 6, nullptr, 8) & 0777);
  return 022;
}

/// The folder a new file `path` would be created in ("." for a bare name).
std::string folder_of(const std::string& path) {
  const std::filesystem::path p(path);
  return p.has_parent_path() ? p.parent_path().string() : std::string(".");
}

[[noreturn]] void fail_not_regular(const std::string& path, std::string_view what, mode_t mode, bool output) {
  if (output)
    fail("{}: cannot write the {} there: it is a {} (only a regular file or a new name is written)", path, what,
         file_type_name(mode));
  fail("{}: the {} is a {}, not a regular file", path, what, file_type_name(mode));
}

/// Opens `path` for reading without blocking and checks that it is a regular file; returns the fd.
int open_regular(const std::string& path, std::string_view what) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) fail("{}: cannot open the {}: {}", path, what, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    fail("{}: cannot stat the {}: {}", path, what, std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail_not_regular(path, what, st.st_mode, false);
  }
  return fd;
}

// Temporaries removed when SIGINT, SIGTERM or SIGHUP ends the process. A signal handler may not
// allocate or take locks, so the registry is a fixed array of path buffers, each with an atomic state
// (lock-free, so async-signal-safe to read): kFree -> kFilling (claimed by one thread with a
// compare-exchange, path being copied) -> kReady (the handler may unlink it) -> kFree. The handler
// unlinks every kReady path (unlink is async-signal-safe), restores the default action and re-raises the
// signal, so the exit status stays 128 + N. A temporary that does not fit (more than kMaxTemps open at
// once, or a path longer than PATH_MAX) is simply not registered: it is still removed on every ordinary
// exit path, only not on a signal. A name is registered just before its O_EXCL creation, so a signal
// in that instant could unlink a same-named file made by someone else: a 6-character random suffix
// makes that a 1-in-5e10 event, against a certain leak with mkostemp's create-then-register window.
constexpr int kMaxTemps = 16;
enum : int { kFree = 0, kFilling = 1, kReady = 2 };
std::atomic<int> g_temp_state[kMaxTemps];
char g_temp_path[kMaxTemps][PATH_MAX];
static_assert(std::atomic<int>::is_always_lock_free);

extern "C" void remove_temps_and_reraise(int sig) {
  for (int i = 0; i < kMaxTemps; ++i)
    if (g_temp_state[i].load(std::memory_order_acquire) == kReady) ::unlink(g_temp_path[i]);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  ::sigaction(sig, &dfl, nullptr);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, sig);
  ::pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  ::raise(sig);
}

/// Installs the handler for SIGINT, SIGTERM and SIGHUP once, for each signal whose action is still the
/// default (an ignored SIGHUP under nohup, or a handler someone else installed, is left alone).
void install_temp_cleanup() {
  static std::once_flag once;
  std::call_once(once, [] {
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
      struct sigaction old {};
      if (::sigaction(sig, nullptr, &old) != 0 || old.sa_handler != SIG_DFL || (old.sa_flags & SA_SIGINFO)) continue;
      struct sigaction sa {};
      sa.sa_handler = remove_temps_and_reraise;
      sigemptyset(&sa.sa_mask);
      for (int other : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&sa.sa_mask, other);  // one cleanup at a time
      ::sigaction(sig, &sa, nullptr);
    }
  });
}

/// Registers `path` for removal on a signal; returns its slot, or -1 when it could not be registered.
int register_temp(const std::string& path) {
  install_temp_cleanup();
  if (path.size() >= PATH_MAX) return -1;
  for (int i = 0; i < kMaxTemps; ++i) {
    int expected = kFree;
    if (!g_temp_state[i].compare_exchange_strong(expected, kFilling, std::memory_order_acquire)) continue;
    std::memcpy(g_temp_path[i], path.c_str(), path.size() + 1);
    g_temp_state[i].store(kReady, std::memory_order_release);
    return i;
  }
  return -1;
}

void unregister_temp(int slot) {
  if (slot >= 0) g_temp_state[slot].store(kFree, std::memory_order_release);
}

}  // namespace

const char* file_type_name(mode_t mode) {
  if (S_ISREG(mode)) return "regular file";
  if (S_ISDIR(mode)) return "directory";
  if (S_ISFIFO(mode)) return "FIFO";
  if (S_ISSOCK(mode)) return "socket";
  if (S_ISCHR(mode)) return "character device";
  if (S_ISBLK(mode)) return "block device";
  if (S_ISLNK(mode)) return "symbolic link";
  return "special file";
}

void check_input_file(const std::string& path, std::string_view what) { ::close(open_regular(path, what)); }

std::string read_input_file(const std::string& path, std::string_view what) {
  const int fd = open_regular(path, what);
  std::string out;
  std::vector<char> buf(1 << 16);
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      fail("{}: cannot read the {}: {}", path, what, std::strerror(err));
    }
    if (n == 0) break;
    out.append(buf.data(), static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

void check_output_file(const std::string& path, std::string_view what) {
  if (path.empty()) fail("empty file name for the {}", what);
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (!S_ISREG(st.st_mode)) fail_not_regular(path, what, st.st_mode, true);
    return;
  }
  if (errno != ENOENT) fail("{}: cannot write the {}: {}", path, what, std::strerror(errno));
  // Absent (or a dangling symbolic link): the folder it would be created in must exist.
  const std::string dir = folder_of(path);
  if (::stat(dir.c_str(), &st) != 0) fail("{}: cannot write the {}: folder {}: {}", path, what, dir, std::strerror(errno));
  if (!S_ISDIR(st.st_mode)) fail("{}: cannot write the {}: {} is not a directory", path, what, dir);
}

OutputFile::OutputFile(std::string path, std::string what) : path_(std::move(path)), what_(std::move(what)) {
  check_output_file(path_, what_);
  target_ = path_;
  struct stat lst {};
  if (::lstat(path_.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode)) {
    std::error_code ec;
    const auto resolved = std::filesystem::weakly_canonical(path_, ec);
    if (ec) fail("{}: cannot resolve the symbolic link: {}", path_, ec.message());
    target_ = resolved.string();
  }
  std::string name = std::filesystem::path(target_).filename().string();
  if (name.size() > 200) name.resize(200);  // keep the temporary's name within NAME_MAX
  const std::string prefix = (std::filesystem::path(folder_of(target_)) / ("." + name + ".moetier-")).string();
  // The name is registered for removal on a signal before the file is created (mkostemp would leave a
  // window in which the file exists unregistered); O_EXCL makes the creation safe as mkostemp's is.
  static constexpr char kChars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::random_device rd;
  int fd = -1;
  for (int attempt = 0; fd < 0 && attempt < 100; ++attempt) {
    std::string candidate = prefix;
    for (int i = 0; i < 6; ++i) candidate.push_back(kChars[rd() % (sizeof(kChars) - 1)]);
    temp_slot_ = register_temp(candidate);
    fd = ::open(candidate.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd >= 0) {
      temp_ = candidate;
      break;
    }
    const int err = errno;
    unregister_temp(temp_slot_);
    temp_slot_ = -1;
    if (err != EEXIST)
      fail("{}: cannot create a temporary file for the {} in {}: {}", path_, what_, folder_of(target_), std::strerror(err));
  }
  if (fd < 0) fail("{}: cannot create a temporary file for the {} in {}: every name tried exists", path_, what_, folder_of(target_));
  file_ = ::fdopen(fd, "wb");
  if (!file_) {
    const int err = errno;
    ::close(fd);
    ::unlink(temp_.c_str());
    unregister_temp(temp_slot_);
    fail("{}: cannot open {}: {}", path_, temp_, std::strerror(err));
  }
}

OutputFile::~OutputFile() {
  if (committed_) return;
  if (file_) std::fclose(file_);
  ::unlink(temp_.c_str());
  unregister_temp(temp_slot_);  // after the unlink: a signal in between only unlinks it once more
}

void OutputFile::write(std::string_view bytes) {
  if (committed_ || !file_) fail("{}: write after commit", path_);
  if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), file_) != bytes.size())
    fail("{}: cannot write the {}: {}", path_, what_, std::strerror(errno));
}

void OutputFile::commit() {
  if (committed_) return;
  // The replaced file's mode (and, where allowed, owner) carries over; a new file gets 0666 & ~umask as
  // fopen would have given it.
  struct stat st {};
  const bool replacing = ::stat(target_.c_str(), &st) == 0;
  // Checked again: the target may have changed since the constructor (e.g. a FIFO made meanwhile).
  if (replacing && !S_ISREG(st.st_mode)) fail_not_regular(path_, what_, st.st_mode, true);
  const mode_t mode = replacing ? (st.st_mode & 07777) : (0666 & ~current_umask());
  const int fd = ::fileno(file_);
  int err = 0;
  if (std::fflush(file_) != 0 || std::ferror(file_)) err = errno ? errno : EIO;
  if (!err && ::fchmod(fd, mode) != 0) err = errno;
  if (!err && replacing && (st.st_uid != ::geteuid() || st.st_gid != ::getegid()))
    (void)!::fchown(fd, st.st_uid, st.st_gid);  // best effort: only root may give a file away
  std::FILE* f = file_;
  file_ = nullptr;
  if (std::fclose(f) != 0 && !err) err = errno;
  if (err) fail("{}: cannot write the {}: {}", path_, what_, std::strerror(err));
  if (std::rename(temp_.c_str(), target_.c_str()) != 0)
    fail("{}: cannot rename {} onto it: {}", path_, temp_, std::strerror(errno));
  committed_ = true;
  unregister_temp(temp_slot_);
}

namespace {

/// What identifies a file: (device, inode) when it exists, else its canonical path.
struct FileIdentity {
  bool exists = false;
  dev_t dev = 0;
  ino_t ino = 0;
  std::string canonical;
  bool operator==(const FileIdentity& o) const {
    if (exists && o.exists) return dev == o.dev && ino == o.ino;
    return !exists && !o.exists && canonical == o.canonical;
  }
};

FileIdentity identity_of(const std::string& path) {
  FileIdentity id;
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    id.exists = true;
    id.dev = st.st_dev;
    id.ino = st.st_ino;
    return id;
  }
  std::error_code ec;
  const auto c = std::filesystem::weakly_canonical(std::filesystem::absolute(path, ec), ec);
  id.canonical = ec ? path : c.lexically_normal().string();
  return id;
}

}  // namespace

void check_distinct_files(const std::vector<NamedFile>& inputs, const std::vector<NamedFile>& outputs) {
  std::vector<FileIdentity> in_ids, out_ids;
  for (const auto& f : inputs) in_ids.push_back(f.path.empty() ? FileIdentity{} : identity_of(f.path));
  for (const auto& f : outputs) out_ids.push_back(f.path.empty() ? FileIdentity{} : identity_of(f.path));
  for (size_t o = 0; o < outputs.size(); ++o) {
    if (outputs[o].path.empty()) continue;
    for (size_t i = 0; i < inputs.size(); ++i)
      if (!inputs[i].path.empty() && out_ids[o] == in_ids[i])
        fail("{} {} names the same file as {} {}: an output must not replace an input", outputs[o].option,
             outputs[o].path, inputs[i].option, inputs[i].path);
    for (size_t p = 0; p < o; ++p)
      if (!outputs[p].path.empty() && out_ids[o] == out_ids[p])
        fail("{} {} names the same file as {} {}: two outputs cannot share a file", outputs[o].option,
             outputs[o].path, outputs[p].option, outputs[p].path);
  }
}

std::vector<std::string> model_part_paths(const std::string& path) {
  static const std::regex split(R"((.*)-(\d{5})-of-(\d{5})\.gguf)");
  std::smatch m;
  if (!std::regex_match(path, m, split)) return {path};
  const int n = std::stoi(m[3].str());
  std::vector<std::string> parts;
  for (int i = 1; i <= n; ++i) parts.push_back(fmt::format("{}-{:05d}-of-{}.gguf", m[1].str(), i, m[3].str()));
  return parts;
}

void write_output_file(const std::string& path, std::string_view bytes, std::string_view what) {
  OutputFile out(path, std::string(what));
  out.write(bytes);
  out.commit();
}

}  // namespace moetier
