// test_pipeline_trainers.cpp — the pipeline inside build/train_cv, end to end on the CPU: a pipelined training run
// gives the same losses, bit for bit, whatever the number of stages (MobileNetV2 with deferred BatchNorm, GPipe and
// 1F1B), a compressed pipeline equals the single-process compressed split, and bad pipeline flags get one line.
// Not the executor's own tests (test_pipeline_workers.cpp) nor the schedules (test_pipeline_schedule.cpp).
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <tuple>

#include <nlohmann/json.hpp>

#include "engine/safetensors.h"
#include "tests/app_runner.h"
#include "tests/test_util.h"

namespace {

const char* kRun = "--data synthetic --synthetic-size 256 --batch-size 60 --width 0.25 --epochs 1 --max-steps 3 "
                   "--log-steps --split-fine ";

// The step losses as numbers (they are printed as hex floats).
std::map<int, double> values(const std::map<int, std::string>& hex) {
  std::map<int, double> v;
  for (const auto& [step, h] : hex) v[step] = std::strtod(h.c_str(), nullptr);
  return v;
}

void check_close(const std::map<int, std::string>& a, const std::map<int, std::string>& b, double rel) {
  const auto x = values(a), y = values(b);
  REQUIRE(x.size() == y.size());
  for (const auto& [step, v] : x) {
    INFO("step ", step);
    CHECK(v == doctest::Approx(y.at(step)).epsilon(rel));
  }
}

// compression.jsonl as (step, boundary, direction) -> the row: the stages log from their own threads, in any order.
std::map<std::tuple<int, int, std::string>, nlohmann::json> compression_rows(const std::string& dir) {
  std::map<std::tuple<int, int, std::string>, nlohmann::json> rows;
  std::ifstream in(dir + "/compression.jsonl");
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    rows[{j["step"].get<int>(), j["boundary"].get<int>(), j["direction"].get<std::string>()}] = j;
  }
  return rows;
}

std::map<int, std::string> losses(const std::string& args, const std::string& out) {
  ep::test::AppRun r = ep::test::run_app("train_cv", kRun + args + " --out " + out);
  REQUIRE_MESSAGE(r.status == 0, r.out);
  auto l = ep::test::step_losses(r.out);
  REQUIRE(l.size() == 3);
  return l;
}

}  // namespace

TEST_CASE("pipeline in train_cv: the same losses for 1, 3 and 3 uneven stages, uneven chunks, GPipe and 1F1B") {
  if (!ep::test::have_app("train_cv")) return;
  const std::string d = ep::test::fresh_tmp_path("pipe_trainer");
  // 60 rows in 7 chunks: sizes 9,9,9,9,8,8,8. Deferred BatchNorm commits the whole mini-batch's statistics once.
  for (const char* schedule : {"gpipe", "1f1b"}) {
    INFO(std::string(schedule));
    const std::string common = std::string("--chunks 7 --pipeline-schedule ") + schedule + " ";
    auto one = losses(common + "--stages 21", d + "/one");
    CHECK(losses(common + "--split 1,1", d + "/split") == one);
    CHECK(losses(common + "--stages 5,10,6", d + "/three") == one);
    CHECK(losses(common + "--stages 2,2,2,2,2,2,2,2,2,3", d + "/ten") == one);
    CHECK(losses(common + "--stages 5,10,6 --deterministic", d + "/det") == one);  // the CPU always is
  }
  // Without deferral each micro-batch commits its own statistics: the running stats (and so later steps) differ
  // from deferred ones only through eval, so training losses still agree; the run must simply work.
  losses("--chunks 4 --split 1,1 --bn per-microbatch", d + "/per_micro");
  std::filesystem::remove_all(d);
}

