// fuzz_targets.cpp — the readers of untrusted bytes wrapped as fuzz targets, with their seed inputs. File readers get
// the bytes as a file in a scratch folder of this process; message readers get them as a buffer. Not a harness: the
// libFuzzer entry point is tests/fuzz/fuzz_main.cpp, the suite's replay is test_fuzz_replay.cpp.
#include "tests/fuzz_targets.h"

#define STB_IMAGE_WRITE_IMPLEMENTATION  // the one definition, for this file's seeds and test_data.cpp's fixtures
#define STBI_WRITE_NO_STDIO
#include <stb/stb_image_write.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>

#include "apps/checkpoint.h"
#include "apps/cli.h"
#include "compress/compressor.h"
#include "compress/payload.h"
#include "data/bpe.h"
#include "data/cifar10.h"
#include "data/glue.h"
#include "data/image_folder.h"
#include "engine/crc32c.h"
#include "engine/ops.h"
#include "engine/safetensors.h"
#include "layers/roberta.h"
#include "pipeline/compress_hook.h"
#include "pipeline/wire.h"

namespace ep::fuzz {
namespace {

namespace fs = std::filesystem;

void expect(bool ok, const std::string& what) {
  if (!ok) throw Finding(what);
}

// A folder of this process for the file readers, removed at exit (libFuzzer exits through exit(), which runs this).
struct Scratch {
  fs::path dir = fs::temp_directory_path() / ("edgepipe-fuzz-" + std::to_string(::getpid()));
  Scratch() { fs::create_directories(dir); }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

const fs::path& scratch() {
  static Scratch s;
  return s.dir;
}

std::string put(const fs::path& rel, const void* data, size_t size) {
  const fs::path path = scratch() / rel;
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(static_cast<const char*>(data), std::streamsize(size));
  expect(bool(out), "fuzz: cannot write " + path.string());
  return path.string();
}

std::string put(const fs::path& rel, std::string_view s) { return put(rel, s.data(), s.size()); }

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string bytes(const std::vector<uint8_t>& v) { return std::string(v.begin(), v.end()); }

// A seed of a target whose first byte selects something (a task, a method, a file name): the selector, then the body.
// (Built with append: gcc 12 warns falsely (-Wrestrict) on `std::string(1, c) + body`.)
std::string selected(int selector, std::string_view body) {
  std::string s(1, char(selector));
  s.append(body);
  return s;
}

Tensor random_tensor(const Shape& shape, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd(0.0, 1.0);
  std::vector<double> v(size_t(shape_numel(shape)));
  for (double& x : v) x = nd(rng);
  return from_vector(v, shape, DType::f32);
}

// Every element of an accepted tensor is read (under AddressSanitizer a read past its buffer is a crash).
void expect_readable(const Tensor& t, const std::string& what) {
  expect(t.to_double_vector().size() == size_t(t.numel()), what + ": element count");
}

// The files we write carry a CRC-32C (safetensors.h), so nearly every mutant would stop at the checksum. Like a PNG
// fuzzer fixing chunk CRCs, inputs of even length get their checksum recomputed before the reader sees them: odd ones
// exercise the check, even ones the validation behind it.
std::string with_checksum_fixed(const uint8_t* data, size_t size) {
  std::string s(reinterpret_cast<const char*>(data), size);
  const std::string key = std::string("\"") + kChecksumKey + "\":\"";
  const size_t at = s.find(key);
  if (size % 2 != 0 || at == std::string::npos || at + key.size() + 8 > s.size()) return s;
  s.replace(at + key.size(), 8, "00000000");
  char hex[9];
  std::snprintf(hex, sizeof hex, "%08x", crc32c(s.data(), s.size()));
  s.replace(at + key.size(), 8, hex);
  return s;
}

// ---- safetensors: a file for read_safetensors ---------------------------------------------------------------------

bool run_safetensors(const uint8_t* data, size_t size) {
  const std::string path = put("x.safetensors", with_checksum_fixed(data, size));
  try {
    const SafetensorsFile f = read_safetensors(path);
    for (const auto& [name, t] : f.tensors) {
      expect(t.nbytes() == size_t(t.numel()) * dtype_size(t.dtype()), "safetensors: byte size of " + name);
      expect_readable(t, "safetensors " + name);
    }
    return true;
  } catch (const IOError&) {
    return false;
  }
}

std::vector<std::string> seeds_safetensors() {
  const std::string path = (scratch() / "seed.safetensors").string();
  write_safetensors(path,
                    {{"w", from_vector({1, 2, 3, 4, 5, 6}, {2, 3}, DType::f32)},
                     {"h", from_vector({-1, 0.5, 2, 8}, {4}, DType::f16)},
                     {"b", from_vector({3, 1}, {2}, DType::bf16)},
                     {"i", from_vector({7}, {1}, DType::i64)},
                     {"s", scalar_tensor(2, DType::f64)}},
                    {{"step", "12"}, {"format", "pt"}});
  return {slurp(path)};
}

// ---- checkpoint: a file for --resume (apps/checkpoint.h), restored into a small model and its optimizer -----------

struct Toy {
  Tensor w = from_vector({1, 2, 3, 4, 5, 6}, {2, 3}, DType::f32).requires_grad_();
  Tensor b = from_vector({0.5, -0.5}, {2}, DType::f32).requires_grad_();
  Generator gen{7};
  SGD opt{{w, b}, [] { SGDOptions o; o.lr = 0.1; o.momentum = 0.9; return o; }()};
  ckpt::TrainState state{{{"w", &w}, {"b", &b}}, {{"dropout", &gen}}};

