// test_train_glue.cpp — build/train_glue end to end, run as a child process: the tiny config learns the synthetic token
// task, a resumed CPU run continues bit for bit, RTE runs from random init through our tokenizer, and bad input gets
// one line and a non-zero exit. Not the model's numerics (test_golden_roberta.cpp) nor the loaders (test_glue.cpp).
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/safetensors.h"
#include "tests/app_runner.h"

namespace fs = std::filesystem;
using ep::test::AppRun;

namespace {

bool have_trainer() { return ep::test::have_app("train_glue"); }
AppRun run(const std::string& args) { return ep::test::run_app("train_glue", args); }
std::string tmpdir(const char* name) { return ep::test::fresh_tmp_path(std::string("train_glue_") + name); }

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), path << " missing");
  return nlohmann::json::parse(in);
}

const char* kTiny = "--data synthetic --synthetic-size 256 --batch-size 32 --lr 1e-3 --warmup-ratio 0 --log-steps";

}  // namespace

TEST_CASE("train_glue: the tiny config learns the synthetic token task") {
  if (!have_trainer()) return;
  const std::string d = tmpdir("synthetic");
  AppRun r = run("--data synthetic --synthetic-size 2000 --batch-size 32 --epochs 4 --lr 2e-3 --warmup-ratio 0.1 "
                 "--weight-decay 0.01 --out " + d);
  REQUIRE_MESSAGE(r.status == 0, r.out);
  nlohmann::json s = read_json(d + "/summary.json");
  INFO(r.out);
  CHECK(s["main_metric"] == "accuracy");
  CHECK(s["final"].get<double>() >= 0.9);  // chance is 0.5
  CHECK(s["steps"] == 4 * 63);
  std::ifstream m(d + "/metrics.jsonl");
  int lines = 0;
  for (std::string line; std::getline(m, line);) ++lines;
  CHECK(lines == 4);
  fs::remove_all(d);
}

TEST_CASE("train_glue: a run resumed from its checkpoint continues bit for bit (CPU), across an epoch boundary") {
  if (!have_trainer()) return;
  const std::string a = tmpdir("full"), b = tmpdir("resumed");
  // 256 sequences / 32 = 8 steps an epoch; dropout is on (tiny config: 0.1), so the streams' offsets must be restored.
  AppRun full = run(std::string(kTiny) + " --epochs 2 --max-steps 12 --out " + a);
  REQUIRE_MESSAGE(full.status == 0, full.out);
  AppRun first = run(std::string(kTiny) + " --epochs 2 --max-steps 5 --out " + b);
  REQUIRE_MESSAGE(first.status == 0, first.out);
  AppRun rest = run(std::string(kTiny) + " --epochs 2 --max-steps 12 --out " + b + " --resume " + b +
                    "/checkpoint.safetensors");
  REQUIRE_MESSAGE(rest.status == 0, rest.out);
  auto lf = ep::test::step_losses(full.out), l1 = ep::test::step_losses(first.out),
       l2 = ep::test::step_losses(rest.out);
  REQUIRE(lf.size() == 12);
  REQUIRE(l1.size() == 5);
  REQUIRE(l2.size() == 7);
  for (int s = 1; s <= 12; ++s) {
    INFO("step " << s);
    CHECK((s <= 5 ? l1 : l2).at(s) == lf.at(s));
  }
  CHECK(lf.at(1) != lf.at(12));  // it trained
  fs::remove_all(a);
  fs::remove_all(b);
}