TEST_CASE("pipeline in train_cv and train_glue: a last batch shorter than --chunks runs one row per micro-batch") {
  if (!ep::test::have_app("train_cv") || !ep::test::have_app("train_glue")) return;
  const std::string d = ep::test::fresh_tmp_path("pipe_short");
  // 256 images in batches of 60: the fifth has 16 rows, fewer than --chunks 60 (one row per micro-batch, goal 5's
  // chunks = batch); the 51 test images are one evaluation batch shorter than 60 too. Before, both stopped the run.
  auto run_cv = [&](const std::string& args, const std::string& name) {
    ep::test::AppRun r = ep::test::run_app(
        "train_cv", "--data synthetic --synthetic-size 256 --batch-size 60 --width 0.25 --epochs 2 --log-steps "
                    "--split-fine --chunks 60 " + args + " --out " + d + "/" + name);
    REQUIRE_MESSAGE(r.status == 0, r.out);
    return ep::test::step_losses(r.out);
  };
  const auto one = run_cv("--stages 21", "one");
  CHECK(one.size() == 10);  // two epochs of 5 steps: the full count is restored after the short batch
  CHECK(run_cv("--stages 5,10,6", "three") == one);
  const auto one_1f1b = run_cv("--stages 21 --pipeline-schedule 1f1b", "one_1f1b");  // kept after the short batch
  CHECK(run_cv("--stages 5,10,6 --pipeline-schedule 1f1b", "three_1f1b") == one_1f1b);
  // Deferred BatchNorm was re-armed for the short step: it committed once per step, 10 times, not 9 with the tenth
  // step's statistics left pending.
  ep::SafetensorsFile ck = ep::read_safetensors(d + "/one/checkpoint.safetensors");
  const ep::Tensor* tracked = ck.find("model.features.1.conv.0.1.num_batches_tracked");
  REQUIRE(tracked != nullptr);
  CHECK(tracked->to_double_vector() == std::vector<double>{10});
  // Both epochs were evaluated.
  std::ifstream metrics(d + "/one/metrics.jsonl");
  int evaluated = 0;
  for (std::string line; std::getline(metrics, line);) evaluated += nlohmann::json::parse(line).contains("val_top1");
  CHECK(evaluated == 2);
  // RoBERTa: 250 sequences in batches of 32 end with 26, fewer than --chunks 32; the 62 dev sequences end with 30.
  auto run_glue = [&](const std::string& stages, const std::string& name) {
    ep::test::AppRun r = ep::test::run_app(
        "train_glue", "--synthetic-size 250 --batch-size 32 --lr 1e-3 --epochs 1 --log-steps --chunks 32 --stages " +
                          stages + " --out " + d + "/" + name);
    REQUIRE_MESSAGE(r.status == 0, r.out);
    return ep::test::step_losses(r.out);
  };
  const auto glue_one = run_glue("4", "glue_one");
  CHECK(glue_one.size() == 8);
  CHECK(run_glue("1,2,1", "glue_three") == glue_one);
  std::filesystem::remove_all(d);
}

TEST_CASE("pipeline in train_cv: a compressed pipeline equals the single-process compressed split, statistics too") {
  if (!ep::test::have_app("train_cv")) return;
  const std::string d = ep::test::fresh_tmp_path("pipe_compress");
  const auto plain = losses("--split 1,1", d + "/plain");
  for (const char* spec : {"quant:bits=8", "sortquant:bits=6,split=2", "fp8", "topk:ratio=0.5"}) {
    INFO(std::string(spec));
    const std::string c = std::string("--split 1,1 --compress ") + spec + " ";
    auto single = losses(c, d + "/single");
    CHECK(losses(c + "--chunks 1", d + "/pipe") == single);
    CHECK(single != plain);  // the compression changes the run
    auto a = compression_rows(d + "/single"), b = compression_rows(d + "/pipe");
    CHECK(a.size() == 12);  // 3 steps x 2 boundaries x 2 directions
    CHECK(a == b);          // the same codes give the same errors and bytes
    std::filesystem::remove_all(d + "/single");
    std::filesystem::remove_all(d + "/pipe");
  }
  std::filesystem::remove_all(d);
}

TEST_CASE("pipeline on the GPU, compressed: payloads left on the GPU between stages give the single-process split") {
  if (!ep::test::have_app("train_cv") || !ep::test::have_cuda()) return;
  const std::string d = ep::test::fresh_tmp_path("pipe_gpu_compress");
  // Every stage on one GPU: each boundary's payload (and top-k's mask for the gradient) stays there, ordered between
  // the stages' streams by an event (Message::device_sections).
  for (const char* spec : {"quant:bits=8", "sortquant:bits=6,split=2", "topk:ratio=0.5"}) {
    INFO(std::string(spec));
    const std::string c = std::string("--device cuda --deterministic --split 1,1 --compress ") + spec + " ";
    const auto single = losses(c, d + "/single");
    CHECK(losses(c + "--chunks 1", d + "/pipe") == single);
    CHECK(compression_rows(d + "/single") == compression_rows(d + "/pipe"));
    // Four micro-batches in flight: the same bits twice, and close to the CPU's run (each micro-batch is compressed
    // alone, so these differ from `single` by about 1%; cuDNN's rounding differs from the CPU's far less).
    const auto four = losses(c + "--chunks 4", d + "/four");
    CHECK(losses(c + "--chunks 4", d + "/again") == four);
    check_close(four, losses(std::string("--split 1,1 --chunks 4 --compress ") + spec, d + "/cpu"), 1e-3);
  }
  // Edge stages on the CPU, the cloud stage on the GPU: the payloads and the top-k mask cross as host data.
  const std::string c = "--split 1,1 --compress topk:ratio=0.5 --chunks 2 ";
  check_close(losses(c + "--edge-device cpu --cloud-device cuda:0", d + "/mixed"), losses(c, d + "/cpu"), 1e-3);
  std::filesystem::remove_all(d);
}

