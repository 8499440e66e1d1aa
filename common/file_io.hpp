// Files moetier reads and writes, by path: what kind of file a path names, reading a regular file
// without blocking on a FIFO, and replacing a file through a temporary beside it so that a failed or
// interrupted write never leaves a truncated file, and a device, FIFO or folder is never replaced.
//
// Rules (every input and output file of the CLI goes through here):
// - inputs must be regular files (symbolic links are followed); a FIFO, socket, folder or device is
//   refused with one Error line before anything blocks on it (the open uses O_NONBLOCK). Block devices
//   are refused too: their stat size is 0 and nothing moetier reads is kept on a raw device.
// - outputs must be absent or regular files (a symbolic link is followed to its target, which stays a
//   link); anything else is refused. The bytes go to "<dir>/.<name>.moetier-XXXXXX" in the target's
//   folder, which is renamed onto the target on commit (same file system, so the rename is atomic).
// - while it is open, the temporary is registered for removal when SIGINT, SIGTERM or SIGHUP ends the
//   process: the first OutputFile installs handlers (for those signals still at their default action)
//   that unlink the registered temporaries and re-raise the signal with its default action, so the exit
//   status stays 128 + N. The registry is a fixed array the handler reads without allocating or locking.
#pragma once

#include <sys/types.h>

#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace moetier {

/// "regular file", "directory", "FIFO", "socket", "character device", "block device", "symbolic link"
/// or "special file" for a st_mode.
const char* file_type_name(mode_t mode);

/// Throws Error ("<what> <path>: ...", one line) unless `path` can be opened for reading and is a
/// regular file. Never blocks (O_NONBLOCK), so a FIFO without a writer is refused at once.
void check_input_file(const std::string& path, std::string_view what);

/// The whole content of the regular file `path` (same checks and errors as check_input_file, done on
/// the descriptor that is then read, so the file cannot be swapped in between).
std::string read_input_file(const std::string& path, std::string_view what);

/// Throws Error ("<what> <path>: ...") unless `path` may be written by OutputFile: absent (with an
/// existing folder) or a regular file, after following symbolic links. Cheap; call it before long work.
void check_output_file(const std::string& path, std::string_view what);

/// A file named on the command line: the option that names it ("-m", "--dump-logits") and its path.
struct NamedFile {
  std::string option, path;
};

/// Throws Error (one line naming both options and paths) when an output names the same file as an input
/// or as another output: the same (st_dev, st_ino) when both exist, else the same canonical path
/// (std::filesystem::weakly_canonical). Entries with an empty path are skipped. Call it before any work,
/// so that `--dump-logits MODEL` cannot replace the model it reads.
void check_distinct_files(const std::vector<NamedFile>& inputs, const std::vector<NamedFile>& outputs);

/// The parts of a split GGUF model named like llama.cpp's gguf-split ("x-00001-of-00003.gguf" gives
/// x-00001.. x-00003); { path } for any other name. Only names are computed; no file is opened.
std::vector<std::string> model_part_paths(const std::string& path);

/// A file written through a temporary in the target's folder and renamed onto the target by commit().
/// Not thread-safe; one writer per object. Errors are moetier::Error naming `what` and the path.
class OutputFile {
 public:
  /// Checks the target (check_output_file) and creates the empty temporary (mode 0600 until commit).
  OutputFile(std::string path, std::string what);
  /// Removes the temporary unless commit() succeeded.
  ~OutputFile();
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  /// The target as given.
  const std::string& path() const { return path_; }
  /// The temporary: a caller may write it by name (e.g. a writer that opens its own FILE) before commit.
  const std::string& temp_path() const { return temp_; }
  /// Appends `bytes` to the temporary (buffered). Throws Error on a write error.
  void write(std::string_view bytes);
  /// Flushes and closes the temporary, gives it the mode of the file it replaces (or 0666 & ~umask for a
  /// new one) and renames it onto the target. Throws Error on any failure (the temporary is removed).
  void commit();

 private:
  std::string path_, what_, target_, temp_;
  std::FILE* file_ = nullptr;
  int temp_slot_ = -1;  // slot in the signal-cleanup registry (file_io.cpp), -1: not registered
  bool committed_ = false;
};

/// Replaces `path` with `bytes` through an OutputFile.
void write_output_file(const std::string& path, std::string_view bytes, std::string_view what);

}  // namespace moetier