TEST_CASE("train_glue: RTE from random init runs end to end through the tokenizer; eval-only dumps logits") {
  if (!have_trainer()) return;
  const std::string rte = "../shared/data/glue/RTE", vocab = "../shared/data/roberta-base/vocab.json",
                    merges = "../shared/data/roberta-base/merges.txt";
  if (!fs::exists(rte + "/train.tsv") || !fs::exists(vocab)) {
    MESSAGE("../shared/data absent: skipping the RTE run");
    return;
  }
  const std::string d = tmpdir("rte");
  const std::string common = "--task rte --data " + rte + " --vocab " + vocab + " --merges " + merges +
                             " --max-len 64 --batch-size 16 --lr 1e-4 ";
  AppRun r = run(common + "--epochs 1 --train-subset 96 --out " + d);
  REQUIRE_MESSAGE(r.status == 0, r.out);
  CHECK(r.out.find("rte: 96 train / 277 dev sequences") != std::string::npos);
  nlohmann::json s = read_json(d + "/summary.json");
  CHECK(s["steps"] == 6);
  CHECK(s["final"].get<double>() > 0.3);  // near chance is expected from random init; this only checks the metric
  CHECK(s["final"].get<double>() < 0.7);

  AppRun e = run(common + "--eval-only --resume " + d + "/checkpoint.safetensors --dump-logits " + d +
                 "/logits.safetensors --out " + d + "/eval");
  REQUIRE_MESSAGE(e.status == 0, e.out);
  ep::SafetensorsFile f = ep::read_safetensors(d + "/logits.safetensors");
  const ep::Tensor* logits = f.find("logits");
  const ep::Tensor* labels = f.find("labels");
  REQUIRE(logits != nullptr);
  REQUIRE(labels != nullptr);
  CHECK(logits->shape() == ep::Shape{277, 2});
  // RTE dev's first row is labeled not_entailment (label id 1 in HF's order) — read from the file by eye.
  CHECK(labels->to_double_vector().at(0) == 1);
  CHECK(read_json(d + "/eval/summary.json")["eval_accuracy"].get<double>() == doctest::Approx(s["final"].get<double>()));
  fs::remove_all(d);
}

TEST_CASE("train_glue: bad input gets one line and a non-zero exit") {
  if (!have_trainer()) return;
  const std::string d = tmpdir("bad");
  AppRun r = run("--learning-rate 0.1 --out " + d);
  CHECK(r.status == 2);
  CHECK(r.out.find("unknown flag --learning-rate") != std::string::npos);
  r = run("--task rte --data /nonexistent/RTE --vocab x --merges y --out " + d);
  CHECK(r.status != 0);
  r = run("--task nosuchtask --data /tmp --out " + d);
  CHECK(r.status != 0);
  CHECK(r.out.find("nosuchtask") != std::string::npos);
  r = run("--max-len 2 --out " + d);
  CHECK(r.status == 2);
  r = run("--model /nonexistent/model --out " + d);
  CHECK(r.status == 2);
  CHECK(r.out.find("/nonexistent/model") != std::string::npos);
  r = run(std::string(kTiny) + " --out " + d + " --resume " + d + "/absent.safetensors");
  CHECK(r.status == 1);
  CHECK(r.out.find("absent.safetensors") != std::string::npos);
  fs::remove_all(d);
}

TEST_CASE("train_glue: --gemm-precision bf16 runs the GEMMs in bf16 (different losses, same schedule)") {
  if (!have_trainer()) return;
  const std::string d = tmpdir("bf16");
  AppRun f32 = run(std::string(kTiny) + " --epochs 1 --max-steps 3 --out " + d + "/f32");
  AppRun bf16 = run(std::string(kTiny) + " --epochs 1 --max-steps 3 --gemm-precision bf16 --out " + d + "/bf16");
  REQUIRE_MESSAGE(f32.status == 0, f32.out);
  REQUIRE_MESSAGE(bf16.status == 0, bf16.out);
  auto a = ep::test::step_losses(f32.out), b = ep::test::step_losses(bf16.out);
  REQUIRE(a.size() == 3);
  REQUIRE(b.size() == 3);
  CHECK(a.at(1) != b.at(1));                                         // rounded operands change the bits...
  CHECK(std::stod(a.at(1)) == doctest::Approx(std::stod(b.at(1))).epsilon(0.02));  // ...not the result
  fs::remove_all(d);
}

