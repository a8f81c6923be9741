// test_train_cv.cpp — build/train_cv end to end, run as a child process (it sits next to this test binary): a resumed
// CPU run continues bit for bit and its logs hold each epoch and step once, a tiny run overfits 64 images, and bad
// input gets one line and a non-zero exit.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/safetensors.h"
#include "tests/app_runner.h"

namespace fs = std::filesystem;

namespace {

using ep::test::AppRun;
using ep::test::step_losses;
using Run = AppRun;
bool have_trainer() { return ep::test::have_app("train_cv"); }
Run run(const std::string& args) { return ep::test::run_app("train_cv", args); }
std::string tmpdir(const char* name) { return ep::test::fresh_tmp_path(std::string("train_cv_") + name); }

const char* kTiny = "--data synthetic --synthetic-size 256 --batch-size 32 --width 0.25 --log-steps";

}  // namespace

TEST_CASE("train_cv: a run resumed from its checkpoint continues bit for bit (CPU), across an epoch boundary") {
  if (!have_trainer()) return;
  const std::string a = tmpdir("full"), b = tmpdir("resumed");
  // 256 images / 32 = 8 steps an epoch: the full run does 12 steps over 2 epochs; the other stops at 5 and resumes.
  Run full = run(std::string(kTiny) + " --epochs 2 --max-steps 12 --out " + a);
  REQUIRE_MESSAGE(full.status == 0, full.out);
  Run first = run(std::string(kTiny) + " --epochs 2 --max-steps 5 --out " + b);
  REQUIRE_MESSAGE(first.status == 0, first.out);
  REQUIRE(fs::exists(b + "/checkpoint.safetensors"));
  // The resumed part assembles its batches with two threads: the batches, and so the losses, must not change.
  Run rest = run(std::string(kTiny) + " --epochs 2 --max-steps 12 --loader-threads 2 --out " + b + " --resume " + b +
                 "/checkpoint.safetensors");
  REQUIRE_MESSAGE(rest.status == 0, rest.out);
  auto lf = step_losses(full.out), l1 = step_losses(first.out), l2 = step_losses(rest.out);
  REQUIRE(lf.size() == 12);
  REQUIRE(l1.size() == 5);
  REQUIRE(l2.size() == 7);
  for (int s = 1; s <= 5; ++s) CHECK(l1[s] == lf[s]);
  for (int s = 6; s <= 12; ++s) {
    INFO("step " << s);
    CHECK(l2[s] == lf[s]);
  }
  fs::remove_all(a);
  fs::remove_all(b);
}

TEST_CASE("train_cv: 1, 2 and 3 CPU threads give the same losses and weights, bit for bit") {
  if (!have_trainer()) return;
  // Every CPU kernel's sums have an order fixed by the shapes alone (the convolution's weight gradient was the last
  // one to depend on the thread count): a run resumed on a machine with other cores, or a pipeline stage in a process
  // of its own, computes what the original would have.
  const std::string d = tmpdir("threads");
  std::map<int, std::string> losses;
  std::vector<std::pair<std::string, std::vector<double>>> weights;
  for (int threads : {1, 2, 3}) {
    INFO(threads << " threads");
    const std::string out = d + "/t" + std::to_string(threads);
    Run r = ep::test::run_command("OMP_NUM_THREADS=" + std::to_string(threads) + " " +
                                  ep::test::app_path("train_cv") + " " + kTiny + " --max-steps 6 --out " + out);
    REQUIRE_MESSAGE(r.status == 0, r.out);
    std::vector<std::pair<std::string, std::vector<double>>> w;
    for (const auto& [name, t] : ep::read_safetensors(out + "/checkpoint.safetensors").tensors)
      w.emplace_back(name, t.to_double_vector());
    if (threads == 1) {
      losses = step_losses(r.out);
      weights = w;
      REQUIRE(losses.size() == 6);
    } else {
      CHECK(step_losses(r.out) == losses);
      CHECK(w == weights);
    }
  }
  fs::remove_all(d);
}

// The integer field `key` of every line of a JSON-lines file, in file order.
static std::vector<int64_t> jsonl_field(const std::string& path, const char* key) {
  std::vector<int64_t> v;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) v.push_back(nlohmann::json::parse(line)[key].get<int64_t>());
  return v;
}

