// test_split.cpp — split learning in one process: flag precedence of the boundary compressors, --split parsing, the
// split model equal to the whole model without compression (MobileNetV2 and RoBERTa, forward and gradients), equal to
// explicit encode/decode at the boundaries with compression, and both trainers' --split flags end to end.
// Not the compressors' own laws (test_compress_*.cpp) nor the pipeline (pipeline/ tests).
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "compress/compressor.h"
#include "compress/split.h"
#include "layers/mobilenetv2.h"
#include "layers/roberta.h"
#include "tests/app_runner.h"
#include "tests/test_util.h"

using namespace ep;
using namespace ep::compress;

namespace {

nn::RobertaConfig tiny_roberta() {
  nn::RobertaConfig c = nn::tiny_roberta_config(40, 16, 2, 18);
  c.hidden_dropout_prob = c.attention_probs_dropout_prob = 0;  // so whole and split see identical masks
  return c;
}

std::vector<std::vector<double>> grads(const std::vector<std::pair<std::string, Tensor>>& params) {
  std::vector<std::vector<double>> g;
  for (const auto& [n, p] : params) g.push_back(p.grad().defined() ? p.grad().to_double_vector() : std::vector<double>{});
  return g;
}

}  // namespace

TEST_CASE("split: boundary specs resolve from the most general flag to the most specific") {
  BoundarySpecs s = resolve_boundary_specs({});
  CHECK(s.forward[0] == "none");
  CHECK(s.backward[1] == "none");
  s = resolve_boundary_specs({.all = "quant:bits=8"});
  for (int b = 0; b < 2; ++b) {
    CHECK(s.forward[b] == "quant:bits=8");
    CHECK(s.backward[b] == "quant:bits=8");
  }
  s = resolve_boundary_specs({.all = "quant:bits=8", .bwd = "topk:ratio=0.1", .b2 = "fp8|none"});
  CHECK(s.forward[0] == "quant:bits=8");
  CHECK(s.backward[0] == "topk:ratio=0.1");
  CHECK(s.forward[1] == "fp8");
  CHECK(s.backward[1] == "none");
  s = resolve_boundary_specs({.fwd = "quant:bits=4", .b1 = "|quant:bits=2"});  // empty half keeps the general one
  CHECK(s.forward[0] == "quant:bits=4");
  CHECK(s.backward[0] == "quant:bits=2");
  CHECK(s.backward[1] == "none");
  // Bad specs fail up front, naming the flag.
  for (const CompressFlags& f : {CompressFlags{.all = "nosuch"}, CompressFlags{.fwd = "quant:bits=0"},
                                 CompressFlags{.b2 = "none|topk:ratio=1.5"}}) {
    try {
      resolve_boundary_specs(f);
      FAIL("accepted a bad spec");
    } catch (const CompressError& e) {
      CHECK(std::string(e.what()).find("--compress") != std::string::npos);
    }
  }
}

TEST_CASE("split: --split K,M parsing and limits") {
  CHECK(parse_split("3,1", 20) == std::pair<int64_t, int64_t>{3, 1});
  CHECK(parse_split("1,0", 2) == std::pair<int64_t, int64_t>{1, 0});
  CHECK_THROWS_AS(parse_split("19,1", 20), ValueError);  // nothing left for the cloud
  CHECK_THROWS_AS(parse_split("0,1", 20), ValueError);
  CHECK_THROWS_AS(parse_split("2,-1", 20), ValueError);
  CHECK_THROWS_AS(parse_split("2", 20), ValueError);
  CHECK_THROWS_AS(parse_split("a,1", 20), ValueError);
  CHECK_THROWS_AS(parse_split("1,1x", 20), ValueError);
}