  void step() {  // one SGD step of sum(w) + sum(b): the momentum buffers become defined
    opt.zero_grad();
    add(sum(w), sum(b)).backward();
    opt.step();
  }
};

bool run_checkpoint(const uint8_t* data, size_t size) {
  const std::string path = put("ck.safetensors", with_checksum_fixed(data, size));
  Toy t;
  try {
    const ckpt::Cursor at = ckpt::load(path, t.state, t.opt, 5);
    expect(at.epoch >= 0 && at.next_batch >= 0 && at.next_batch <= 5, "checkpoint: cursor out of range");
    expect(t.w.shape() == Shape{2, 3} && t.b.shape() == Shape{2}, "checkpoint: restored shapes");
  } catch (const IOError&) {
    return false;
  }
  t.step();  // the restored optimizer state fits its parameters
  return true;
}

std::vector<std::string> seeds_checkpoint() {
  const std::string path = (scratch() / "seed-ck.safetensors").string();
  Toy a;
  a.step();
  ckpt::save(path, a.state, a.opt, {1, 2}, nlohmann::json{{"lr", 0.1}});
  return {slurp(path)};
}

// ---- cifar10: a file of CIFAR-10 binary records ---------------------------------------------------------------------

bool run_cifar10(const uint8_t* data, size_t size) {
  const std::string path = put("batch.bin", data, size);
  try {
    const data::ImageDataset ds = data::load_cifar10_files({path});
    expect(ds.pixels.size() == size_t(ds.size()) * 3072, "cifar10: pixel count");
    for (int64_t label : ds.labels) expect(label >= 0 && label <= 9, "cifar10: label out of range");
    return true;
  } catch (const IOError&) {
    return false;
  }
}

std::vector<std::string> seeds_cifar10() {
  std::string records(3 * 3073, char(40));
  for (int r = 0; r < 3; ++r) {
    records[size_t(r) * 3073] = char(r * 4);
    for (int i = 1; i < 3073; ++i) records[size_t(r) * 3073 + size_t(i)] = char((i * 7 + r) % 251);
  }
  return {records};
}

// ---- image: one file in an image folder; the first byte picks the name's extension, the rest is the file ----------

bool run_image(const uint8_t* data, size_t size) {
  if (size == 0) return false;
  static const char* const kExt[] = {"png", "jpg"};
  const std::string ext = kExt[data[0] % 2];
  const fs::path root = scratch() / "images";
  fs::remove_all(root);
  put(fs::path("images") / "cat" / ("x." + ext), data + 1, size - 1);
  data::ImageFolderOptions opt;
  opt.threads = 1;
  try {
    const data::ImageDataset ds = data::load_image_folder(root.string(), opt);
    expect(ds.size() == 1 && ds.pixels.size() == 3072u, "image: one 32x32 RGB image");
    return true;
  } catch (const IOError& e) {
    expect(std::string(e.what()).find("x." + ext) != std::string::npos ||
               std::string(e.what()).find(root.string()) != std::string::npos,
           std::string("image: the error names neither the file nor the folder: ") + e.what());
    return false;
  }
}

std::vector<std::string> seeds_image() {
  std::vector<uint8_t> rgb(32 * 32 * 3);
  for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = uint8_t(i * 7 % 251);
  std::vector<std::string> out;
  int len = 0;
  unsigned char* png = stbi_write_png_to_mem(rgb.data(), 32 * 3, 32, 32, 3, &len);
  expect(png != nullptr, "image seeds: PNG encoder failed");
  out.push_back(selected(0, std::string_view(reinterpret_cast<char*>(png), size_t(len))));
  STBIW_FREE(png);
  std::string jpg = selected(1, "");
  auto append = [](void* ctx, void* d, int n) {
    static_cast<std::string*>(ctx)->append(static_cast<char*>(d), size_t(n));
  };
  expect(stbi_write_jpg_to_func(append, &jpg, 32, 32, 3, rgb.data(), 90) != 0, "image seeds: JPEG encoder failed");
  out.push_back(jpg);
  // A real CIFAR-10 JPEG (another encoder's tables and sampling) when ../shared/data is present.
  const std::string sample = "../shared/data/cifar10/image-folder-sample/test/cat/0000.jpg";
  if (fs::exists(sample)) out.push_back(selected(1, slurp(sample)));
  return out;
}

// ---- glue: a TSV; the first byte picks the task and split (dev, test, train), the rest is the file -----------------

const char* const kGlueSplits[] = {"dev", "test", "train"};

bool run_glue(const uint8_t* data, size_t size) {
  if (size == 0) return false;
  const auto& tasks = data::glue_tasks();
  const data::GlueTask& task = tasks[data[0] % tasks.size()];
  const std::string split = kGlueSplits[(data[0] / tasks.size()) % 3];
  const std::string path = put(split + ".tsv", data + 1, size - 1);
  try {
    for (const data::GlueExample& x : data::load_glue_file(task, path, split)) {
      expect(x.line >= 1, "glue: line number");
      if (split == "test") expect(!x.labeled(), "glue: a test row with a label");
      else if (task.regression) expect(x.score >= 0 && x.score <= 5, "glue: score outside [0, 5]");
      else expect(x.label >= 0 && x.label < task.num_labels, "glue: label out of range");
    }
    return true;
  } catch (const IOError&) {
    return false;
  }
}

std::vector<std::string> seeds_glue() {
  // One dev file per task in its GLUE layout (formats.md A5), in glue_tasks() order.
  const std::vector<std::pair<std::string, std::string>> dev = {
      {"cola", "gj04\t1\t\tOur friends won't buy this analysis.\ngj04\t0\t*\tThey drank the pub.\n"},
      {"sst2", "sentence\tlabel\nit 's a charming journey . \t1\nunflinchingly bleak\t0\n"},
      {"mrpc", "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t702876\t702977\tHe said so.\tSo he said.\n"
               "0\t2108705\t2108831\tYucaipa owned it.\tYucaipa bought it."},
      {"qqp", "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n201359\t303345\t303346\tWhy X?\tWhy Y?\t0\n"},
      {"stsb", "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
               "0\tmain-captions\tMSRvid\t2012test\t0000\tnone\tnone\tA man dances.\tA man is dancing.\t5.000\n"
               "1\tmain-captions\tMSRvid\t2012test\t0004\tnone\tnone\tA.\tB.\t3.800"},
      {"mnli", "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
               "sentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n"
               "0\t63735\t63735n\tslate\t( a )\t( b )\t(ROOT a)\t(ROOT b)\tThe new rights are nice.\t"
               "Everyone likes them.\tneutral\tentailment\tneutral\tneutral\tneutral\tneutral\n"},
      {"qnli", "index\tquestion\tsentence\tlabel\n0\tWhat came into force?\tThe treaty did.\tentailment\r\n"},
      {"rte", "index\tsentence1\tsentence2\tlabel\n0\tA man plays.\tSomeone plays.\tentailment\n"
              "1\t\"Quoted\" text.\tNo.\tnot_entailment\n"},
      {"wnli", "index\tsentence1\tsentence2\tlabel\n0\tI stuck a pin through a carrot.\tThe pin had a hole.\t0\n"}};
  const auto& tasks = data::glue_tasks();
  std::vector<std::string> out;
  for (size_t k = 0; k < tasks.size(); ++k)
    for (const auto& [name, text] : dev)
      if (name == tasks[k].name) out.push_back(selected(int(k), text));
  expect(out.size() == tasks.size(), "glue seeds: a task without a seed");
  return out;
}

// ---- bpe_files: vocab.json and merges.txt, separated by the first NUL byte (merges default to a valid set) --------

const char* const kTinyMerges = "#version: 0.2\na b\nb c\nab c\n\xC4\xA0 a\n";  // "Ġ a"

void use_tokenizer(const data::BpeTokenizer& t, std::string_view a, std::string_view b, int64_t max_len) {
  const std::vector<int32_t> ids = b.empty() ? t.encode(a, max_len) : t.encode_pair(a, b, max_len);
  expect(max_len == 0 || int64_t(ids.size()) <= max_len, "bpe: longer than max_len");
  for (int32_t id : ids) expect(id >= 0 && id < t.vocab_size(), "bpe: id outside the vocabulary");
  t.decode(ids);
}

bool run_bpe_files(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const size_t nul = in.find('\0');
  const std::string vocab = put("vocab.json", in.substr(0, nul));
  const std::string merges = put("merges.txt", nul == std::string_view::npos ? kTinyMerges : in.substr(nul + 1));
  std::unique_ptr<data::BpeTokenizer> t;
  try {
    t = std::make_unique<data::BpeTokenizer>(data::BpeTokenizer::load(vocab, merges));
  } catch (const IOError&) {
    return false;
  }
  for (const char* text : {"abc abcab bca", "a\xFF" "bc\xE2\x82", "<s>ab</s>"}) use_tokenizer(*t, text, "b a", 12);
  return true;
}

std::vector<std::string> seeds_bpe_files() {
  return {tiny_bpe_vocab({"ab", "bc", "abc", "\xC4\xA0" "a"}).dump() + std::string(1, '\0') + kTinyMerges};
}

// ---- bpe_text: text for the tokenizer (roberta-base's files when ../shared/data has them, else the tiny set) ------
// The first byte picks encode_text, encode with max_len, or encode_pair (the rest split at its first tab).

const data::BpeTokenizer& text_tokenizer() {
  static const data::BpeTokenizer t = [] {
    const std::string dir = "../shared/data/roberta-base/";
    if (fs::exists(dir + "vocab.json") && fs::exists(dir + "merges.txt"))
      return data::BpeTokenizer::load(dir + "vocab.json", dir + "merges.txt");
    return data::BpeTokenizer::load(put("text-vocab.json", tiny_bpe_vocab({"ab", "bc", "abc", "\xC4\xA0" "a"}).dump()),
                                    put("text-merges.txt", kTinyMerges));
  }();
  return t;
}

bool run_bpe_text(const uint8_t* data, size_t size) {
  if (size == 0) return false;
  const data::BpeTokenizer& t = text_tokenizer();
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  const int mode = data[0] % 3;
  if (mode == 0) {
    const std::vector<int32_t> ids = t.encode_text(text);
    for (int32_t id : ids) expect(id >= 0 && id < t.vocab_size(), "bpe: id outside the vocabulary");
    expect(text.empty() == ids.empty(), "bpe: text and ids disagree on being empty");
    t.decode(ids);
  } else if (mode == 1) {
    use_tokenizer(t, text, "", 2 + data[0] % 40);
  } else {
    const size_t tab = text.find('\t');
    const std::string_view a = text.substr(0, tab);
    const std::string_view b = tab == std::string_view::npos ? std::string_view("x") : text.substr(tab + 1);
    use_tokenizer(t, a, b.empty() ? "x" : b, 4 + data[0] % 40);
  }
  return true;  // the tokenizer rejects no text
}

std::vector<std::string> seeds_bpe_text() {
  return {selected(0, "Hello world! It's 2026, isn't it?  \xC3\xA9t\xC3\xA9 \xE4\xBD\xA0\xE5\xA5\xBD"),
          selected(1, "The quick brown fox jumps over the lazy dog."),
          selected(2, "A man plays a guitar.\tSomeone plays music.\n")};
}

// ---- json_config: a RoBERTa config.json (parse_roberta_config) ---------------------------------------------------

bool run_json_config(const uint8_t* data, size_t size) {
  try {
    const std::string text(reinterpret_cast<const char*>(data), size);
    const nn::RobertaConfig c = nn::parse_roberta_config(text, "config.json");
    expect(c.hidden_size % c.num_attention_heads == 0, "config: hidden size not a multiple of the heads");
    expect(c.pad_token_id >= 0 && c.pad_token_id < c.vocab_size, "config: pad id outside the vocabulary");
    expect(c.max_sequence_length() >= 2, "config: no room for <s> </s>");
    expect(c.vocab_size <= INT32_MAX && c.hidden_size <= INT32_MAX && c.intermediate_size <= INT32_MAX,
           "config: sizes over int32");
    return true;
  } catch (const ValueError&) {
    return false;
  }
}

std::vector<std::string> seeds_json_config() {
  return {R"({"architectures": ["RobertaForMaskedLM"], "attention_probs_dropout_prob": 0.1, "bos_token_id": 0,)"
          R"( "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02,)"
          R"( "intermediate_size": 3072, "layer_norm_eps": 1e-05, "max_position_embeddings": 514,)"
          R"( "model_type": "roberta", "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 1,)"
          R"( "type_vocab_size": 1, "vocab_size": 50265, "id2label": {"0": "a", "1": "b"}})"};
}

// ---- cli_config: a trainer's --config FILE.json, with the trainers' common flags declared --------------------------

bool run_cli_config(const uint8_t* data, size_t size) {
  const std::string path = put("config.json", data, size);
  cli::Options o("train_cv");
  cli::add_trainer_flags(o, "runs/fuzz", "test");
  o.add("model", "string", "mobilenetv2", "model")
      .add("width", "float", 1.0, "width multiplier")
      .add("epochs", "int", 1, "epochs")
      .add("batch-size", "int", 128, "batch size")
      .add("lr", "float", 0.1, "learning rate");
  const char* argv[] = {"train_cv", "--config", path.c_str(), "--epochs", "2"};
  try {
    o.parse(5, argv);
  } catch (const cli::UsageError&) {
    return false;
  }
  expect(o.integer("epochs") == 2, "cli: a flag did not override --config");
  o.resolved().dump();
  return true;
}

std::vector<std::string> seeds_cli_config() {
  return {R"({"epochs": 30, "batch-size": 128, "lr": 0.05, "width": 0.5, "model": "mobilenetv2", "seed": 3,)"
          R"( "out": "runs/cifar", "eval-only": false})"};
}

// ---- wire: a plain tensor message from another process (pipeline/wire.h) ------------------------------------------

bool run_wire(const uint8_t* data, size_t size) {
  try {
    expect_readable(pipeline::tensor_from_wire(data, size, "fuzz"), "wire");
    return true;
  } catch (const Error&) {
    return false;
  }
}

std::vector<std::string> seeds_wire() {
  return {bytes(pipeline::tensor_to_wire(random_tensor({2, 3, 4}, 8))),
          bytes(pipeline::tensor_to_wire(from_vector({1, 2}, {2}, DType::f64)))};
}

// ---- payload: a serialized compression payload (Payload::parse, then decode) ---------------------------------------

const char* const kPayloadSpecs[] = {"none", "quant:bits=5", "quant:bits=3,per=channel", "sortquant:bits=4,split=3",
                                     "topk:ratio=0.1", "topk:ratio=0.7", "kmeans:bits=3", "lowrank:rank=2",
                                     "fp8:format=e5m2", "fp8"};
// A receiver knows roughly what it expects; 4M elements keeps a hostile header from asking for gigabytes.
constexpr uint64_t kPayloadMaxElements = uint64_t(1) << 22;

bool run_payload(const uint8_t* data, size_t size) {
  try {
    const compress::Payload p = compress::Payload::parse(data, size, kPayloadMaxElements);
    const Tensor t = compress::decode_payload(p);
    expect(t.shape() == p.shape, "payload: decoded shape differs from the header's");
    expect_readable(t, "payload");
    return true;
  } catch (const compress::CompressError&) {
    return false;
  }
}

std::vector<std::string> seeds_payload() {
  std::vector<std::string> out;
  for (const char* spec : kPayloadSpecs)
    out.push_back(bytes(compress::parse_compressor(spec)->encode(random_tensor({3, 4, 5}, 2)).serialize()));
  return out;
}

// ---- boundary: a compressed pipeline message as the receiving stage gets it; the first byte picks the method -----

const char* const kBoundarySpecs[] = {"quant:bits=8", "sortquant:bits=6,split=2", "topk:ratio=0.3", "lowrank:rank=2",
                                      "fp8"};

bool run_boundary(const uint8_t* data, size_t size) {
  if (size == 0) return false;
  const char* spec = kBoundarySpecs[data[0] % std::size(kBoundarySpecs)];
  pipeline::CompressorHook receiver(compress::parse_compressor(spec), compress::parse_compressor(spec));
  try {
    const pipeline::Message m = receiver.from_wire(data + 1, size - 1, pipeline::Pass::forward, 0);
    expect_readable(receiver.decode(m, pipeline::Pass::forward, Device::cpu(), 0), "boundary");
    return true;
  } catch (const Error&) {
    return false;
  }
}

std::vector<std::string> seeds_boundary() {
  std::vector<std::string> out;
  const Tensor x = random_tensor({4, 6, 5}, 9);
  for (size_t k = 0; k < std::size(kBoundarySpecs); ++k) {
    pipeline::CompressorHook sender(compress::parse_compressor(kBoundarySpecs[k]),
                                    compress::parse_compressor(kBoundarySpecs[k]));
    out.push_back(selected(int(k), bytes(sender.to_wire(sender.encode(x, pipeline::Pass::forward, 0),
                                                       pipeline::Pass::forward, 0))));
  }
  return out;
}

}  // namespace