TEST_CASE("train_cv: --optimizer adamw trains, checkpoints its moments, resumes bit for bit; no other's checkpoint") {
  if (!have_trainer()) return;
  const std::string a = tmpdir("adamw_full"), b = tmpdir("adamw_resumed"), s = tmpdir("adamw_sgd");
  const std::string adamw = std::string(kTiny) + " --optimizer adamw --lr 0.003 --weight-decay 0.01 --epochs 2";
  Run full = run(adamw + " --max-steps 12 --out " + a);
  REQUIRE_MESSAGE(full.status == 0, full.out);
  Run sgd = run(std::string(kTiny) + " --epochs 2 --max-steps 3 --out " + s);
  REQUIRE_MESSAGE(sgd.status == 0, sgd.out);
  // The warmup's first step has lr 0, so steps 1 and 2 are SGD's losses; step 3 follows AdamW's update, not SGD's.
  auto lf = step_losses(full.out), ls = step_losses(sgd.out);
  REQUIRE(lf.size() == 12);
  REQUIRE(ls.size() == 3);
  CHECK(lf[2] == ls[2]);
  CHECK(lf[3] != ls[3]);
  // The checkpoint holds AdamW's two moments per parameter and no momentum buffer.
  int exp_avg = 0, exp_avg_sq = 0, other = 0;
  for (const auto& [name, t] : ep::read_safetensors(a + "/checkpoint.safetensors").tensors) {
    if (name.rfind("optim.", 0) != 0) continue;
    const std::string kind = name.substr(name.rfind('.') + 1);
    (kind == "exp_avg" ? exp_avg : kind == "exp_avg_sq" ? exp_avg_sq : other)++;
  }
  CHECK(exp_avg > 100);
  CHECK(exp_avg_sq == exp_avg);
  CHECK(other == 0);
  Run first = run(adamw + " --max-steps 5 --out " + b);
  REQUIRE_MESSAGE(first.status == 0, first.out);
  Run rest = run(adamw + " --max-steps 12 --out " + b + " --resume " + b + "/checkpoint.safetensors");
  REQUIRE_MESSAGE(rest.status == 0, rest.out);
  auto l2 = step_losses(rest.out);
  REQUIRE(l2.size() == 7);
  for (int step = 6; step <= 12; ++step) {
    INFO("step " << step);
    CHECK(l2[step] == lf[step]);
  }
  // An SGD checkpoint resumed with AdamW would start AdamW's moments from zero unnoticed: one line, exit 1.
  Run wrong = run(adamw + " --max-steps 4 --out " + b + " --resume " + s + "/checkpoint.safetensors");
  CHECK(wrong.status == 1);
  CHECK(wrong.out.find("checkpoint of optimizer 'sgd', this run uses 'adamw'") != std::string::npos);
  CHECK(std::count(wrong.out.begin(), wrong.out.end(), '\n') == 1);
  // And it learns: 64 images to 100% training accuracy in 20 epochs (reached by epoch 17 here; SGD's test takes 40).
  Run fit = run("--data synthetic --synthetic-size 64 --batch-size 64 --width 0.25 --epochs 20 --lr 0.003 "
                "--warmup-epochs 2 --weight-decay 0 --augment false --optimizer adamw --out " + a);
  REQUIRE_MESSAGE(fit.status == 0, fit.out);
  const size_t last = fit.out.find("epoch 20: train loss ");
  REQUIRE(last != std::string::npos);
  const std::string line = fit.out.substr(last, fit.out.find('\n', last) - last);
  CHECK(line.find("top-1 100.00% | test") != std::string::npos);
  for (const std::string& d : {a, b, s}) fs::remove_all(d);
}