TEST_CASE("split: without compression the split MobileNetV2 equals the whole model, forward and gradients") {
  nn::MobileNetV2Options o;
  o.variant = nn::MobileNetV2Variant::cifar;
  o.width_mult = 0.25;
  o.num_classes = 10;
  o.dropout = 0;
  nn::MobileNetV2 m(o);
  Generator g(5);
  Tensor x = empty({2, 3, 32, 32});
  normal_(x, 0, 1, g);
  Tensor y = from_vector({3, 7}, {2}, DType::i64);
  // Whole model first: BN running statistics move, so the split pass starts from a copy of the state.
  auto params = nn::named_parameters(m);
  std::vector<std::vector<double>> running;
  m.visit("", [&](const std::string&, Tensor& t, bool buf) { if (buf) running.push_back(t.to_double_vector()); });
  Tensor whole = m.forward(x);
  cross_entropy(whole, y).backward();
  auto g_whole = grads(params);
  nn::zero_grad(m);
  size_t i = 0;
  m.visit("", [&](const std::string&, Tensor& t, bool buf) {
    if (buf && is_floating(t.dtype())) {
      Tensor back = from_vector(running[i], t.shape(), t.dtype());
      copy_(t, back);
    }
    if (buf) ++i;
  });
  SplitModel split(m.units(/*split_stem=*/true), 1, 1, BoundarySpecs{}, nullptr);
  Tensor cut = split.forward(x);
  cross_entropy(cut, y).backward();
  CHECK(cut.to_double_vector() == whole.to_double_vector());
  CHECK(grads(params) == g_whole);
  CHECK(split.describe().find("edge [stem.conv_bn] | none / none | cloud [stem.relu6 .. head]") != std::string::npos);
}

TEST_CASE("split: with compression the boundaries are explicit encode/decode of activations and gradients") {
  nn::RobertaConfig c = tiny_roberta();
  nn::RobertaForSequenceClassification m(c, 9);
  Tensor ids = from_vector({0, 5, 6, 7, 2, 1, 0, 9, 8, 10, 11, 2}, {2, 6}, DType::i64);
  Tensor mask = from_vector({1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1}, {2, 6}, DType::u8);
  Tensor y = from_vector({1, 0}, {2}, DType::i64);
  nn::UnitContext ctx{m.prepare_mask(ids, mask)};
  const std::string q8 = "quant:bits=8", q4 = "quant:bits=4";
  auto roundtrip = [](const std::string& spec, const Tensor& t) {
    auto comp = parse_compressor(spec);
    return comp->decode(comp->encode(t.detach()));
  };
  auto params = nn::named_parameters(m);
  auto units = m.units(/*split_layers=*/true);  // edge: embeddings, layer0.attention | cloud | edge: classifier

  // By hand: cut the graph at both boundaries, carry values and gradients across with decode(encode(.)).
  Tensor front = units[1].forward(units[0].forward(ids, ctx), ctx);
  Tensor cloud_in = roundtrip(q8, front).requires_grad_();
  Tensor cloud_out = cloud_in;
  for (size_t i = 2; i + 1 < units.size(); ++i) cloud_out = units[i].forward(cloud_out, ctx);
  Tensor back_in = roundtrip(q4, cloud_out).requires_grad_();
  Tensor by_hand = units.back().forward(back_in, ctx);
  cross_entropy(by_hand, y).backward();
  cloud_out.backward(roundtrip(q8, back_in.grad()));  // boundary 2's backward compressor
  front.backward(roundtrip(q4, cloud_in.grad()));     // boundary 1's backward compressor
  auto g_hand = grads(params);
  nn::zero_grad(m);

  BoundarySpecs specs;
  specs.forward[0] = q8;
  specs.backward[0] = q4;
  specs.forward[1] = q4;
  specs.backward[1] = q8;
  auto log = std::make_shared<CompressionLog>("");
  SplitModel split(units, 2, 1, specs, log);
  Tensor logits = split.forward(ids, ctx);
  cross_entropy(logits, y).backward();
  CHECK(logits.to_double_vector() == by_hand.to_double_vector());
  auto g_split = grads(params);
  REQUIRE(g_split.size() == g_hand.size());
  for (size_t i = 0; i < g_split.size(); ++i) {
    INFO(params[i].first);
    CHECK(g_split[i] == g_hand[i]);
  }
  // The compression really bites: the embeddings' gradient differs from the uncompressed model's.
  nn::zero_grad(m);
  cross_entropy(m.forward(ids, mask), y).backward();
  CHECK(grads(params).front() != g_hand.front());

  nlohmann::json s = log->summary();
  CHECK(s["boundary1"]["forward"]["calls"] == 1);
  CHECK(s["boundary1"]["backward"]["calls"] == 1);
  CHECK(s["boundary2"]["backward"]["calls"] == 1);
  CHECK(s["boundary2"]["forward"]["ratio_fp32"].get<double>() < 0.2);  // 4 bits of 32, plus a small header
  // The epoch's summary (metrics.jsonl): one step so far, so the run's; then it starts again.
  const nlohmann::json epoch = log->take_epoch_summary();
  CHECK(epoch == s);
  CHECK(log->take_epoch_summary().empty());
  const std::string line = epoch_summary_line(epoch);
  CHECK(line.rfind("compression: b1 fwd ", 0) == 0);
  CHECK(line.find(" · b1 bwd ") != std::string::npos);
  CHECK(line.find(" · b2 bwd ") != std::string::npos);
  // The console line by hand: the mean SNR to 0.1 dB, |bias| to 0.01 and the sums' error to 3 digits; all calls
  // exact (no sums' error), an SNR of -inf, a median sums' error of +inf (null).
  const nlohmann::json hand = nlohmann::json::parse(
      R"({"boundary1": {"forward": {"calls": 3, "exact_calls": 0, "mean_snr_db": 18.04, "mean_abs_bias": 0.568,
                                    "median_sum_rel_err": 0.01234},
                        "backward": {"calls": 3, "exact_calls": 3, "mean_snr_db": null, "mean_abs_bias": 0,
                                     "median_sum_rel_err": 0}},
          "boundary2": {"backward": {"calls": 3, "exact_calls": 1, "mean_snr_db": null, "mean_abs_bias": 0.001,
                                     "median_sum_rel_err": null},
                        "forward": {"calls": 2, "exact_calls": 0, "mean_snr_db": 3.0, "mean_abs_bias": 0.5,
                                    "median_sum_rel_err": 489.6}}})");
  CHECK(epoch_summary_line(hand) ==
        "compression: b1 fwd 18.0 dB |bias| 0.57 sums 0.0123 · b1 bwd exact |bias| 0.00 · b2 fwd 3.0 dB |bias| 0.50 "
        "sums 490 · b2 bwd -inf dB |bias| 0.00 sums inf");
  CHECK(epoch_summary_line(nlohmann::json::object()).empty());
}

