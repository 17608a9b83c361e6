// write_regular_file: the files a run writes, never through a planted link.
#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/file_kind.h"

namespace fs = std::filesystem;
using namespace dtrain;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

}  // namespace

TEST_CASE("write_regular_file writes, truncates, and refuses links, FIFOs and directories") {
  const fs::path dir = fs::temp_directory_path() / ("dtrain_file_kind_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path file = dir / "config.toml", victim = dir / "victim";

  write_regular_file(file.string(), "a longer first text\n", "the config");
  CHECK(slurp(file) == "a longer first text\n");
  write_regular_file(file.string(), "short\n", "the config");  // truncated, not overlaid
  CHECK(slurp(file) == "short\n");

  {
    std::ofstream(victim) << "ORIGINAL\n";
  }
  const fs::path link = dir / "profile.json";
  fs::create_symlink(victim, link);
  const std::string said = "'" + link.string() + "' is a symbolic link (to '" + victim.string() +
                           "'), which dtrain would write the profile through";
  CHECK_THROWS_WITH_AS(write_regular_file(link.string(), "x", "the profile"), doctest::Contains(said.c_str()),
                       InputError);
  CHECK(slurp(victim) == "ORIGINAL\n");
  // A dangling link too: creating its target would still write out of the directory.
  const fs::path dangling = dir / "trace.json";
  fs::create_symlink(dir / "nowhere", dangling);
  CHECK_THROWS_AS(write_regular_file(dangling.string(), "x", "the trace"), InputError);
  CHECK(!fs::exists(dir / "nowhere"));

  const fs::path fifo = dir / "fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK_THROWS_WITH_AS(write_regular_file(fifo.string(), "x", "the config"), doctest::Contains("a FIFO"), InputError);
  CHECK_THROWS_WITH_AS(write_regular_file(dir.string(), "x", "the config"), doctest::Contains("a directory"),
                       InputError);
  CHECK_THROWS_AS(write_regular_file((dir / "missing" / "x").string(), "x", "the config"), RuntimeError);
  fs::remove_all(dir);
}