TEST_CASE("train_cv: a fresh run into a used --out starts its logs over; a resume keeps only the rows before it") {
  if (!have_trainer()) return;
  const std::string d = tmpdir("logs");
  // 8 steps an epoch, 2 epochs; compression at both boundaries: 4 lines per step in compression.jsonl.
  const std::string args = std::string(kTiny) + " --split 1,1 --compress quant:bits=8 --epochs 2 --out " + d;
  Run first = run(args + " --max-steps 11");
  REQUIRE_MESSAGE(first.status == 0, first.out);
  fs::copy_file(d + "/checkpoint.safetensors", d + "/step11.safetensors");
  Run rest = run(args + " --resume " + d + "/checkpoint.safetensors");
  REQUIRE_MESSAGE(rest.status == 0, rest.out);
  // Resumed again from step 11: epoch 2's row and steps 12..16 are redone, not repeated.
  Run again = run(args + " --resume " + d + "/step11.safetensors");
  REQUIRE_MESSAGE(again.status == 0, again.out);
  CHECK(jsonl_field(d + "/metrics.jsonl", "epoch") == std::vector<int64_t>{1, 2});
  std::vector<int64_t> expected_steps;
  for (int64_t s = 1; s <= 16; ++s) expected_steps.insert(expected_steps.end(), 4, s);
  CHECK(jsonl_field(d + "/compression.jsonl", "step") == expected_steps);
  // summary.json's best covers the epochs before the resume too.
  double best = 0;
  std::ifstream metrics(d + "/metrics.jsonl");
  for (std::string line; std::getline(metrics, line);)
    best = std::max(best, nlohmann::json::parse(line)["val_top1"].get<double>());
  std::ifstream summary(d + "/summary.json");
  CHECK(nlohmann::json::parse(summary)["best_top1"].get<double>() == best);
  // --eval-only into the folder leaves the training logs alone; a fresh run replaces them.
  Run eval = run(args + " --eval-only");
  REQUIRE_MESSAGE(eval.status == 0, eval.out);
  CHECK(jsonl_field(d + "/compression.jsonl", "step").size() == 64);
  Run fresh = run(std::string(kTiny) + " --split 1,1 --compress quant:bits=8 --epochs 1 --out " + d);
  REQUIRE_MESSAGE(fresh.status == 0, fresh.out);
  CHECK(jsonl_field(d + "/metrics.jsonl", "epoch") == std::vector<int64_t>{1});
  CHECK(jsonl_field(d + "/compression.jsonl", "step").size() == 32);
  fs::remove_all(d);
}

TEST_CASE("train_cv: overfits 64 images to 100% training accuracy, and leaves its run folder") {
  if (!have_trainer()) return;
  const std::string d = tmpdir("overfit");
  Run r = run("--data synthetic --synthetic-size 64 --batch-size 64 --width 0.25 --epochs 40 --lr 0.05 "
              "--warmup-epochs 2 --weight-decay 0 --augment false --out " + d);
  REQUIRE_MESSAGE(r.status == 0, r.out);
  std::ifstream metrics(d + "/metrics.jsonl");
  nlohmann::json last;
  int rows = 0;
  for (std::string line; std::getline(metrics, line); ++rows) last = nlohmann::json::parse(line);
  CHECK(rows == 40);
  INFO("last epoch: " << last.dump());
  CHECK(last["train_top1"].get<double>() == 1.0);
  CHECK(last["peak_memory_bytes"]["cpu"].get<double>() > 1e6);  // the process's peak resident set, per epoch
  std::ifstream summary(d + "/summary.json");
  nlohmann::json s = nlohmann::json::parse(summary);
  CHECK(s["steps"] == 40);
  CHECK(fs::exists(d + "/config.json"));
  fs::remove_all(d);
}

TEST_CASE("train_cv: --dropout sets the classifier's dropout: 0, 0.5 and the default 0.2 give different losses") {
  if (!have_trainer()) return;
  const std::string d = tmpdir("dropout");
  auto first_loss = [&](const std::string& extra) {
    Run r = run(std::string(kTiny) + " --max-steps 1 --out " + d + " " + extra);
    REQUIRE_MESSAGE(r.status == 0, r.out);
    return step_losses(r.out).at(1);
  };
  const std::string none = first_loss("--dropout 0"), again = first_loss("--dropout 0");
  const std::string half = first_loss("--dropout 0.5");
  CHECK(none == again);
  CHECK(none != half);
  CHECK(first_loss("") != none);  // the default is torchvision's 0.2
  fs::remove_all(d);
}

