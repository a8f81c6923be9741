// test_golden_roberta.cpp — parity with HF RoBERTa's math: loads tests/golden/roberta_tiny.safetensors (written by
// make_roberta_fixture.py in float64 torch) and checks our logits, loss and every parameter gradient, on the CPU in f32
// (1e-4 relative) and f64 (1e-6), and on CUDA when present; plus config parsing, HF checkpoint import, position ids.
// Not a test of training dynamics (test_train_glue.cpp) nor of the attention kernel alone (test_attention.cpp).
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "engine/safetensors.h"
#include "layers/roberta.h"
#include "layers/state.h"
#include "tests/test_util.h"

using namespace ep;
using namespace ep::nn;

namespace {

const char* kFixture = "tests/golden/roberta_tiny.safetensors";

bool is_reference_entry(const std::string& name) {
  return name == "input_ids" || name == "attention_mask" || name == "labels" || name == "logits" || name == "loss" ||
         name.starts_with("grad.");
}

const Tensor& entry(const SafetensorsFile& f, const std::string& name) {
  const Tensor* t = f.find(name);
  REQUIRE_MESSAGE(t != nullptr, "fixture has no tensor '" << name << "'");
  return *t;
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.to_double_vector()) m = std::max(m, std::abs(v));
  return m;
}

// |got - ref| <= rtol * (scale + |ref|) element-wise, scale = max|ref| unless given.
void check_close(const std::string& what, const Tensor& got, const Tensor& ref, double rtol, double scale = -1) {
  Tensor g = got.detach().cpu().to(DType::f64), r = ref.to(DType::f64);
  REQUIRE_MESSAGE(g.shape() == r.shape(), what << ": shape " << shape_str(g.shape()) << " vs " << shape_str(r.shape()));
  if (scale < 0) scale = max_abs(r);
  std::string why;
  bool ok = test::allclose(g, r, rtol * scale, rtol, &why);
  INFO(what << " (reference max |x| " << scale << "): " << why);
  CHECK(ok);
}

void run_fixture(Device device, DType dtype, double rtol) {
  REQUIRE_MESSAGE(std::filesystem::exists(kFixture), kFixture << " missing: regenerate with make_roberta_fixture.py");
  SafetensorsFile f = read_safetensors(kFixture);
  RobertaConfig c = parse_roberta_config(f.metadata.at("config"), "fixture config");
  REQUIRE(c.num_labels == 3);
  RobertaForSequenceClassification m(c, 7);
  std::vector<std::pair<std::string, Tensor>> weights;
  for (const auto& [n, t] : f.tensors)
    if (!is_reference_entry(n)) weights.emplace_back(n, t);
  std::vector<std::pair<std::string, Tensor*>> entries;
  m.visit("", [&](const std::string& n, Tensor& t, bool) { entries.emplace_back(n, &t); });
  LoadReport r = load_state_entries(entries, weights, /*strict=*/true);
  CHECK(r.loaded == entries.size());
  to_dtype(m, dtype);
  to_device(m, device);
  m.set_train(false);  // dropout off: the fixture's reference has none

  Tensor ids = entry(f, "input_ids");
  Tensor logits = m.forward(ids, entry(f, "attention_mask"));
  check_close("logits", logits, entry(f, "logits"), rtol);
  Tensor loss = cross_entropy(logits, entry(f, "labels").to(device));
  check_close("loss", loss, entry(f, "loss"), rtol);
  loss.backward();
  for (auto& [name, p] : named_parameters(m)) {
    INFO(name);
    REQUIRE(p.grad().defined());
    // The key bias shifts every score of a row equally, which softmax ignores: its true gradient is 0 and both sides
    // hold round-off, so it is held to the scale of the same layer's key-weight gradient instead of its own.
    double scale = -1;
    if (name.ends_with("attention.self.key.bias"))
      scale = max_abs(entry(f, "grad." + name.substr(0, name.size() - 4) + "weight"));
    check_close("grad." + name, p.grad(), entry(f, "grad." + name), rtol, scale);
  }
}