std::string utf8(char32_t cp) {
  std::string s;
  if (cp < 0x80) s += char(cp);
  else if (cp < 0x800) s += char(0xC0 | (cp >> 6)), s += char(0x80 | (cp & 0x3F));
  else s += char(0xE0 | (cp >> 12)), s += char(0x80 | ((cp >> 6) & 0x3F)), s += char(0x80 | (cp & 0x3F));
  return s;
}

nlohmann::json tiny_bpe_vocab(const std::vector<std::string>& extra) {
  nlohmann::json v = nlohmann::json::object();
  int id = 0;
  for (const char* s : {"<s>", "<pad>", "</s>", "<unk>"}) v[s] = id++;
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    v[utf8(printable ? char32_t(b) : char32_t(256 + n++))] = id++;
  }
  for (const auto& e : extra) v[e] = id++;
  v["<mask>"] = id++;
  return v;
}

const std::vector<Target>& targets() {
  static const std::vector<Target> all = {
      {"safetensors", "a .safetensors file for read_safetensors", run_safetensors, seeds_safetensors},
      {"checkpoint", "a --resume checkpoint restored into a model and its SGD state", run_checkpoint,
       seeds_checkpoint},
      {"cifar10", "a file of CIFAR-10 binary records", run_cifar10, seeds_cifar10},
      {"image", "a PNG or JPEG (first byte) in an image folder", run_image, seeds_image},
      {"glue", "a GLUE TSV of the task and split the first byte picks", run_glue, seeds_glue},
      {"bpe_files", "vocab.json, NUL, merges.txt", run_bpe_files, seeds_bpe_files},
      {"bpe_text", "text for the byte-level BPE tokenizer", run_bpe_text, seeds_bpe_text},
      {"json_config", "a RoBERTa config.json", run_json_config, seeds_json_config},
      {"cli_config", "a trainer's --config FILE.json", run_cli_config, seeds_cli_config},
      {"wire", "a tensor message from another process", run_wire, seeds_wire},
      {"payload", "a serialized compression payload, parsed and decoded", run_payload, seeds_payload},
      {"boundary", "a compressed pipeline message at the receiving stage", run_boundary, seeds_boundary},
  };
  return all;
}

const Target& target(std::string_view name) {
  std::string known;
  for (const Target& t : targets()) {
    if (t.name == name) return t;
    known += std::string(known.empty() ? "" : ", ") + t.name;
  }
  throw std::invalid_argument("fuzz: no target '" + std::string(name) + "' (targets: " + known + ")");
}

}  // namespace ep::fuzz