TEST_CASE("pipeline in train_cv: bad pipeline flags get one line and exit 2") {
  if (!ep::test::have_app("train_cv")) return;
  const std::string d = ep::test::fresh_tmp_path("pipe_bad");
  for (const char* bad : {"--stages 5,16", "--chunks 2", "--chunks 2 --stages 5,10", "--chunks 2 --stages 5,16 --split 1,1",
                          "--chunks 2 --split 1,1 --bn sometimes", "--chunks 2 --split 1,1 --pipeline-schedule zigzag",
                          "--chunks 2 --stages 5,16 --compress-b1 fp8", "--chunks 2 --split 1,1 --devices cpu,cpu",
                          "--chunks -1 --split 1,1", "--link 100Mbit,20ms", "--chunks 2 --split 1,1 --link fast",
                          "--chunks 61 --split 1,1"}) {
    INFO(std::string(bad));
    ep::test::AppRun r = ep::test::run_app("train_cv", std::string(kRun) + bad + " --out " + d);
    CHECK(r.status == 2);
    CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 1);
  }
  if (!ep::test::have_cuda()) {  // a stage on a GPU this machine does not have
    ep::test::AppRun r = ep::test::run_app("train_cv", std::string(kRun) + "--chunks 2 --stages 5,16 --devices "
                                                                          "cpu,cuda:0 --out " + d);
    CHECK(r.status == 2);
    CHECK(r.out.find("--devices") != std::string::npos);
    CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 1);
  }
  std::filesystem::remove_all(d);
}

TEST_CASE("pipeline in train_glue: RoBERTa (dropout on, padding masks) gives the same losses for 1, 3 and 4 stages") {
  if (!ep::test::have_app("train_glue")) return;
  const std::string d = ep::test::fresh_tmp_path("pipe_glue");
  auto run = [&](const std::string& args) {
    ep::test::AppRun r = ep::test::run_app(
        "train_glue", "--synthetic-size 256 --batch-size 30 --lr 1e-3 --epochs 1 --max-steps 3 --log-steps "
                      "--split-fine --chunks 4 " + args + " --out " + d);
    REQUIRE_MESSAGE(r.status == 0, r.out);
    auto l = ep::test::step_losses(r.out);
    REQUIRE(l.size() == 3);
    return l;
  };
  auto one = run("--stages 6");
  CHECK(run("--split 2,3") == one);       // the seeds' condition 2 on the tiny model
  CHECK(run("--stages 1,2,2,1") == one);
  {  // the pipeline's statistics reach summary.json, also when --max-steps ends the run mid-epoch
    std::ifstream in(d + "/summary.json");
    const nlohmann::json last = nlohmann::json::parse(in)["pipeline_last_step"];
    REQUIRE(last.is_object());
    CHECK(last["stages"].size() == 4);
    CHECK(last["boundaries"].size() == 3);
    CHECK(last["boundaries"][0]["forward_bytes"].get<double>() > 0);
  }
  CHECK(run("--stages 1,2,2,1 --compress quant:bits=4") != one);
  std::filesystem::remove_all(d);
}