std::string tmp_dir(const std::string& name) {
  auto d = std::filesystem::temp_directory_path() / ("ep_roberta_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d.string();
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

RobertaConfig tiny_config() { return tiny_roberta_config(50, 8, 2, 18); }

}  // namespace

TEST_CASE("roberta golden: logits, loss and every gradient match HF's math on the CPU (f32 and f64)") {
  run_fixture(Device::cpu(), DType::f32, 1e-4);
  run_fixture(Device::cpu(), DType::f64, 1e-6);
}

TEST_CASE("roberta golden on CUDA") {
  if (!test::have_cuda()) {
    MESSAGE("no CUDA device: skipping the RoBERTa golden test on CUDA");
    return;
  }
  run_fixture(Device::cuda(0), DType::f32, 1e-4);
}

TEST_CASE("roberta position ids follow HF's create_position_ids_from_input_ids") {
  // formats.md A2: [0, 31414, 232, 2, 1, 1] -> [2, 3, 4, 5, 1, 1]; a left-padded row starts at 2 on its first token.
  Tensor ids = from_vector({0, 31414, 232, 2, 1, 1, 1, 1, 0, 5, 2, 1}, {2, 6}, DType::i64);
  Tensor pos = roberta_position_ids(ids, 1);
  std::vector<double> want = {2, 3, 4, 5, 1, 1, 1, 1, 2, 3, 4, 1};
  CHECK(pos.to_double_vector() == want);
  CHECK_THROWS_AS(roberta_position_ids(from_vector({0, 1}, {2}, DType::i64), 1), ShapeError);
  if (!test::have_cuda()) return;
  // On the GPU (the ids never come back to the host): the same hand-made rows, then a batch of random rows with
  // padding anywhere against the CPU.
  const Tensor on_gpu = roberta_position_ids(ids.to(Device::cuda()), 1);
  CHECK(on_gpu.device() == Device::cuda());
  CHECK(on_gpu.to_double_vector() == want);
  std::vector<double> many(300 * 37);
  for (size_t i = 0; i < many.size(); ++i) many[i] = double((i * 7919u) % 5);  // pad = 1 about every fifth id
  const Tensor big = from_vector(many, {300, 37}, DType::i64);
  CHECK(roberta_position_ids(big.to(Device::cuda()), 1).to_double_vector() ==
        roberta_position_ids(big, 1).to_double_vector());
}

TEST_CASE("roberta config: the official roberta-base config.json, key names and parameter count") {
  const std::string path = "../shared/data/roberta-base/config.json";
  if (!std::filesystem::exists(path)) {
    MESSAGE("../shared/data absent: skipping the roberta-base config test");
    return;
  }
  RobertaConfig c = load_roberta_config(path);
  CHECK(c.vocab_size == 50265);
  CHECK(c.hidden_size == 768);
  CHECK(c.num_hidden_layers == 12);
  CHECK(c.max_sequence_length() == 512);
  CHECK(!c.classifier_dropout.has_value());
  // formats.md A2: 201 tensors and 124,647,170 parameters with a 2-label head. Built without allocating weights
  // twice over: counting only needs shapes, but a real build is the honest check of the key list (~500 MB).
  c.num_labels = 2;
  RobertaForSequenceClassification m(c);
  int64_t tensors = 0;
  bool has_query = false;
  m.visit("", [&](const std::string& n, Tensor&, bool) {
    ++tensors;
    has_query |= n == "roberta.encoder.layer.11.attention.self.query.weight";
  });
  CHECK(tensors == 201);
  CHECK(has_query);
  CHECK(count_parameters(m) == 124647170);
}

TEST_CASE("roberta config: bad files give one line naming the file and the field") {
  const std::string dir = tmp_dir("config");
  auto expect_error = [&](const std::string& text, const std::string& needle) {
    const std::string path = dir + "/config.json";
    write_text(path, text);
    try {
      load_roberta_config(path);
      FAIL("no error for " << text);
    } catch (const ValueError& e) {
      const std::string what = e.what();
      INFO(what);
      CHECK(what.find(path) != std::string::npos);
      CHECK(what.find(needle) != std::string::npos);
    }
  };
  const std::string base =
      R"("vocab_size":50,"hidden_size":8,"num_hidden_layers":1,"intermediate_size":16,"max_position_embeddings":20)";
  expect_error("{" + base + "}", "num_attention_heads");
  expect_error("{" + base + R"(,"num_attention_heads":3})", "not a multiple");
  expect_error("{" + base + R"(,"num_attention_heads":2,"hidden_act":"relu"})", "hidden_act");
  expect_error("{" + base + R"(,"num_attention_heads":2,"hidden_dropout_prob":1.5})", "hidden_dropout_prob");
  expect_error("{" + base + R"(,"num_attention_heads":"2"})", "integer");
  expect_error("{not json", "not valid JSON");
  expect_error("{" + base + R"(,"num_attention_heads":2,"hidden_act":)" + std::string(200000, '[') +
                   std::string(200000, ']') + "}",
               "nested deeper than 16 levels");
  CHECK_THROWS_AS(load_roberta_config(dir + "/absent.json"), IOError);
  std::filesystem::remove_all(dir);
}

TEST_CASE("roberta import: HF names, a bare RobertaModel, lm_head skipped, shards, classifier reported missing") {
  const std::string dir = tmp_dir("import");
  RobertaConfig c = tiny_config();
  RobertaForSequenceClassification src(c, 1);
  // A masked-LM style checkpoint: encoder under bare names (no "roberta." prefix), LayerNorm as gamma/beta, plus
  // lm_head and position_ids that must be skipped, and no classifier.
  std::vector<std::pair<std::string, Tensor>> shard1, shard2;
  src.visit("", [&](const std::string& n, Tensor& t, bool) {
    if (n.starts_with("classifier.")) return;
    std::string k = n.substr(std::string("roberta.").size());
    if (k.ends_with("LayerNorm.weight")) k = k.substr(0, k.size() - 6) + "gamma";
    if (k.ends_with("LayerNorm.bias")) k = k.substr(0, k.size() - 4) + "beta";
    (k.starts_with("encoder.layer.1") ? shard2 : shard1).emplace_back(k, t.detach());
  });
  shard1.emplace_back("lm_head.bias", zeros({c.vocab_size}));
  shard1.emplace_back("embeddings.position_ids", zeros({1, c.max_position_embeddings}, DType::i64));
  write_safetensors(dir + "/model-00001-of-00002.safetensors", shard1);
  write_safetensors(dir + "/model-00002-of-00002.safetensors", shard2);
  nlohmann::json index;
  index["metadata"]["total_size"] = 0;
  for (auto& [k, t] : shard1) index["weight_map"][k] = "model-00001-of-00002.safetensors";
  for (auto& [k, t] : shard2) index["weight_map"][k] = "model-00002-of-00002.safetensors";
  write_text(dir + "/model.safetensors.index.json", index.dump());

  RobertaForSequenceClassification dst(c, 2);
  const std::vector<double> classifier_before = dst.classifier.out_proj.weight.to_double_vector();
  LoadReport r = load_roberta_checkpoint(dst, dir, /*strict=*/false);
  INFO(r.str());
  CHECK(r.unexpected.empty());
  CHECK(r.mismatched.empty());
  CHECK(r.missing == std::vector<std::string>{"classifier.dense.weight", "classifier.dense.bias",
                                              "classifier.out_proj.weight", "classifier.out_proj.bias"});
  CHECK(dst.layers[1].output_norm.weight.to_double_vector() == src.layers[1].output_norm.weight.to_double_vector());
  CHECK(dst.embeddings.word_embeddings.weight.to_double_vector() ==
        src.embeddings.word_embeddings.weight.to_double_vector());
  CHECK(dst.classifier.out_proj.weight.to_double_vector() == classifier_before);  // HF-style init kept
  CHECK_THROWS_AS(load_roberta_checkpoint(dst, dir, /*strict=*/true), ValueError);

  // A shard that escapes the checkpoint directory is refused.
  write_text(dir + "/model.safetensors.index.json", R"({"weight_map":{"a":"../evil.safetensors"}})");
  CHECK_THROWS_AS(load_roberta_checkpoint(dst, dir, false), IOError);
  write_text(dir + "/model.safetensors.index.json",
             R"({"weight_map":{"a":)" + std::string(100000, '[') + std::string(100000, ']') + "}}");
  CHECK(test::contains(test::error_of<IOError>([&] { load_roberta_checkpoint(dst, dir, false); }),
                      "nested deeper than 16 levels"));
  CHECK_THROWS_AS(load_roberta_checkpoint(dst, dir + "/nothing-here", false), IOError);
  std::filesystem::remove_all(dir);
}

TEST_CASE("roberta: padding tokens do not change the logits of the real tokens; units equal forward") {
  RobertaConfig c = tiny_config();
  RobertaForSequenceClassification m(c, 3);
  m.set_train(false);
  Tensor short_ids = from_vector({0, 7, 9, 11, 2}, {1, 5}, DType::i64);
  Tensor padded_ids = from_vector({0, 7, 9, 11, 2, 1, 1}, {1, 7}, DType::i64);
  Tensor padded_mask = from_vector({1, 1, 1, 1, 1, 0, 0}, {1, 7}, DType::u8);
  std::string why;
  CHECK_MESSAGE(test::allclose(m.forward(short_ids, Tensor()), m.forward(padded_ids, padded_mask), 1e-6, 1e-5, &why),
                why);

  for (bool split : {false, true}) {
    auto units = m.units(split);
    CHECK(units.size() == size_t(split ? 2 + 2 * c.num_hidden_layers : 2 + c.num_hidden_layers));
    UnitContext ctx{m.prepare_mask(padded_ids, padded_mask)};
    Tensor h = padded_ids;
    for (auto& u : units) h = u.forward(h, ctx);
    CHECK(h.to_double_vector() == m.forward(padded_ids, padded_mask).to_double_vector());
  }
  CHECK_THROWS_AS(m.forward(zeros({1, 19}, DType::i64), Tensor()), ShapeError);  // 19 > 20 - 1 - 1 positions
}
