// test_cli.cpp — apps/cli.h: defaults, --config, flags overriding it, and one-line usage errors naming the flag.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <fstream>

#include "apps/cli.h"
#include "apps/step_guard.h"

using namespace ep;

namespace {
cli::Options make() {
  cli::Options o("train_cv");
  o.add("lr", "float", 0.1, "learning rate")
      .add("epochs", "int", 200, "epochs")
      .add("model", "string", "mobilenetv2", "model")
      .add("nesterov", "bool", false, "nesterov momentum");
  return o;
}
bool parse(cli::Options& o, std::vector<const char*> args) {
  args.insert(args.begin(), "train_cv");
  return o.parse(int(args.size()), args.data());
}
}  // namespace

TEST_CASE("cli: defaults, flags, --name=value, bare bool flags") {
  cli::Options o = make();
  CHECK(parse(o, {}));
  CHECK(o.number("lr") == 0.1);
  CHECK(o.integer("epochs") == 200);
  cli::Options p = make();
  CHECK(parse(p, {"--lr", "0.05", "--epochs=3", "--nesterov", "--model", "resnet18"}));
  CHECK(p.number("lr") == 0.05);
  CHECK(p.integer("epochs") == 3);
  CHECK(p.flag("nesterov"));
  CHECK(p.str("model") == "resnet18");
  CHECK(p.resolved()["epochs"] == 3);
  cli::Options q = make();
  CHECK(parse(q, {"--nesterov", "false", "--epochs", "4"}));
  CHECK_FALSE(q.flag("nesterov"));
  CHECK(q.integer("epochs") == 4);
  cli::Options h = make();
  CHECK_FALSE(parse(h, {"--help"}));
  CHECK(h.help().find("--lr (float, default 0.1)") != std::string::npos);
}

TEST_CASE("cli: --config is read first and flags override it, wherever --config stands") {
  const std::string path = "/tmp/ep_test_cli_config.json";
  std::ofstream(path) << R"({"lr": 0.2, "epochs": 7, "nesterov": true})";
  cli::Options o = make();
  CHECK(parse(o, {"--epochs", "9", "--config", path.c_str()}));
  CHECK(o.number("lr") == 0.2);
  CHECK(o.integer("epochs") == 9);
  CHECK(o.flag("nesterov"));
  // given(): set by a flag or by the config, even to the default value; not when only defaulted.
  CHECK(o.given("lr"));
  CHECK(o.given("epochs"));
  CHECK_FALSE(o.given("model"));
  cli::Options p = make();
  CHECK(parse(p, {"--lr", "0.1"}));
  CHECK(p.given("lr"));
  CHECK_FALSE(p.given("epochs"));
  std::remove(path.c_str());
}

TEST_CASE("cli: bad input is one line naming the flag or file") {
  auto err = [](std::vector<const char*> args) {
    cli::Options o = make();
    try {
      parse(o, args);
    } catch (const cli::UsageError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(err({"--learning-rate", "1"}) == "train_cv: unknown flag --learning-rate (see --help)");
  CHECK(err({"--lr", "fast"}) == "train_cv: --lr: expected a number, got 'fast'");
  CHECK(err({"--epochs", "2.5"}) == "train_cv: --epochs: expected an integer, got '2.5'");
  CHECK(err({"--epochs"}) == "train_cv: --epochs: expected a value");
  CHECK(err({"stray"}) == "train_cv: unexpected argument 'stray' (flags start with --)");
  CHECK(err({"--config", "/nonexistent/x.json"}) == "train_cv: --config /nonexistent/x.json: cannot open the file");
  const std::string bad = "/tmp/ep_test_cli_bad.json";
  std::ofstream(bad) << R"({"lr": "high"})";
  CHECK(err({"--config", bad.c_str()}) ==
        "train_cv: --config /tmp/ep_test_cli_bad.json: option 'lr' expects a float, got \"high\"");
  std::ofstream(bad) << R"({"lr": 0.1, "momentum": 0.9})";
  CHECK(err({"--config", bad.c_str()}) == "train_cv: --config /tmp/ep_test_cli_bad.json: unknown option 'momentum'");
  std::ofstream(bad) << R"({"lr": )";
  CHECK(err({"--config", bad.c_str()}).rfind("train_cv: --config /tmp/ep_test_cli_bad.json: not valid JSON", 0) == 0);
  // A deeply nested value parses (nlohmann is iterative) but the error message's dump() recursed: it crashed on the
  // stack before the depth cap.
  std::ofstream(bad) << R"({"lr": )" << std::string(200000, '[') << std::string(200000, ']') << "}";
  CHECK(err({"--config", bad.c_str()}) ==
        "train_cv: --config /tmp/ep_test_cli_bad.json: JSON nested deeper than 16 levels");
  std::remove(bad.c_str());
}

TEST_CASE("cli: the step guard admits finite steps, skips non-finite ones, and ends the run after max in a row") {
  cli::StepGuard g(3);
  Tensor w = from_vector({1.0, -2.0}, {2});
  Tensor count = from_vector({4}, {1}, DType::i64);
  const ckpt::TrainState state{{{"w", &w}, {"num_batches_tracked", &count}}, {}};
  CHECK(g.admit(2.5, 0.0, 1, state));
  CHECK_FALSE(g.admit(std::nan(""), 0.0, 2, state));
  CHECK_FALSE(g.admit(1.0, INFINITY, 3, state));  // a finite loss with an overflowed gradient norm
  CHECK(g.admit(1.0, 7.0, 4, state));              // a good step resets the count
  CHECK_FALSE(g.admit(INFINITY, 0.0, 5, state));
  CHECK_FALSE(g.admit(-INFINITY, 0.0, 6, state));
  CHECK_THROWS_WITH_AS(g.admit(std::nan(""), 0.0, 7, state),
                       doctest::Contains("training diverged: 3 steps in a row had a non-finite loss"), Error);
  CHECK(g.skipped() == 5);
  // A state that is no longer finite ends the run at the first skipped step, naming the tensor; good steps never
  // look at it.
  cli::StepGuard h(10);
  w = from_vector({1.0, INFINITY}, {2});
  CHECK(h.admit(1.0, 0.0, 8, state));
  CHECK_THROWS_WITH_AS(h.admit(std::nan(""), 0.0, 9, state),
                       doctest::Contains("training diverged: w holds non-finite values at step 9"), Error);
}

TEST_CASE("cli: OpenBLAS runs the kernels this CPU supports, not its SSE3 fallback for a model it does not know") {
  // main() ran ensure_cpu_threading before the suite: where OpenBLAS fell back to "Prescott" on a CPU with AVX2 or
  // AVX-512 (Debian 12's 0.3.21 on Emerald Rapids), it asked for better kernels by OPENBLAS_CORETYPE and re-executed.
  const char* asked = std::getenv("OPENBLAS_CORETYPE");
  const std::string running = blas_kernels();
  INFO("OpenBLAS kernels: " << running << ", OPENBLAS_CORETYPE: " << std::string(asked ? asked : "(unset)"));
  if (!asked) {
    CHECK(blas_kernels_worth_asking_for() == nullptr);  // a fallback nobody corrected
  } else if (std::string(asked) == "SkylakeX" || std::string(asked) == "Haswell") {
    CHECK(running == asked);  // OpenBLAS took the request (these two names it reports as given)
  } else {
    MESSAGE("OPENBLAS_CORETYPE=" << asked << " set by the user: OpenBLAS runs " << running);
  }
}