TEST_CASE("synthetic_data: writes the images train_cv --data synthetic trains on, as CIFAR-10 binary files") {
  if (!have_trainer() || !ep::test::have_app("synthetic_data")) return;
  const std::string d = tmpdir("synthetic_export");
  Run w = ep::test::run_app("synthetic_data", "--synthetic-size 256 --seed 3 --out " + d);
  REQUIRE_MESSAGE(w.status == 0, w.out);
  CHECK(w.out.find("256 training and 51 test images; labels 0 filled_circle, 1 ring") != std::string::npos);
  // The same images in the same order give the same batches, so the same losses, bit for bit.
  const std::string steps = " --synthetic-size 256 --batch-size 32 --width 0.25 --log-steps --max-steps 3 --seed 3";
  Run from_files = run("--data " + d + steps + " --out " + d + "/run_files");
  Run drawn = run("--data synthetic" + steps + " --out " + d + "/run_drawn");
  REQUIRE_MESSAGE(from_files.status == 0, from_files.out);
  REQUIRE_MESSAGE(drawn.status == 0, drawn.out);
  CHECK(step_losses(from_files.out).size() == 3);
  CHECK(step_losses(from_files.out) == step_losses(drawn.out));
  Run other_seed = run("--data synthetic" + std::string(" --synthetic-size 256 --batch-size 32 --width 0.25 "
                       "--log-steps --max-steps 3 --out ") + d + "/run_other");
  CHECK(step_losses(other_seed.out) != step_losses(drawn.out));

  Run bad = ep::test::run_app("synthetic_data", "--synthetic-size 256");
  CHECK(bad.status == 2);
  CHECK(bad.out == "synthetic_data: --out is required\n");
  fs::remove_all(d);
}

TEST_CASE("train_cv: bad input is one line and a non-zero exit") {
  if (!have_trainer()) return;
  const std::string d = tmpdir("bad");
  // Usage errors: exit status 2 and exactly this line ("" where only the status is checked).
  const std::pair<const char*, const char*> usage[] = {
      {"--learning-rate 0.1", "unknown flag --learning-rate (see --help)"},
      {"--data /nonexistent/cifar", "--data /nonexistent/cifar: not a directory (or 'synthetic')"},
      {"--batch-size 0", ""},
      {"--data synthetic --loader-threads 0", "--loader-threads must be in [1, 256]"},
      {"--data synthetic --dropout 1", "--dropout must be in [0, 1)"},
      // MobileNetV2's knobs are not silently dropped for ResNet-18, even when set to their defaults.
      {"--data synthetic --model resnet18 --width 1",
       "--width: only for --model mobilenetv2 (ResNet-18 is the CIFAR variant, no dropout)"},
      {"--data synthetic --model resnet18 --dropout 0",
       "--dropout: only for --model mobilenetv2 (ResNet-18 is the CIFAR variant, no dropout)"},
      {"--data synthetic --optimizer adam", "--optimizer must be sgd or adamw, got 'adam'"},
      // Nor the other optimizer's.
      {"--data synthetic --optimizer adamw --momentum 0.9", "--momentum: only for --optimizer sgd"},
      {"--data synthetic --optimizer adamw --nesterov false", "--nesterov: only for --optimizer sgd"},
      {"--data synthetic --beta2 0.99", "--beta2: only for --optimizer adamw"},
      {"--data synthetic --optimizer sgd --eps 1e-6", "--eps: only for --optimizer adamw"},
  };
  Run r;
  for (const auto& [args, line] : usage) {
    INFO(args);
    r = run(std::string(args) + " --out " + d);
    CHECK(r.status == 2);
    if (*line) CHECK(r.out == "train_cv: " + std::string(line) + "\n");
  }
  fs::create_directories(d);
  std::ofstream(d + "/bad.safetensors") << "not a safetensors file";
  r = run(std::string(kTiny) + " --out " + d + " --resume " + d + "/bad.safetensors");
  CHECK(r.status == 1);
  CHECK(r.out.find("bad.safetensors") != std::string::npos);
  CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 1);
  fs::remove_all(d);
}

