// roberta.cpp — RoBERTa config parsing, construction (HF's initialization), forward passes, units and HF checkpoint
// import. Not the attention math itself: scaled scores, mask, softmax and dropout are the fused attention_softmax op.
#include "layers/roberta.h"

#include "engine/json.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

namespace ep::nn {

namespace {

// A distinct Philox key per dropout site (splitmix64 of the model seed and the site), so no two sites share masks.
uint64_t site_seed(uint64_t seed, uint64_t site) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (site + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

Tensor on_device(const Tensor& t, Device d) { return t.device() == d ? t : t.to(d); }

}  // namespace

// ---- config -------------------------------------------------------------------------------------------------------

constexpr int64_t kMaxRobertaSize = (int64_t(1) << 31) - 1;

RobertaConfig parse_roberta_config(const std::string& text, const std::string& origin) {
  nlohmann::json j = parse_json_capped(text, origin);
  EP_CHECK(j.is_object(), ValueError, origin, ": expected a JSON object");
  RobertaConfig c;
  auto get_int = [&](const char* name, int64_t& field, bool required) {
    if (!j.contains(name)) {
      EP_CHECK(!required, ValueError, origin, ": missing \"", name, "\"");
      return;
    }
    EP_CHECK(j[name].is_number_integer(), ValueError, origin, ": \"", name, "\" must be an integer");
    field = j[name].get<int64_t>();
  };
  auto get_real = [&](const char* name, double& field) {
    if (!j.contains(name) || j[name].is_null()) return;
    EP_CHECK(j[name].is_number(), ValueError, origin, ": \"", name, "\" must be a number");
    field = j[name].get<double>();
  };
  get_int("vocab_size", c.vocab_size, true);
  get_int("hidden_size", c.hidden_size, true);
  get_int("num_hidden_layers", c.num_hidden_layers, true);
  get_int("num_attention_heads", c.num_attention_heads, true);
  get_int("intermediate_size", c.intermediate_size, true);
  get_int("max_position_embeddings", c.max_position_embeddings, true);
  get_int("type_vocab_size", c.type_vocab_size, false);
  get_int("pad_token_id", c.pad_token_id, false);
  get_real("layer_norm_eps", c.layer_norm_eps);
  get_real("hidden_dropout_prob", c.hidden_dropout_prob);
  get_real("attention_probs_dropout_prob", c.attention_probs_dropout_prob);
  get_real("initializer_range", c.initializer_range);
  if (j.contains("classifier_dropout") && !j["classifier_dropout"].is_null()) {
    double p = 0;
    get_real("classifier_dropout", p);
    c.classifier_dropout = p;
  }
  if (j.contains("id2label") && j["id2label"].is_object()) c.num_labels = int64_t(j["id2label"].size());
  get_int("num_labels", c.num_labels, false);

  // Sizes are positive, and at most 2^31-1: they index int32 kernels and feed products (the largest published RoBERTa
  // sizes are five digits).
  for (auto [name, v] : {std::pair{"vocab_size", c.vocab_size}, {"hidden_size", c.hidden_size},
                         {"num_hidden_layers", c.num_hidden_layers}, {"num_attention_heads", c.num_attention_heads},
                         {"intermediate_size", c.intermediate_size}, {"type_vocab_size", c.type_vocab_size},
                         {"num_labels", c.num_labels}, {"max_position_embeddings", c.max_position_embeddings}}) {
    EP_CHECK(v > 0, ValueError, origin, ": \"", name, "\" must be positive, got ", v);
    EP_CHECK(v <= kMaxRobertaSize, ValueError, origin, ": \"", name, "\" must be at most ", kMaxRobertaSize, ", got ",
             v);
  }
  EP_CHECK(c.hidden_size % c.num_attention_heads == 0, ValueError, origin, ": hidden_size ", c.hidden_size,
           " is not a multiple of num_attention_heads ", c.num_attention_heads);
  EP_CHECK(c.pad_token_id >= 0 && c.pad_token_id < c.vocab_size, ValueError, origin, ": pad_token_id ",
           c.pad_token_id, " outside the vocabulary");
  EP_CHECK(c.max_sequence_length() >= 2, ValueError, origin, ": max_position_embeddings ", c.max_position_embeddings,
           " leaves no room for a sequence after the padding offset");
  EP_CHECK(c.layer_norm_eps > 0, ValueError, origin, ": layer_norm_eps must be positive");
  for (auto [name, p] : {std::pair{"hidden_dropout_prob", c.hidden_dropout_prob},
                         {"attention_probs_dropout_prob", c.attention_probs_dropout_prob},
                         {"classifier_dropout", c.classifier_dropout.value_or(0.0)}})
    EP_CHECK(p >= 0 && p < 1, ValueError, origin, ": \"", name, "\" must be in [0, 1), got ", p);
  if (j.contains("hidden_act")) {
    EP_CHECK(j["hidden_act"].is_string() && j["hidden_act"].get<std::string>() == "gelu", ValueError, origin,
             ": hidden_act ", j["hidden_act"].dump(), " is not supported (only \"gelu\", the erf form)");
  }
  if (j.contains("position_embedding_type") && !j["position_embedding_type"].is_null()) {
    EP_CHECK(j["position_embedding_type"] == "absolute", ValueError, origin, ": position_embedding_type ",
             j["position_embedding_type"].dump(), " is not supported (only \"absolute\")");
  }
  return c;
}

RobertaConfig tiny_roberta_config(int64_t vocab, int64_t hidden, int64_t heads, int64_t max_len) {
  RobertaConfig c;
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.num_hidden_layers = 2;
  c.num_attention_heads = heads;
  c.intermediate_size = 2 * hidden;
  c.max_position_embeddings = max_len + c.pad_token_id + 1;
  return c;
}

RobertaConfig load_roberta_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EP_CHECK(in.good(), IOError, path, ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_roberta_config(ss.str(), path);
}

// ---- embeddings ---------------------------------------------------------------------------------------------------

Tensor roberta_position_ids(const Tensor& ids, int64_t pad) {
  EP_CHECK(ids.dim() == 2 && ids.dtype() == DType::i64, ShapeError, "[roberta] expected ids i64 [B, T], got ",
           dtype_name(ids.dtype()), " ", shape_str(ids.shape()));
  return padded_position_ids(ids, pad);
}

RobertaEmbeddings::RobertaEmbeddings(const RobertaConfig& c, Generator& gen, uint64_t dropout_seed)
    : pad_token_id(c.pad_token_id),
      word_embeddings(c.vocab_size, c.hidden_size, c.pad_token_id, c.initializer_range, gen),
      position_embeddings(c.max_position_embeddings, c.hidden_size, c.pad_token_id, c.initializer_range, gen),
      token_type_embeddings(c.type_vocab_size, c.hidden_size, -1, c.initializer_range, gen),
      norm(c.hidden_size, c.layer_norm_eps),
      drop(c.hidden_dropout_prob, dropout_seed) {}

Tensor RobertaEmbeddings::forward(const Tensor& ids) {
  const Device dev = word_embeddings.weight.device();
  Tensor ids_dev = on_device(ids, dev);
  Tensor pos = roberta_position_ids(ids_dev, pad_token_id);  // on the model's device: no read-back of the ids
  // Token type 0 everywhere: its row broadcasts over [B, T] (the gradient sums into that row).
  Tensor type_row = reshape(slice(token_type_embeddings.weight, 0, 0, 1), {word_embeddings.dim});
  Tensor h = add(add(word_embeddings.forward(ids_dev), position_embeddings.forward(pos)), type_row);
  return drop.forward(norm.forward(h));
}

// ---- encoder ------------------------------------------------------------------------------------------------------

Tensor RobertaSelfAttention::forward(const Tensor& h, const Tensor& key_mask) {
  EP_CHECK(h.dim() == 3, ShapeError, "[roberta attention] expected hidden [B, T, D], got ", shape_str(h.shape()));
  const int64_t B = h.size(0), T = h.size(1);
  // [B, T, D] -> [B*H, T, d]: heads become batch entries of the strided-batched GEMMs.
  auto heads_first = [&](const Tensor& x) {
    return reshape(permute(reshape(x, {B, T, heads, head_dim}), {0, 2, 1, 3}), {B * heads, T, head_dim});
  };
  Tensor q = heads_first(query.forward(h));
  Tensor k = heads_first(key_proj.forward(h));
  Tensor v = heads_first(value.forward(h));
  Tensor scores = reshape(matmul(q, k, false, true), {B, heads, T, T});
  Tensor probs = attention_softmax(scores, key_mask, 1.0 / std::sqrt(double(head_dim)), attention_dropout, train,
                                   dropout_gen);
  Tensor ctx = matmul(reshape(probs, {B * heads, T, T}), v);
  return reshape(permute(reshape(ctx, {B, heads, T, head_dim}), {0, 2, 1, 3}), {B, T, heads * head_dim});
}

RobertaLayer::RobertaLayer(const RobertaConfig& c, Generator& gen, uint64_t dropout_seed) {
  const int64_t D = c.hidden_size;
  const double std = c.initializer_range;
  self_attention.heads = c.num_attention_heads;
  self_attention.head_dim = D / c.num_attention_heads;
  self_attention.attention_dropout = c.attention_probs_dropout_prob;
  self_attention.query = Linear(D, D, LinearInit::normal_std, gen, true, std);
  self_attention.key_proj = Linear(D, D, LinearInit::normal_std, gen, true, std);
  self_attention.value = Linear(D, D, LinearInit::normal_std, gen, true, std);
  self_attention.dropout_gen = Generator(site_seed(dropout_seed, 0));
  attention_dense = Linear(D, D, LinearInit::normal_std, gen, true, std);
  attention_norm = LayerNorm(D, c.layer_norm_eps);
  intermediate_dense = Linear(D, c.intermediate_size, LinearInit::normal_std, gen, true, std);
  output_dense = Linear(c.intermediate_size, D, LinearInit::normal_std, gen, true, std);
  output_norm = LayerNorm(D, c.layer_norm_eps);
  attention_drop = Dropout(c.hidden_dropout_prob, site_seed(dropout_seed, 1));
  output_drop = Dropout(c.hidden_dropout_prob, site_seed(dropout_seed, 2));
}

Tensor RobertaLayer::forward_attention(const Tensor& h, const Tensor& key_mask) {
  Tensor ctx = self_attention.forward(h, key_mask);
  return attention_norm.forward(add(attention_drop.forward(attention_dense.forward(ctx)), h));
}

Tensor RobertaLayer::forward_ffn(const Tensor& a) {
  Tensor f = gelu(intermediate_dense.forward(a));
  return output_norm.forward(add(output_drop.forward(output_dense.forward(f)), a));
}

RobertaClassificationHead::RobertaClassificationHead(const RobertaConfig& c, Generator& gen, uint64_t dropout_seed) {
  const double p = c.classifier_dropout.value_or(c.hidden_dropout_prob);
  dense = Linear(c.hidden_size, c.hidden_size, LinearInit::normal_std, gen, true, c.initializer_range);
  out_proj = Linear(c.hidden_size, c.num_labels, LinearInit::normal_std, gen, true, c.initializer_range);
  drop_in = Dropout(p, site_seed(dropout_seed, 0));
  drop_mid = Dropout(p, site_seed(dropout_seed, 1));
}

Tensor RobertaClassificationHead::forward(const Tensor& hidden) {
  EP_CHECK(hidden.dim() == 3, ShapeError, "[roberta classifier] expected hidden [B, T, D], got ",
           shape_str(hidden.shape()));
  Tensor first = reshape(slice(hidden, 1, 0, 1), {hidden.size(0), hidden.size(2)});
  Tensor x = tanh(dense.forward(drop_in.forward(first)));
  return out_proj.forward(drop_mid.forward(x));
}

// ---- the model ----------------------------------------------------------------------------------------------------

RobertaForSequenceClassification::RobertaForSequenceClassification(const RobertaConfig& c, uint64_t seed)
    : config(c) {
  Generator gen(seed);
  // Site 0 the embeddings, 1..L the layers, L+1 the head.
  embeddings = RobertaEmbeddings(c, gen, site_seed(seed, 0));
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers.emplace_back(c, gen, site_seed(seed, uint64_t(i + 1)));
  classifier = RobertaClassificationHead(c, gen, site_seed(seed, uint64_t(c.num_hidden_layers + 1)));
}

void RobertaForSequenceClassification::set_train(bool on) {
  train = on;
  embeddings.set_train(on);
  for (auto& l : layers) l.set_train(on);
  classifier.set_train(on);
}

Tensor RobertaForSequenceClassification::prepare_mask(const Tensor& ids, const Tensor& attention_mask) {
  EP_CHECK(ids.dim() == 2, ShapeError, "[roberta] expected ids [B, T], got ", shape_str(ids.shape()));
  EP_CHECK(ids.size(1) <= config.max_sequence_length(), ShapeError, "[roberta] sequence length ", ids.size(1),
           " exceeds the ", config.max_sequence_length(), " positions of the config");
  if (!attention_mask.defined()) return ones(ids.shape(), DType::u8, device());
  EP_CHECK(attention_mask.shape() == ids.shape(), ShapeError, "[roberta] attention_mask ",
           shape_str(attention_mask.shape()), " does not match ids ", shape_str(ids.shape()));
  return on_device(attention_mask, device());
}

Tensor RobertaForSequenceClassification::forward(const Tensor& ids, const Tensor& attention_mask) {
  UnitContext ctx{prepare_mask(ids, attention_mask)};
  Tensor h = embeddings.forward(ids);
  for (auto& l : layers) h = l.forward(h, ctx.key_mask);
  return classifier.forward(h);
}

std::vector<Unit> RobertaForSequenceClassification::units(bool split_layers) {
  std::vector<Unit> u;
  u.emplace_back("embeddings", [this](const Tensor& ids, const UnitContext&) { return embeddings.forward(ids); });
  u.back().with_generators({&embeddings.drop.gen}).owning(embeddings);
  for (size_t i = 0; i < layers.size(); ++i) {
    const std::string name = "layer" + std::to_string(i);
    RobertaLayer& l = layers[i];
    if (split_layers) {
      u.emplace_back(name + ".attention", [this, i](const Tensor& h, const UnitContext& c) {
        return layers[i].forward_attention(h, c.key_mask);
      });
      u.back().with_generators({&l.self_attention.dropout_gen, &l.attention_drop.gen})
          .owning(l.self_attention, l.attention_dense, l.attention_norm);
      u.emplace_back(name + ".ffn", [this, i](const Tensor& a, const UnitContext&) { return layers[i].forward_ffn(a); });
      u.back().with_generators({&l.output_drop.gen}).owning(l.intermediate_dense, l.output_dense, l.output_norm);
    } else {
      u.emplace_back(name, [this, i](const Tensor& h, const UnitContext& c) { return layers[i].forward(h, c.key_mask); });
      u.back().with_generators({&l.self_attention.dropout_gen, &l.attention_drop.gen, &l.output_drop.gen}).owning(l);
    }
  }
  u.emplace_back("classifier", [this](const Tensor& h, const UnitContext&) { return classifier.forward(h); });
  u.back().with_generators({&classifier.drop_in.gen, &classifier.drop_mid.gen}).owning(classifier);
  return u;
}

// ---- HF checkpoint import -----------------------------------------------------------------------------------------

namespace {

// The shard files of a checkpoint path, in a stable order.
std::vector<std::string> checkpoint_files(const std::string& path) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(path)) {
    EP_CHECK(fs::exists(path), IOError, path, ": no such file or directory");
    return {path};
  }
  const fs::path dir(path);
  if (fs::exists(dir / "model.safetensors")) return {(dir / "model.safetensors").string()};
  const fs::path index = dir / "model.safetensors.index.json";
  EP_CHECK(fs::exists(index), IOError, path, ": neither model.safetensors nor model.safetensors.index.json found");
  std::ifstream in(index, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  nlohmann::json j = parse_json_capped<IOError>(text.str(), index.string());
  EP_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(), IOError, index.string(),
           ": missing the \"weight_map\" object");
  std::vector<std::string> shards;
  for (auto& [tensor, shard] : j["weight_map"].items()) {
    EP_CHECK(shard.is_string(), IOError, index.string(), ": weight_map[\"", tensor, "\"] is not a file name");
    const std::string name = shard.get<std::string>();
    // A shard name is a plain file next to the index; anything else could read outside the checkpoint.
    EP_CHECK(!name.empty() && name.find('/') == std::string::npos && name != "." && name != "..", IOError,
             index.string(), ": shard name \"", name, "\" is not a plain file name");
    shards.push_back((dir / name).string());
  }
  std::sort(shards.begin(), shards.end());
  shards.erase(std::unique(shards.begin(), shards.end()), shards.end());
  EP_CHECK(!shards.empty(), IOError, index.string(), ": weight_map is empty");
  return shards;
}

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }
bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