TEST_CASE("train_glue: steps with a non-finite loss are skipped and leave weights and optimizer state unchanged") {
  if (!have_trainer()) return;
  // lr 1e30: step 1 is finite and its update leaves finite but enormous weights, whose LayerNorms overflow from step 2
  // on (a real divergence, nothing injected). RoBERTa keeps no running statistics, so the state stays finite and every
  // later step of the epoch is skipped.
  const std::string diverging = std::string(kTiny) + " --epochs 1 --lr 1e30";
  const std::string a = tmpdir("skipped"), b = tmpdir("one_step");
  AppRun ended = run(diverging + " --max-bad-steps 3 --out " + a);
  CHECK(ended.status == 1);
  CHECK(ended.out.find("train_glue: training diverged: 3 steps in a row had a non-finite loss") != std::string::npos);

  AppRun skipped = run(diverging + " --max-bad-steps 100 --out " + a);
  REQUIRE_MESSAGE(skipped.status == 0, skipped.out);
  CHECK(ep::test::step_losses(skipped.out).size() == 1);
  AppRun one = run(diverging + " --max-steps 1 --out " + b);
  REQUIRE_MESSAGE(one.status == 0, one.out);
  const nlohmann::json s = read_json(a + "/summary.json");
  CHECK(s["steps"] == 1);
  CHECK(s["skipped_steps"] == 7);  // 256 sequences in batches of 32
  // The end-of-epoch checkpoint of the skipping run holds exactly the tensors of the run stopped after step 1.
  const ep::SafetensorsFile ck_skipped = ep::read_safetensors(a + "/checkpoint.safetensors");
  const ep::SafetensorsFile ck_one = ep::read_safetensors(b + "/checkpoint.safetensors");
  REQUIRE(ck_skipped.tensors.size() == ck_one.tensors.size());
  for (const auto& [name, t] : ck_one.tensors) {
    INFO(name);
    const ep::Tensor* other = ck_skipped.find(name);
    REQUIRE(other != nullptr);
    CHECK(other->to_double_vector() == t.to_double_vector());
  }
  CHECK(ck_skipped.metadata.at("step") == "1");
  fs::remove_all(a);
  fs::remove_all(b);
}

TEST_CASE("train_glue: --detect-anomaly names the RoBERTa op whose forward first overflows in step 2") {
  if (!have_trainer()) return;
  // The divergence of the case above: step 1 is finite, step 2's forward overflows. The run stops there.
  const std::string d = tmpdir("anomaly");
  AppRun r = run(std::string(kTiny) + " --epochs 1 --lr 1e30 --detect-anomaly --out " + d);
  CHECK(r.status == 1);
  CHECK(ep::test::step_losses(r.out).size() == 1);
  const size_t at = r.out.find("train_glue: [anomaly] ");
  REQUIRE_MESSAGE(at != std::string::npos, r.out);
  const std::string line = r.out.substr(at, r.out.find('\n', at) - at);
  CHECK_MESSAGE(line.find("roberta.") != std::string::npos, line);
  fs::remove_all(d);
}

TEST_CASE("train_glue: a step past --memory-limit is retried in two micro-batches, drawing the same dropout masks") {
  if (!have_trainer()) return;
  const std::string d = tmpdir("oom");
  const std::string args = std::string(kTiny) + " --max-steps 3";
  AppRun whole = run(args + " --out " + d + "/whole");
  AppRun halves = run(args + " --chunks 2 --stages 4 --pipeline-schedule 1f1b --out " + d + "/halves");
  REQUIRE_MESSAGE(whole.status == 0, whole.out);
  REQUIRE_MESSAGE(halves.status == 0, halves.out);
  const int64_t p1 = read_json(d + "/whole/summary.json")["peak_tensor_bytes"]["cpu"];
  const int64_t p2 = read_json(d + "/halves/summary.json")["peak_tensor_bytes"]["cpu"];
  REQUIRE_MESSAGE(p1 > p2 + (2 << 20), p1, " ", p2);
  AppRun limited = run(args + " --memory-limit " + std::to_string((p1 + p2) / 2) + " --out " + d + "/limited");
  REQUIRE_MESSAGE(limited.status == 0, limited.out);
  CHECK(limited.out.find("retrying its 32 rows in 2 micro-batches (1F1B)") != std::string::npos);
  // The tiny config has dropout: equal losses need the failed attempt's draws rewound.
  CHECK(ep::test::step_losses(limited.out) == ep::test::step_losses(halves.out));
  CHECK(ep::test::step_losses(limited.out).size() == 3);
  CHECK(read_json(d + "/limited/summary.json")["oom_retries"] == 1);
  fs::remove_all(d);
}
