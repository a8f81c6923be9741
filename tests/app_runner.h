// app_runner.h — running an app built next to the test binary (build/train_cv, build/train_glue ...) as a child
// process and reading what it printed: exit status, output, and the exact per-step losses of a --log-steps run.
// Not a process library: popen with stderr folded into stdout is all the trainer tests need.
#pragma once
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>

namespace ep::test {

inline std::string app_path(const std::string& app) {
  return (std::filesystem::read_symlink("/proc/self/exe").parent_path() / app).string();
}

// Apps are built next to this binary by `make`; a test binary built alone says so and the test skips.
inline bool have_app(const std::string& app) {
  if (std::filesystem::exists(app_path(app))) return true;
  MESSAGE(app << " not built next to the tests: skipped");
  return false;
}

struct AppRun {
  int status = -1;
  std::string out;  // stdout and stderr together
};

// Any shell command line, stderr folded into stdout.
inline AppRun run_command(const std::string& command) {
  AppRun r;
  const std::string cmd = command + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::array<char, 4096> buf;
  while (size_t n = fread(buf.data(), 1, buf.size(), p)) r.out.append(buf.data(), n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

inline AppRun run_app(const std::string& app, const std::string& args) { return run_command(app_path(app) + " " + args); }

// "step N loss HEX" lines of a --log-steps run. Where a terminal is emulated (mpirun gives its ranks a pty), the
// progress bar shares the line with them, so the pattern is looked for anywhere in a line.
inline std::map<int, std::string> step_losses(const std::string& out) {
  std::map<int, std::string> m;
  std::istringstream is(out);
  for (std::string line; std::getline(is, line);) {
    const size_t at = line.find("step ");
    if (at == std::string::npos) continue;
    int step = 0;
    char hex[64];
    if (std::sscanf(line.c_str() + at, "step %d loss %63s", &step, hex) == 2) m[step] = hex;
  }
  return m;
}

// A fresh (removed) temporary path unique to this process.
inline std::string fresh_tmp_path(const std::string& name) {
  auto d = std::filesystem::temp_directory_path() / ("ep_" + name + "_" + std::to_string(getpid()));
  std::filesystem::remove_all(d);
  return d.string();
}

}  // namespace ep::test