TEST_CASE("train_cv: a checkpoint that cannot be written ends the run with one line; the previous one stays usable") {
  if (!have_trainer()) return;
  const std::string d = tmpdir("fsize");
  const std::string ck = d + "/checkpoint.safetensors";
  Run r = run(std::string(kTiny) + " --max-steps 1 --out " + d);
  REQUIRE(r.status == 0);
  auto slurp = [](const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  const std::string before = slurp(ck);
  REQUIRE(before.size() > 256 * 1024);
  // The file size limit (in the shell, inherited by the trainer) makes the next checkpoint's write fail with EFBIG,
  // the same failing write(2) as a full disk; SIGXFSZ ignored so that the write returns the error.
  r = ep::test::run_command("trap '' XFSZ; ulimit -f 256; " + ep::test::app_path("train_cv") + " " + kTiny +
                            " --max-steps 2 --resume " + ck + " --out " + d);
  CHECK(r.status == 1);
  // Besides the --log-steps line of step 2 (stdout, so it may come after), one line says what failed.
  std::vector<std::string> other;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind("step ", 0) != 0) other.push_back(line);
  CHECK(other == std::vector<std::string>{"train_cv: " + ck + ": write failed: File too large"});
  CHECK(slurp(ck) == before);
  r = run(std::string(kTiny) + " --max-steps 2 --resume " + ck + " --out " + d);  // and it still resumes
  CHECK(r.status == 0);
  fs::remove_all(d);
}

TEST_CASE("train_cv: a full disk (ENOSPC) ends the run with one line; the previous checkpoint stays and resumes") {
  if (!have_trainer()) return;
  // A real full file system: a 3 MiB tmpfs in a mount namespace of its own (unshare, so it vanishes with the shell)
  // holds one 2 MiB checkpoint but not a second beside it, which is what the atomic rewrite needs. Root with the
  // privilege to mount (this container; maybe not CI's): otherwise a notice and no check.
  const std::string d = tmpdir("enospc");
  const std::string mnt = d + "/fs";
  fs::create_directories(mnt);
  const std::string app = ep::test::app_path("train_cv") + " " + kTiny + " --out " + mnt;
  Run r = ep::test::run_command(
      "unshare --mount sh -c 'mount -t tmpfs -o size=3m tmpfs " + mnt + " 2>/dev/null || exit 77; " + app +
      " --max-steps 1 >/dev/null 2>&1 || exit 78; cp " + mnt + "/checkpoint.safetensors " + d + "/first.safetensors; " +
      app + " --max-steps 2 --resume " + mnt + "/checkpoint.safetensors; echo rc=$?; cmp -s " + mnt +
      "/checkpoint.safetensors " + d + "/first.safetensors && echo intact; ls " + mnt + "' 2>&1");
  if (r.status == 77 || r.status == 1 || r.status == 127) {  // 1: unshare refused; 127: no unshare
    MESSAGE("full-disk case skipped: cannot mount a tmpfs in a mount namespace here: " << r.out);
    fs::remove_all(d);
    return;
  }
  REQUIRE_MESSAGE(r.status == 0, r.out);
  std::vector<std::string> other;  // besides the --log-steps lines
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind("step ", 0) != 0) other.push_back(line);
  CHECK(other == std::vector<std::string>{
                     "train_cv: " + mnt + "/checkpoint.safetensors: write failed: No space left on device", "rc=1",
                     "intact", "checkpoint.safetensors", "config.json", "metrics.jsonl", "summary.json"});
  r = run(std::string(kTiny) + " --max-steps 2 --resume " + d + "/first.safetensors --out " + d + "/resumed");
  CHECK(r.status == 0);
  fs::remove_all(d);
}