TEST_CASE("split: both trainers take --split and --compress, log compression.jsonl, reject bad flags in one line") {
  if (!test::have_app("train_cv") || !test::have_app("train_glue")) return;
  const std::string d = test::fresh_tmp_path("split_trainers");
  test::AppRun r = test::run_app("train_cv", "--data synthetic --synthetic-size 128 --batch-size 64 --width 0.25 "
                                             "--epochs 2 --split 1,1 --split-fine --compress sortquant:bits=6,split=2 "
                                             "--out " + d + "/cv");
  REQUIRE_MESSAGE(r.status == 0, r.out);
  // Each epoch's console line and metrics.jsonl row summarize that epoch's 2 steps; summary.json the run's 4.
  CHECK(r.out.find("  compression: b1 fwd ") != std::string::npos);
  CHECK(r.out.find(" · b2 bwd ") != std::string::npos);
  std::ifstream metrics(d + "/cv/metrics.jsonl");
  int epochs = 0;
  for (std::string line; std::getline(metrics, line); ++epochs)
    CHECK(nlohmann::json::parse(line)["compression"]["boundary2"]["backward"]["calls"] == 2);
  CHECK(epochs == 2);
  std::ifstream in(d + "/cv/compression.jsonl");
  int rows = 0;
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    CHECK(j["ratio_fp32"].get<double>() == doctest::Approx(0.25).epsilon(0.01));  // 6 + 2 bits of 32
    ++rows;
  }
  CHECK(rows == 4 * 2 * 2);  // 4 steps x 2 boundaries x 2 directions
  std::ifstream sj(d + "/cv/summary.json");
  CHECK(nlohmann::json::parse(sj)["compression"]["boundary2"]["backward"]["calls"] == 4);

  r = test::run_app("train_glue", "--synthetic-size 64 --batch-size 32 --epochs 1 --split 1,1 --compress fp8 --out " +
                                      d + "/glue");
  REQUIRE_MESSAGE(r.status == 0, r.out);
  CHECK(std::filesystem::exists(d + "/glue/compression.jsonl"));
  CHECK(r.out.find("  compression: b1 fwd ") != std::string::npos);

  for (const char* bad : {"--split 30,5", "--compress quant:bits=4", "--split 1,1 --compress quant:bits=0",
                                 "--split 1,1 --compress nosuch", "--split 1,0 --compress-b2 fp8"}) {
    INFO(bad);
    r = test::run_app("train_cv", std::string("--data synthetic --synthetic-size 64 --width 0.25 --epochs 1 ") + bad + " --out " + d);
    CHECK(r.status == 2);
    CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 1);
  }
  std::filesystem::remove_all(d);
}
