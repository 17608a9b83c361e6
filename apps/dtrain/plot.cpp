// log.plot = true: at the end of `dtrain run` / `resume`, rank 0 draws the
// run's loss curves to <out_dir>/loss.png with tools/plot_metrics.py
// (matplotlib). A plot that cannot be drawn is a warning: the training it
// would show has already succeeded.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "commands.h"

extern char** environ;

namespace dtrain_cli {

void plot_run(const dtrain::Config& cfg, const std::function<void(const std::string&)>& log) {
  if (!cfg.log.plot) return;
  const char* env = std::getenv("DTRAIN_TOOLS_DIR");
  const std::string tools = env && *env ? env : DTRAIN_TOOLS_DIR;
  const std::string script = (std::filesystem::path(tools) / "plot_metrics.py").string();
  const std::string out = (std::filesystem::path(cfg.log.out_dir) / "loss.png").string();
  // Debian's Python, where python3-matplotlib installs, unless DTRAIN_PYTHON says otherwise.
  const char* py_env = std::getenv("DTRAIN_PYTHON");
  const std::string python = py_env && *py_env ? py_env
                             : std::filesystem::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
  std::vector<std::string> args = {python, script, cfg.log.out_dir, "-o", out};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  int status = 0;
  if (!std::filesystem::exists(script)) {
    eprint("dtrain: warning: log.plot: {} not found (set DTRAIN_TOOLS_DIR)\n", script);
    return;
  }
  // The script's own "wrote ..." line is the log's "plot:" line: its output
  // goes nowhere, its errors to the run's error stream.
  posix_spawn_file_actions_t quiet;
  posix_spawn_file_actions_init(&quiet);
  posix_spawn_file_actions_addopen(&quiet, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  const bool spawned = posix_spawnp(&pid, python.c_str(), &quiet, nullptr, argv.data(), environ) == 0;
  posix_spawn_file_actions_destroy(&quiet);
  if (!spawned || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    eprint("dtrain: warning: log.plot: {} {} failed; the run itself is complete\n", python, script);
  else
    log(fmt::format("plot: {}", out));
}

}  // namespace dtrain_cli