TEST_CASE("train_cv: --init-from loads torchvision-named weights, --eval-only --dump-logits writes them out") {
  if (!have_trainer()) return;
  // The golden fixture holds a width-0.25 CIFAR MobileNetV2's state dict (plus the fixture's own extra tensors).
  const std::string fixture = "tests/golden/mobilenetv2_cifar.safetensors";
  REQUIRE(fs::exists(fixture));
  const std::string d = tmpdir("init");
  const std::string common = "--data synthetic --synthetic-size 100 --width 0.25 --eval-only --out " + d;
  Run r = run(common + " --init-from " + fixture + " --dump-logits " + d + "/logits.safetensors");
  REQUIRE_MESSAGE(r.status == 0, r.out);
  // 314 state entries load; the fixture's input/logits/loss/grad.* tensors are reported as unexpected.
  CHECK(r.out.find("loaded 314; unexpected 19 (input, labels, logits") != std::string::npos);
  CHECK(r.out.find("missing") == std::string::npos);
  REQUIRE(fs::exists(d + "/logits.safetensors"));
  // 100 training images -> a test set of 20 (a fifth), labels i % 10 in data order.
  std::ifstream f(d + "/logits.safetensors", std::ios::binary);
  uint64_t n = 0;
  f.read(reinterpret_cast<char*>(&n), 8);
  std::string header(n, '\0');
  f.read(header.data(), std::streamsize(n));
  nlohmann::json h = nlohmann::json::parse(header);
  CHECK(h["logits"]["shape"] == nlohmann::json::array({20, 10}));
  CHECK(h["labels"]["shape"] == nlohmann::json::array({20}));
  // --strict turns the unexpected keys into an error, before anything runs.
  r = run(common + " --init-from " + fixture + " --strict");
  CHECK(r.status == 1);
  CHECK(r.out.find("[load_state]") != std::string::npos);
  r = run("--data synthetic --dump-logits x.safetensors --out " + d);
  CHECK(r.status == 2);
  CHECK(r.out == "train_cv: --dump-logits needs --eval-only\n");
  fs::remove_all(d);
}

TEST_CASE("train_cv: --train-subset and --test-subset take evenly strided subsets") {
  if (!have_trainer()) return;
  const std::string d = tmpdir("subset");
  // 200 synthetic training images (labels i % 10): a subset of 100 is every 2nd image, 2 batches of 50 per epoch;
  // the 40 test images shrink to 20.
  Run r = run("--data synthetic --synthetic-size 200 --train-subset 100 --test-subset 20 --batch-size 50 --width 0.25 "
              "--epochs 1 --out " + d);
  REQUIRE_MESSAGE(r.status == 0, r.out);
  std::ifstream summary(d + "/summary.json");
  CHECK(nlohmann::json::parse(summary)["steps"] == 2);
  CHECK(r.out.find("on 20 images") == std::string::npos);  // training run: no eval-only line
  r = run("--data synthetic --synthetic-size 200 --test-subset 20 --width 0.25 --eval-only --out " + d);
  REQUIRE_MESSAGE(r.status == 0, r.out);
  CHECK(r.out.find("on 20 images") != std::string::npos);
  fs::remove_all(d);
}

TEST_CASE("train_cv: a non-finite loss skips the step; BatchNorm statistics it made non-finite end the run") {
  if (!have_trainer()) return;
  // lr 1e30: the first two steps are finite, the second update drives the weights out of range, and step 3's loss is
  // NaN (a real divergence, nothing injected). Its forward pass already put NaN into the BatchNorm running statistics,
  // which no skipped update can undo: the run ends there, naming the tensor, instead of training on.
  const std::string d = tmpdir("diverged");
  Run ended = run(std::string(kTiny) + " --epochs 1 --lr 1e30 --max-bad-steps 3 --out " + d);
  CHECK(ended.status == 1);
  CHECK(ep::test::step_losses(ended.out).size() == 2);  // a skipped step prints no step line
  CHECK(ended.out.find("step 3: loss ") != std::string::npos);  // "nan" or "-nan": printf shows NaN's sign
  CHECK(ended.out.find("nan is not finite; update skipped (1 in a row; the run stops at 3)") != std::string::npos);
  CHECK(ended.out.find("train_cv: training diverged: features.0.1.running_var holds non-finite values at step 3") !=
        std::string::npos);
  fs::remove_all(d);
}

