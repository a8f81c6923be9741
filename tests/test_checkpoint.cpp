// test_checkpoint.cpp — the trainers' checkpoint (apps/checkpoint.h) as input: a round trip restores every tensor,
// number and generator offset; a checkpoint of another state, a cursor past the epoch, metadata that is not a
// non-negative integer and mutated files fail with one IOError naming the file; a resumed run's JSON-lines logs keep
// only the steps before the checkpoint. Not resume exactness (the trainers' tests run interrupted and uninterrupted
// training and compare the losses bit for bit).
#include <doctest/doctest.h>

#include <fstream>
#include <iterator>
#include <string>

#include "apps/checkpoint.h"
#include "engine/json_lines.h"
#include "engine/ops.h"
#include "tests/test_util.h"

using namespace ep;

namespace {

// A two-tensor "model" with SGD momentum (so the optimizer has state) and one generator.
struct Toy {
  Tensor w = test::leaf(from_vector({1, 2, 3, 4, 5, 6}, {2, 3}, DType::f32));
  Tensor b = test::leaf(from_vector({0.5, -0.5}, {2}, DType::f32));
  Generator gen{7};
  SGD opt{{w, b}, [] { SGDOptions o; o.lr = 0.1; o.momentum = 0.9; return o; }()};
  ckpt::TrainState state{{{"w", &w}, {"b", &b}}, {{"dropout", &gen}}};

