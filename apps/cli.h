// cli.h — flags and JSON config for the apps: declare options with defaults and help, read `--config FILE.json`,
// let flags override it, and hand back the resolved values (and the resolved config as JSON for the run folder).
// Not a general argument library: --name VALUE and --flag only; every error is one line naming the flag or file.
#pragma once
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "engine/anomaly.h"
#include "engine/check.h"
#include "engine/determinism.h"
#include "engine/device.h"
#include "engine/json.h"
#include "engine/ops/gemm_kernels.h"

namespace ep::cli {

// Thread pools, settled before they start (libgomp and OpenBLAS read their variables once, when they load):
// - OMP_WAIT_POLICY=passive: by default idle OpenMP threads spin, and next to OpenBLAS's pool that spinning stole the
//   cores the GEMMs needed (a MobileNetV2 step on 2 cores ran 2.4x slower);
// - OPENBLAS_NUM_THREADS=1: the engine parallelizes over samples and channels with OpenMP itself (im2col conv runs
//   one GEMM per sample per thread); a second pool competing for the same cores cost another 25%;
// - OPENBLAS_CORETYPE, only where OpenBLAS fell back to its SSE3 kernels on a CPU newer than it knows
//   (blas_kernels_worth_asking_for: 3.4-4.3x the sgemm speed on this project's Emerald Rapids VM).
// An app that finds a variable unset sets it and re-executes itself once; a value the user set always wins.
inline void ensure_cpu_threading(char** argv) {
  if (std::getenv("EP_NO_REEXEC")) return;
  bool changed = false;
  if (!std::getenv("OMP_WAIT_POLICY")) changed |= setenv("OMP_WAIT_POLICY", "passive", 1) == 0;
  if (!std::getenv("OPENBLAS_NUM_THREADS")) changed |= setenv("OPENBLAS_NUM_THREADS", "1", 1) == 0;
  if (!std::getenv("OPENBLAS_CORETYPE"))
    if (const char* kernels = blas_kernels_worth_asking_for())
      changed |= setenv("OPENBLAS_CORETYPE", kernels, 1) == 0;
  if (!changed) return;
  setenv("EP_NO_REEXEC", "1", 1);
  execv("/proc/self/exe", argv);  // returns only on failure: then run on as we are
}

// A usage error: the app prints what() and exits 2.
struct UsageError : ValueError { using ValueError::ValueError; };

// An app's main: runs `run`, and turns a usage error into its one line on stderr and exit 2, any other error into
// "<app>: <message>" and exit 1.
template <class Run>
int guarded_main(const char* app, Run&& run) {
  try {
    return run();
  } catch (const UsageError& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", app, e.what());
    return 1;
  }
}

class Options {
 public:
  explicit Options(std::string app) : app_(std::move(app)) {}

  // Declares an option. kind: "string", "int", "float", "bool" (a bare --flag sets true; JSON true/false).
  Options& add(const std::string& name, const std::string& kind, nlohmann::json def, const std::string& help) {
    EP_CHECK(!specs_.count(name), Error, "[cli] option --", name, " declared twice");
    specs_[name] = Spec{kind, def, help};
    order_.push_back(name);
    values_[name] = def;
    return *this;
  }

  // Parses argv (flags override --config). Returns false when --help was given (help() says what to print).
  bool parse(int argc, const char* const* argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    // --config first, wherever it stands, so that flags override it.
    for (size_t i = 0; i < args.size(); ++i)
      if (args[i] == "--config") {
        if (i + 1 >= args.size()) fail("--config: expected a file path");
        load_config(args[i + 1]);
      }
    for (size_t i = 0; i < args.size(); ++i) {
      const std::string& a = args[i];
      if (a == "--help" || a == "-h") return false;
      if (a.rfind("--", 0) != 0) fail("unexpected argument '" + a + "' (flags start with --)");
      std::string name = a.substr(2), value;
      bool has_value = false;
      if (auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
        has_value = true;
      }
      if (name == "config") {
        if (!has_value) ++i;
        continue;
      }
      auto it = specs_.find(name);
      if (it == specs_.end()) fail("unknown flag --" + name + " (see --help)");
      if (it->second.kind == "bool" && !has_value) {
        // A bare --flag is true; `--flag false` (or true/0/1) spells the value out.
        const bool next_is_value = i + 1 < args.size() && (args[i + 1] == "true" || args[i + 1] == "false" ||
                                                           args[i + 1] == "1" || args[i + 1] == "0");
        values_[name] = next_is_value ? convert(name, "bool", args[++i]) : nlohmann::json(true);
        given_.insert(name);
        continue;
      }
      if (!has_value) {
        if (i + 1 >= args.size()) fail("--" + name + ": expected a value");
        value = args[++i];
      }
      values_[name] = convert(name, it->second.kind, value);
      given_.insert(name);
    }
    return true;
  }