TEST_CASE("train_cv: --detect-anomaly stops the diverging run at the op that first made NaN/Inf, in step 3's forward") {
  if (!have_trainer()) return;
  // The run of the case above: steps 1 and 2 are finite and update; step 3's forward goes non-finite. Anomaly mode
  // stops there, before the loss exists (so before the step guard), and names an op in a module of the model.
  const std::string d = tmpdir("anomaly");
  for (const std::string split : {"", " --chunks 2 --stages 6,14"}) {
    INFO(split);
    Run r = run(std::string(kTiny) + " --epochs 1 --lr 1e30 --detect-anomaly --out " + d + split);
    CHECK(r.status == 1);
    CHECK(ep::test::step_losses(r.out).size() == 2);
    CHECK(r.out.find("update skipped") == std::string::npos);
    const size_t at = r.out.find("train_cv: [anomaly] ");
    REQUIRE_MESSAGE(at != std::string::npos, r.out);
    const std::string line = r.out.substr(at, r.out.find('\n', at) - at);
    CHECK_MESSAGE(line.find("features.") != std::string::npos, line);
    CHECK_MESSAGE(line.find("NaN/Inf") != std::string::npos, line);
    // Pipeline stages run the model's units, and findings there say which.
    if (!split.empty()) CHECK_MESSAGE(line.find("(unit ") != std::string::npos, line);
  }
  // A healthy run is unchanged by the checks, bit for bit.
  Run plain = run(std::string(kTiny) + " --max-steps 3 --out " + d);
  Run checked = run(std::string(kTiny) + " --max-steps 3 --detect-anomaly --out " + d);
  REQUIRE_MESSAGE(checked.status == 0, checked.out);
  CHECK(ep::test::step_losses(checked.out) == ep::test::step_losses(plain.out));
  CHECK(ep::test::step_losses(plain.out).size() == 3);
  fs::remove_all(d);
}

namespace {

nlohmann::json summary_of(const std::string& dir) {
  std::ifstream in(dir + "/summary.json");
  return nlohmann::json::parse(in);
}
std::vector<std::string> sorted_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::sort(lines.begin(), lines.end());
  return lines;
}
// The micro-batch count of the last "retrying its N rows in K micro-batches" line, 0 without one.
int64_t retried_chunks(const std::string& out) {
  const size_t at = out.rfind(" micro-batches (1F1B)");
  if (at == std::string::npos) return 0;
  const size_t from = out.rfind(" in ", at);
  return std::stoll(out.substr(from + 4, at - from - 4));
}

}  // namespace