  void step() {  // one SGD step of the loss sum(w) + sum(b): momentum buffers become defined
    opt.zero_grad();
    add(sum(w), sum(b)).backward();
    opt.step();
  }
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST_CASE("checkpoint: a round trip restores tensors, optimizer state, step, cursor and generator offsets") {
  test::TempDir dir;
  const std::string path = (dir.path / "ck.safetensors").string();
  Toy a;
  a.step();
  a.step();
  a.gen.offset = 12345;
  ckpt::save(path, a.state, a.opt, {3, 4, 8}, nlohmann::json{{"lr", 0.1}});
  Toy b;
  const ckpt::Cursor at = ckpt::load(path, b.state, b.opt, /*steps_per_epoch=*/10);
  CHECK(at.epoch == 3);
  CHECK(at.next_batch == 4);
  CHECK(at.micro_batches == 8);  // an out-of-memory retry's count
  CHECK(read_safetensors(path).metadata.at("micro_batches") == "8");
  ckpt::save(path, a.state, a.opt, {3, 4}, nlohmann::json{{"lr", 0.1}});
  CHECK(read_safetensors(path).metadata.count("micro_batches") == 0);  // none: written as before retries existed
  CHECK(ckpt::load(path, b.state, b.opt, 10).micro_batches == 0);
  CHECK(b.opt.step_count() == 2);
  CHECK(b.gen.offset == 12345);
  CHECK(b.w.to_double_vector() == a.w.to_double_vector());
  // The same next step from both: the momentum buffers came back too.
  a.step();
  b.step();
  CHECK(b.w.to_double_vector() == a.w.to_double_vector());
  CHECK(b.b.to_double_vector() == a.b.to_double_vector());
}

TEST_CASE("checkpoint: wrong state, bad numbers and a cursor past the epoch are IOErrors naming the file") {
  test::TempDir dir;
  const std::string path = (dir.path / "ck.safetensors").string();
  Toy a;
  a.step();
  ckpt::save(path, a.state, a.opt, {1, 4}, nlohmann::json::object());
  auto error = [&](Toy& into, int64_t steps_per_epoch) {
    return test::error_of<IOError>([&] { ckpt::load(path, into.state, into.opt, steps_per_epoch); });
  };
  Toy fresh;
  CHECK(test::contains(error(fresh, 3), "ck.safetensors: data cursor at batch 4 of an epoch of 3 batches"));
  CHECK(error(fresh, 4).empty());  // at the end of the epoch is a valid cursor: the next epoch starts

  // Metadata rewritten by hand: each must be a whole non-negative decimal.
  SafetensorsFile f = read_safetensors(path);
  for (const char* bad : {"-1", "12abc", "", " 3", "99999999999999999999"}) {
    for (const char* key : {"step", "epoch", "next_batch", "rng.dropout", "micro_batches"}) {
      auto meta = f.metadata;
      meta[key] = bad;
      write_safetensors(path, f.tensors, meta);
      Toy t;
      const std::string e = error(t, 10);
      INFO(key << " = '" << bad << "': " << e);
      CHECK(test::contains(e, std::string("ck.safetensors: metadata '") + key + "' is not a non-negative integer"));
    }
  }

  auto meta = f.metadata;
  meta["micro_batches"] = "4097";
  write_safetensors(path, f.tensors, meta);
  Toy t0;
  CHECK(test::contains(error(t0, 10), "ck.safetensors: metadata 'micro_batches' is 4097, more than --chunks allows"));

  // Optimizer state of another shape (a checkpoint of another model with the same parameter names).
  auto tensors = f.tensors;
  for (auto& [name, t] : tensors)
    if (name == "optim.0.momentum_buffer") t = from_vector({1, 2, 3}, {3}, DType::f32);
  write_safetensors(path, tensors, f.metadata);
  Toy t1;
  CHECK(test::contains(error(t1, 10), "optim.0.momentum_buffer is f32[3], its parameter f32[2,3]"));
  // A model tensor missing: the strict load's report, with the file named first.
  tensors.clear();
  for (auto& [name, t] : f.tensors)
    if (name != "model.b") tensors.emplace_back(name, t);
  write_safetensors(path, tensors, f.metadata);
  Toy t2;
  const std::string missing = error(t2, 10);
  CHECK(missing.rfind(path + ": ", 0) == 0);
  CHECK(test::contains(missing, "b"));
}

TEST_CASE("checkpoint: version 3 must carry a matching checksum; version 2 (before checksums) is still read") {
  test::TempDir dir;
  const std::string path = (dir.path / "ck.safetensors").string();
  Toy a;
  a.step();
  ckpt::save(path, a.state, a.opt, {1, 2}, nlohmann::json::object());
  auto error = [&] {
    Toy t;
    return test::error_of<IOError>([&] { ckpt::load(path, t.state, t.opt, 5); });
  };
  CHECK(error().empty());
  // Take the checksum out by hand, keeping the header's length: its entry becomes JSON whitespace.
  const std::string saved = slurp(path);
  std::string bare = saved;
  const size_t at = bare.find(",\"edgepipe.crc32c\":\"");
  REQUIRE(at != std::string::npos);
  bare.replace(at, 29, std::string(29, ' '));
  std::ofstream(path, std::ios::binary) << bare;
  CHECK(test::contains(error(), "ck.safetensors: checkpoint has no checksum (edgepipe.crc32c)"));
  std::string v2 = bare;
  v2.replace(v2.find("\"version\":\"3\""), 13, "\"version\":\"2\"");
  std::ofstream(path, std::ios::binary) << v2;
  CHECK(error().empty());
  std::string v9 = bare;
  v9.replace(v9.find("\"version\":\"3\""), 13, "\"version\":\"9\"");
  std::ofstream(path, std::ios::binary) << v9;
  CHECK(test::contains(error(), "ck.safetensors: checkpoint version '9' is not one this edgepipe reads (2 or 3)"));
  // A flipped bit in the momentum buffer of a version 3 file.
  std::string flipped = saved;
  flipped[flipped.size() - 2] = char(flipped[flipped.size() - 2] ^ 1);
  std::ofstream(path, std::ios::binary) << flipped;
  CHECK(test::contains(error(), "ck.safetensors: ChecksumMismatch: "));
}

TEST_CASE("json_lines: a fresh run starts the log empty; a resume keeps earlier steps' lines, drops a torn one") {
  test::TempDir dir;
  const std::string path = (dir.path / "metrics.jsonl").string();
  { std::ofstream(path) << "{\"step\":1,\"v\":10}\n{\"step\":2,\"v\":20}\n{\"step\":3,\"v\":30}\n{\"step\":4,\"v"; }
  {
    JsonLinesLog log;
    const std::vector<nlohmann::json> kept = log.open(path, "step", 2);  // resumed after step 2: 3 and 4 are redone
    REQUIRE(kept.size() == 2);
    CHECK(kept[1]["v"] == 20);
    log.write({{"step", 3}, {"v", 31}});
  }
  CHECK(slurp(path) == "{\"step\":1,\"v\":10}\n{\"step\":2,\"v\":20}\n{\"step\":3,\"v\":31}\n");
  {
    JsonLinesLog log;
    CHECK(log.open(path, "step", -1).empty());  // a fresh run into the same folder
    log.write({{"step", 1}});
  }
  CHECK(slurp(path) == "{\"step\":1}\n");
  JsonLinesLog closed;
  CHECK_THROWS_AS(closed.write({{"step", 1}}), IOError);
  // A resume whose log is gone starts an empty one.
  JsonLinesLog fresh;
  CHECK(fresh.open((dir.path / "new.jsonl").string(), "step", 5).empty());
  // A folder that cannot hold the file: an IOError naming it.
  JsonLinesLog bad;
  CHECK_THROWS_AS(bad.open((dir.path / "no_such_dir" / "m.jsonl").string(), "step", -1), IOError);
}