// HF name -> our name, or "" to skip.
std::string map_hf_key(std::string k) {
  if (starts_with(k, "lm_head.") || ends_with(k, "position_ids") || starts_with(k, "roberta.pooler.") ||
      starts_with(k, "pooler."))
    return "";
  if (starts_with(k, "embeddings.") || starts_with(k, "encoder.")) k = "roberta." + k;
  if (ends_with(k, ".gamma")) k = k.substr(0, k.size() - 6) + ".weight";
  if (ends_with(k, ".beta")) k = k.substr(0, k.size() - 5) + ".bias";
  return k;
}

}  // namespace

LoadReport load_roberta_checkpoint(RobertaForSequenceClassification& model, const std::string& path, bool strict) {
  std::vector<std::pair<std::string, Tensor>> tensors;
  std::map<std::string, std::string> seen;  // our key -> file, to reject a tensor given twice across shards
  for (const std::string& file : checkpoint_files(path)) {
    SafetensorsFile f = read_safetensors(file);
    for (auto& [name, t] : f.tensors) {
      const std::string k = map_hf_key(name);
      if (k.empty()) continue;
      EP_CHECK(!seen.count(k), IOError, file, ": tensor \"", name, "\" also appears in ", seen[k]);
      seen[k] = file;
      tensors.emplace_back(k, t);
    }
  }
  std::vector<std::pair<std::string, Tensor*>> entries;
  model.visit("", [&](const std::string& name, Tensor& t, bool) { entries.emplace_back(name, &t); });
  return load_state_entries(entries, tensors, strict);
}

}  // namespace ep::nn