TEST_CASE("train_cv: a step past --memory-limit is retried in more micro-batches and then trains as if run that way") {
  if (!have_trainer()) return;
  const std::string d = tmpdir("oom");
  const std::string args = std::string(kTiny) + " --max-steps 3";
  // The tensor memory a step needs whole (k = 1) and in two micro-batches on 1F1B (k = 2); a limit between the two
  // makes the first attempt fail and the retry fit.
  Run whole = run(args + " --out " + d + "/whole");
  Run halves = run(args + " --chunks 2 --stages 20 --pipeline-schedule 1f1b --out " + d + "/halves");
  REQUIRE_MESSAGE(whole.status == 0, whole.out);
  REQUIRE_MESSAGE(halves.status == 0, halves.out);
  const int64_t p1 = summary_of(d + "/whole")["peak_tensor_bytes"]["cpu"];
  const int64_t p2 = summary_of(d + "/halves")["peak_tensor_bytes"]["cpu"];
  REQUIRE_MESSAGE(p1 > p2 + (8 << 20), p1, " ", p2);  // room for the loader's prefetched batches either way
  const std::string limit = " --memory-limit " + std::to_string((p1 + p2) / 2);
  Run limited = run(args + limit + " --out " + d + "/limited");
  REQUIRE_MESSAGE(limited.status == 0, limited.out);
  CHECK(limited.out.find("step 1: [storage] out of memory on cpu: ") != std::string::npos);
  CHECK(retried_chunks(limited.out) == 2);
  // Every step, the retried first one included, equals the run that had two micro-batches from the start: the failed
  // attempt left nothing behind (gradients, BatchNorm running statistics, the dropout stream).
  CHECK(step_losses(limited.out) == step_losses(halves.out));
  CHECK(step_losses(limited.out).size() == 3);
  // So do the weights, the momentum and the BatchNorm running statistics, which the losses alone would not show.
  const ep::SafetensorsFile ck_limited = ep::read_safetensors(d + "/limited/checkpoint.safetensors");
  const ep::SafetensorsFile ck_halves = ep::read_safetensors(d + "/halves/checkpoint.safetensors");
  REQUIRE(ck_limited.tensors.size() == ck_halves.tensors.size());
  for (const auto& [name, t] : ck_halves.tensors) {
    INFO(name);
    const ep::Tensor* other = ck_limited.find(name);
    REQUIRE(other != nullptr);
    CHECK(other->to_double_vector() == t.to_double_vector());
  }
  const nlohmann::json s = summary_of(d + "/limited");
  CHECK(s["oom_retries"] == 1);
  CHECK(s["peak_tensor_bytes"]["cpu"].get<int64_t>() <= (p1 + p2) / 2);

  // The checkpoint keeps the micro-batch count: the resumed run starts there instead of failing again, and goes on
  // as the run that was never stopped (8 steps, across an epoch's end and its evaluation).
  Run straight = run(std::string(kTiny) + " --epochs 2" + limit + " --out " + d + "/straight");
  Run resumed = run(std::string(kTiny) + " --epochs 2" + limit + " --resume " + d + "/limited/checkpoint.safetensors" +
                    " --out " + d + "/limited");
  REQUIRE_MESSAGE(straight.status == 0, straight.out);
  REQUIRE_MESSAGE(resumed.status == 0, resumed.out);
  CHECK(resumed.out.find("out of memory") == std::string::npos);
  CHECK(resumed.out.find("resume: steps run in 2 micro-batches") != std::string::npos);
  const auto all = step_losses(straight.out), rest = step_losses(resumed.out);
  REQUIRE(all.size() == 16);
  REQUIRE(rest.size() == 13);
  for (const auto& [step, loss] : rest) CHECK(all.at(step) == loss);

  // Without retries the same limit ends the run with the error; a limit no micro-batch fits says what would help.
  Run strict = run(args + limit + " --oom-retry false --out " + d + "/strict");
  CHECK(strict.status == 1);
  CHECK(strict.out.find("train_cv: [storage] out of memory on cpu: ") != std::string::npos);
  Run tiny = run(args + " --memory-limit 2M --out " + d + "/tiny");
  CHECK(tiny.status == 1);
  CHECK_MESSAGE(tiny.out.find("does not fit even one row per micro-batch") != std::string::npos, tiny.out);
  Run bad = run(args + " --memory-limit 12X --out " + d + "/bad");
  CHECK(bad.status == 2);
  CHECK(bad.out.find("train_cv: --memory-limit 12X: expected a size such as 512M or 2G") != std::string::npos);

  // With --split and compression the retry runs the split as a 1F1B pipeline. Its losses and every line of
  // compression.jsonl equal that pipeline's from the start: the statistics of the failed attempt were dropped.
  const std::string split = args + " --split 1,1 --compress quant:bits=8";
  Run plain = run(split + " --out " + d + "/plain");
  REQUIRE_MESSAGE(plain.status == 0, plain.out);
  const int64_t p_split = summary_of(d + "/plain")["peak_tensor_bytes"]["cpu"];
  Run retried = run(split + " --memory-limit " + std::to_string(p_split * 3 / 4) + " --out " + d + "/retried");
  REQUIRE_MESSAGE(retried.status == 0, retried.out);
  const int64_t k = retried_chunks(retried.out);
  REQUIRE(k >= 2);
  Run piped = run(split + " --chunks " + std::to_string(k) + " --pipeline-schedule 1f1b --out " + d + "/piped");
  REQUIRE_MESSAGE(piped.status == 0, piped.out);
  CHECK(step_losses(retried.out) == step_losses(piped.out));
  // Stages record concurrently, so rows of one step may come in any order: compared as sorted lines.
  CHECK(sorted_lines(d + "/retried/compression.jsonl") == sorted_lines(d + "/piped/compression.jsonl"));
  CHECK(jsonl_field(d + "/retried/compression.jsonl", "step").size() == size_t(3 * 4 * k));  // per micro-batch
  fs::remove_all(d);
}