TEST_CASE("pipeline in train_cv and train_glue: activation recomputation changes nothing, bit for bit") {
  if (!ep::test::have_app("train_cv") || !ep::test::have_app("train_glue")) return;
  const std::string d = ep::test::fresh_tmp_path("pipe_recompute");
  // MobileNetV2: deferred BatchNorm must count each micro-batch once although its forward runs twice.
  auto never = losses("--split 1,1 --chunks 4 --checkpoint never", d + "/never");
  CHECK(losses("--split 1,1 --chunks 4 --checkpoint except-last", d + "/except") == never);
  CHECK(losses("--split 1,1 --chunks 4 --checkpoint always", d + "/always") == never);
  // The weights and BatchNorm running statistics after the steps are the same bits too.
  ep::SafetensorsFile a = ep::read_safetensors(d + "/never/checkpoint.safetensors");
  ep::SafetensorsFile b = ep::read_safetensors(d + "/always/checkpoint.safetensors");
  REQUIRE(a.tensors.size() == b.tensors.size());
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    INFO(a.tensors[i].first);
    CHECK(a.tensors[i].first == b.tensors[i].first);
    CHECK(a.tensors[i].second.to_double_vector() == b.tensors[i].second.to_double_vector());
  }
  // RoBERTa with dropout: the rewound generators draw the same masks in the second pass.
  auto glue = [&](const std::string& mode) {
    ep::test::AppRun r = ep::test::run_app(
        "train_glue", "--synthetic-size 256 --batch-size 30 --lr 1e-3 --epochs 1 --max-steps 3 --log-steps "
                      "--split-fine --split 2,3 --chunks 4 --checkpoint " + mode + " --out " + d + "/glue_" + mode);
    REQUIRE_MESSAGE(r.status == 0, r.out);
    return ep::test::step_losses(r.out);
  };
  CHECK(glue("always") == glue("never"));
  ep::test::AppRun bad = ep::test::run_app("train_cv", std::string(kRun) + "--split 1,1 --chunks 2 --checkpoint sometimes --out " + d);
  CHECK(bad.status == 2);
  std::filesystem::remove_all(d);
}

TEST_CASE("pipeline on the GPU: stages on the CPU and a GPU; --deterministic pipelined == sequential bit for bit") {
  if (!ep::test::have_app("train_cv") || !ep::test::have_app("train_glue") || !ep::test::have_cuda()) return;
  const std::string d = ep::test::fresh_tmp_path("pipe_gpu");
  // MobileNetV2: edge stages on the CPU, the cloud stage on the GPU; the same run all on the CPU. cuDNN's and the
  // CPU's convolutions round differently, so the losses agree closely rather than exactly.
  const auto cpu = losses("--chunks 3 --stages 2,16,3", d + "/cpu");
  const auto mixed = losses("--chunks 3 --stages 2,16,3 --devices cpu,cuda:0,cpu", d + "/mixed");
  check_close(mixed, cpu, 1e-4);
  // The checkpoint written at --max-steps holds every tensor, whichever device its stage ran on, and resumes.
  CHECK(ep::read_safetensors(d + "/mixed/checkpoint.safetensors").tensors.size() ==
        ep::read_safetensors(d + "/cpu/checkpoint.safetensors").tensors.size());
  // On one GPU with --deterministic: 1 and 3 stages, GPipe and 1F1B, repeated runs: the same bits.
  const std::string det = "--device cuda --deterministic --chunks 4 ";
  const auto one = losses(det + "--stages 21", d + "/one");
  CHECK(losses(det + "--stages 21", d + "/again") == one);
  CHECK(losses(det + "--stages 5,10,6", d + "/three") == one);
  // Parameter gradients add up in the schedule's backward order (GPipe C-1..0, 1F1B 0..C-1), so 1F1B on three
  // stages is held to 1F1B on one.
  CHECK(losses(det + "--stages 5,10,6 --pipeline-schedule 1f1b", d + "/three_1f1b") ==
        losses(det + "--stages 21 --pipeline-schedule 1f1b", d + "/one_1f1b"));
  CHECK(losses(det + "--stages 5,10,6 --checkpoint always", d + "/recompute") == one);
  check_close(one, losses("--chunks 4 --stages 21", d + "/one_cpu"), 1e-4);

  // RoBERTa (embeddings: the deterministic scatter-add; dropout on the GPU's Philox streams).
  auto glue = [&](const std::string& args) {
    ep::test::AppRun r = ep::test::run_app(
        "train_glue", "--synthetic-size 256 --batch-size 30 --lr 1e-3 --epochs 1 --max-steps 3 --log-steps "
                      "--split-fine --chunks 4 " + args + " --out " + d + "/glue");
    REQUIRE_MESSAGE(r.status == 0, r.out);
    auto l = ep::test::step_losses(r.out);
    REQUIRE(l.size() == 3);
    return l;
  };
  const auto g_one = glue("--device cuda --deterministic --stages 6");
  CHECK(glue("--device cuda --deterministic --stages 6") == g_one);
  CHECK(glue("--device cuda --deterministic --stages 1,2,2,1") == g_one);
  check_close(glue("--stages 1,2,2,1 --devices cuda,cpu,cpu,cuda"), glue("--stages 1,2,2,1"), 1e-4);
  std::filesystem::remove_all(d);
}