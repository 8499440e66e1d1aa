// common/file_io: inputs must be regular files (a FIFO is refused without blocking), outputs absent or
// regular files, written through a temporary beside them that only commit() renames into place.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/file_io.hpp"
#include "tests/run_util.hpp"

using namespace moetier;

namespace {

std::vector<std::string> names_in(const std::string& folder) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(folder)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

TEST_CASE("file_io: inputs must be regular files; a FIFO without a writer is refused at once") {
  test::TempDir dir;
  const std::string file = dir.file("file"), fifo = dir.file("fifo"), folder = dir.file("folder");
  test::spit(file, "contents");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  std::filesystem::create_directory(folder);
  CHECK(read_input_file(file, "prompt") == "contents");
  CHECK_NOTHROW(check_input_file(file, "prompt"));
  struct Case {
    std::string path, message;
  };
  for (const Case& c : std::vector<Case>{{fifo, "is a FIFO, not a regular file"},
                                         {folder, "is a directory, not a regular file"},
                                         {"/dev/null", "is a character device, not a regular file"},
                                         {dir.file("absent"), "cannot open the prompt"}}) {
    CAPTURE(c.path);
    CHECK_THROWS_WITH_AS(check_input_file(c.path, "prompt"), doctest::Contains(c.message.c_str()), Error);
    CHECK_THROWS_WITH_AS(read_input_file(c.path, "prompt"), doctest::Contains(c.path.c_str()), Error);
  }
}

TEST_CASE("file_io: OutputFile refuses anything but a regular file or a new name, and leaves it as it was") {
  test::TempDir dir;
  const std::string fifo = dir.file("fifo"), folder = dir.file("folder");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  std::filesystem::create_directory(folder);
  struct Case {
    std::string path, message;
  };
  // /dev/null is only stat'ed: the check refuses it before any temporary is made or renamed.
  for (const Case& c : std::vector<Case>{{fifo, "it is a FIFO"},
                                         {folder, "it is a directory"},
                                         {"/dev/null", "it is a character device"},
                                         {dir.file("no/such/folder/x"), "folder"},
                                         {"", "empty file name"}}) {
    CAPTURE(c.path);
    CHECK_THROWS_WITH_AS(check_output_file(c.path, "model"), doctest::Contains(c.message.c_str()), Error);
    CHECK_THROWS_WITH_AS(OutputFile(c.path, "model"), doctest::Contains(c.message.c_str()), Error);
  }
  struct stat st {};
  REQUIRE(::lstat(fifo.c_str(), &st) == 0);
  CHECK(S_ISFIFO(st.st_mode));
  REQUIRE(::stat("/dev/null", &st) == 0);
  CHECK(S_ISCHR(st.st_mode));
  CHECK(std::filesystem::is_empty(folder));
  CHECK(names_in(dir.file("")) == std::vector<std::string>{"fifo", "folder"});
}

TEST_CASE("file_io: OutputFile writes a temporary beside the target; commit renames it, keeping mode and links") {
  test::TempDir dir;
  const std::string target = dir.file("out.bin"), link = dir.file("link.bin");
  test::spit(target, "old");
  REQUIRE(::chmod(target.c_str(), 0604) == 0);
  {
    OutputFile out(target, "data");
    out.write("new ");
    CHECK(test::slurp(target) == "old");  // nothing visible before commit
    CHECK(std::filesystem::path(out.temp_path()).parent_path() == std::filesystem::path(target).parent_path());
    out.write("bytes");
    out.commit();
  }
  CHECK(test::slurp(target) == "new bytes");
  struct stat st {};
  REQUIRE(::stat(target.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0604);

  // Without commit (e.g. an error while writing) the target stays and the temporary goes.
  {
    OutputFile out(target, "data");
    out.write("half");
  }
  CHECK(test::slurp(target) == "new bytes");

  // Through a symbolic link: the link stays a link, its target gets the bytes.
  std::filesystem::create_symlink("out.bin", link);
  write_output_file(link, "via link", "data");
  CHECK(std::filesystem::is_symlink(link));
  CHECK(test::slurp(target) == "via link");

  // A new file gets 0666 & ~umask, as fopen would give it.
  const mode_t mask = ::umask(022);
  write_output_file(dir.file("fresh.bin"), "x", "data");
  ::umask(mask);
  REQUIRE(::stat(dir.file("fresh.bin").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0644);
  CHECK(names_in(dir.file("")) == std::vector<std::string>{"fresh.bin", "link.bin", "out.bin"});
}

TEST_CASE("file_io: check_distinct_files refuses an output that is an input or another output") {
  test::TempDir dir;
  const std::string model = dir.file("m.gguf"), link = dir.file("link.gguf"), fresh = dir.file("new.bin");
  test::spit(model, "model");
  std::filesystem::create_symlink(model, link);
  const std::string model_again = dir.file(".") + "/m.gguf";
  const std::string fresh_again = dir.file("sub/..") + "/new.bin";  // a missing folder: compared by name
  struct Case {
    std::vector<NamedFile> in, out;
    std::vector<std::string> parts;  // empty: accepted
  };
  const std::vector<Case> cases = {
      {{{"-m", model}}, {{"--dump-logits", model_again}}, {"--dump-logits", "-m", "same file", "input"}},
      {{{"-m", model}}, {{"--dump-logits", link}}, {"--dump-logits", "link.gguf", "-m"}},
      {{{"-m", model}}, {{"--dump-logits", fresh}, {"--record-routing", fresh}}, {"--record-routing", "--dump-logits", "two outputs"}},
      {{{"-m", model}}, {{"--dump-logits", fresh}, {"--record-routing", fresh_again}}, {"--record-routing", "--dump-logits"}},
      {{{"-m", model}, {"-f", ""}}, {{"--dump-logits", fresh}, {"--save-plan", ""}}, {}},
      {{{"-m", model}}, {{"--dump-logits", dir.file("other.bin")}, {"--record-routing", fresh}}, {}},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    CAPTURE(i);
    const Case& c = cases[i];
    if (c.parts.empty()) {
      CHECK_NOTHROW(check_distinct_files(c.in, c.out));
      continue;
    }
    try {
      check_distinct_files(c.in, c.out);
      FAIL("accepted");
    } catch (const Error& e) {
      const std::string msg = e.what();
      CAPTURE(msg);
      for (const auto& p : c.parts) CHECK(msg.find(p) != std::string::npos);
    }
  }
  CHECK(model_part_paths("a/x-00001-of-00003.gguf") ==
        std::vector<std::string>{"a/x-00001-of-00003.gguf", "a/x-00002-of-00003.gguf", "a/x-00003-of-00003.gguf"});
  CHECK(model_part_paths("a/x.gguf") == std::vector<std::string>{"a/x.gguf"});
}