  std::string help() const {
    std::ostringstream os;
    os << "usage: " << app_ << " [--config FILE.json] [--option value ...]\n";
    for (const auto& n : order_) {
      const Spec& s = specs_.at(n);
      os << "  --" << n << " (" << s.kind << ", default " << s.def.dump() << ")  " << s.help << "\n";
    }
    return os.str();
  }

  std::string str(const std::string& n) const { return get(n).get<std::string>(); }
  int64_t integer(const std::string& n) const { return get(n).get<int64_t>(); }
  double number(const std::string& n) const { return get(n).get<double>(); }
  bool flag(const std::string& n) const { return get(n).get<bool>(); }
  // True when the command line or --config set the option (even to its default value).
  bool given(const std::string& n) const { return given_.count(n) > 0; }
  // The resolved configuration (every option), for the run folder.
  nlohmann::json resolved() const {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& n : order_) j[n] = values_.at(n);
    return j;
  }

  [[noreturn]] void fail(const std::string& msg) const { throw UsageError(app_ + ": " + msg); }
  const std::string& app() const { return app_; }

 private:
  struct Spec {
    std::string kind;
    nlohmann::json def;
    std::string help;
  };

  const nlohmann::json& get(const std::string& n) const {
    auto it = values_.find(n);
    EP_CHECK(it != values_.end(), Error, "[cli] option --", n, " was never declared");
    return it->second;
  }

  nlohmann::json convert(const std::string& name, const std::string& kind, const std::string& v) const {
    if (kind == "string") return v;
    if (kind == "bool") {
      if (v == "true" || v == "1") return true;
      if (v == "false" || v == "0") return false;
      fail("--" + name + ": expected true or false, got '" + v + "'");
    }
    char* end = nullptr;
    errno = 0;
    if (kind == "int") {
      long long x = std::strtoll(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || errno == ERANGE) fail("--" + name + ": expected an integer, got '" + v + "'");
      return int64_t(x);
    }
    double x = std::strtod(v.c_str(), &end);
    if (v.empty() || *end != '\0' || errno == ERANGE) fail("--" + name + ": expected a number, got '" + v + "'");
    return x;
  }

  void load_config(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) fail("--config " + path + ": cannot open the file");
    std::ostringstream text;
    text << f.rdbuf();
    nlohmann::json j;
    try {
      j = parse_json_capped(text.str(), "--config " + path);
    } catch (const ValueError& e) {
      fail(e.what());
    }
    if (!j.is_object()) fail("--config " + path + ": expected a JSON object of option names");
    for (auto& [k, v] : j.items()) {
      auto it = specs_.find(k);
      if (it == specs_.end()) fail("--config " + path + ": unknown option '" + k + "'");
      const std::string& kind = it->second.kind;
      bool ok = (kind == "string" && v.is_string()) || (kind == "bool" && v.is_boolean()) ||
                (kind == "int" && v.is_number_integer()) || (kind == "float" && v.is_number());
      if (!ok) fail("--config " + path + ": option '" + k + "' expects a " + kind + ", got " + v.dump());
      values_[k] = kind == "float" ? nlohmann::json(v.get<double>()) : v;
      given_.insert(k);
    }
  }

  std::string app_;
  std::map<std::string, Spec> specs_;
  std::vector<std::string> order_;
  std::map<std::string, nlohmann::json> values_;
  std::set<std::string> given_;
};

// The flags both trainers share: device, run folder, evaluation and weights, checkpoints, smoke-run limits, exact
// step logging, the seed. Each trainer adds its own model, data and optimizer flags.
inline void add_trainer_flags(Options& o, const std::string& out_default, const std::string& eval_split) {
  o.add("seed", "int", 0, "seed of initialization, shuffling, augmentation and dropout")
      .add("device", "string", "cpu", "cpu | cuda | cuda:N")
      .add("out", "string", out_default, "run folder (config, metrics.jsonl, summary.json, checkpoint)")
      .add("eval-only", "bool", false, "evaluate the " + eval_split + " split only (with --init-from or --resume)")
      .add("strict", "bool", false, "with --init-from: missing, unexpected or mis-shaped keys are errors")
      .add("resume", "string", "", "checkpoint to continue from")
      .add("max-steps", "int", 0, "stop after this many optimizer steps (0: no limit)")
      .add("max-bad-steps", "int", 10,
           "skip a step whose loss (or --clip-norm gradient norm) is not finite; end the run after this many in a row")
      .add("dump-logits", "string", "",
           "with --eval-only: write the " + eval_split + " logits and labels (safetensors, in data order)")
      .add("log-steps", "bool", false, "print every step's loss exactly (hex float), for comparing runs")
      .add("memory-limit", "string", "0", "at most this much tensor memory on each device, e.g. 512M or 2G (0: no "
                                          "limit): emulates a smaller device such as an edge board")
      .add("oom-retry", "bool", true, "retry a step that runs out of memory in twice the micro-batches (1F1B), "
                                      "down to one row each")
      .add("detect-anomaly", "bool", false, "stop at the first op whose output or gradient is NaN/Inf and name it "
                                            "(every op checked: slow, for debugging a diverging run)")
      .add("deterministic", "bool", false, "GPU: deterministic cuDNN algorithms and TF32 off, so runs (and pipelined "
                                           "vs sequential steps) repeat bit for bit; the CPU always does");
}

// --memory-limit's value: bytes, with an optional K, M, G or T suffix (powers of 1024; "512M", "2G"), 0 for none.
inline uint64_t parse_memory_size(const Options& o, const std::string& flag) {
  const std::string v = o.str(flag);
  size_t digits = 0;
  while (digits < v.size() && v[digits] >= '0' && v[digits] <= '9') ++digits;
  const std::string suffix = v.substr(digits);
  int shift = -1;
  const std::vector<std::pair<std::string, int>> units{{"", 0}, {"K", 10}, {"M", 20}, {"G", 30}, {"T", 40}};
  for (const auto& [s, k] : units)
    if (suffix == s || (!s.empty() && (suffix == s + "B" || suffix == s + "iB"))) shift = k;
  if (digits == 0 || digits > 12 || shift < 0)
    o.fail("--" + flag + " " + v + ": expected a size such as 512M or 2G (K, M, G, T: powers of 1024), or 0");
  return std::stoull(v.substr(0, digits)) << shift;
}

// Parses the command line; false after printing --help. Then checks the shared flags and returns the device.
inline bool parse_or_help(Options& o, int argc, char** argv) {
  if (o.parse(argc, argv)) return true;
  std::printf("%s", o.help().c_str());
  return false;
}
inline Device checked_trainer_device(const Options& o) {
  const Device device = Device::parse(o.str("device"));
  if (device.is_cuda() && !cuda_available()) o.fail("--device " + device.str() + ": no GPU present");
  if (o.integer("epochs") < 0 || o.integer("batch-size") <= 0) o.fail("--epochs must be >= 0 and --batch-size > 0");
  if (!o.str("dump-logits").empty() && !o.flag("eval-only")) o.fail("--dump-logits needs --eval-only");
  if (o.flag("deterministic")) set_deterministic(true);
  if (o.flag("detect-anomaly")) set_anomaly_mode(true);
  set_tensor_memory_limit(parse_memory_size(o, "memory-limit"));
  return device;
}

}  // namespace ep::cli
