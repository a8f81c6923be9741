// roberta.h — the RoBERTa encoder with HF's sequence-classification head, built from a config.json, with HF's key
// names (roberta.encoder.layer.N.attention.self.query.weight, classifier.out_proj.weight, ...) and HF's math
// (formats.md A2): padding-aware position ids, post-LN layers, erf-GELU, dropout on the attention probabilities.
// Not the masked-LM head, not a pooler (RobertaForSequenceClassification has none), not decoder/cross-attention.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "layers/basic.h"
#include "layers/state.h"

namespace ep::nn {

struct RobertaConfig {
  int64_t vocab_size = 50265, hidden_size = 768, num_hidden_layers = 12, num_attention_heads = 12;
  int64_t intermediate_size = 3072, max_position_embeddings = 514, type_vocab_size = 1, pad_token_id = 1;
  double layer_norm_eps = 1e-5, hidden_dropout_prob = 0.1, attention_probs_dropout_prob = 0.1;
  std::optional<double> classifier_dropout;  // null in the file: hidden_dropout_prob
  double initializer_range = 0.02;
  int64_t num_labels = 2;  // from num_labels or id2label when present; trainers set it per task
  // The longest sequence the position table allows, <s> and </s> included (512 for roberta-base).
  int64_t max_sequence_length() const { return max_position_embeddings - pad_token_id - 1; }
};

// A small 2-layer encoder (FFN 2 x hidden, HF's other defaults) for tests, smoke runs and the synthetic task;
// max_len counts <s> and </s>, the position table adds the padding offset.
RobertaConfig tiny_roberta_config(int64_t vocab, int64_t hidden, int64_t heads, int64_t max_len);

// Reads a HF config.json; unknown keys are ignored. ValueError "<path>: <field> ..." for missing or invalid sizes,
// a hidden size the heads do not divide, an activation other than "gelu", or a non-absolute position embedding.
RobertaConfig load_roberta_config(const std::string& path);
RobertaConfig parse_roberta_config(const std::string& json_text, const std::string& origin);

// Inverted dropout with its own Philox stream (seeded per site from the model seed) so masks follow from the seed.
struct RobertaEmbeddings {
  RobertaEmbeddings() = default;
  RobertaEmbeddings(const RobertaConfig& c, Generator& init_gen, uint64_t dropout_seed);
  int64_t pad_token_id = 1;
  Embedding word_embeddings, position_embeddings, token_type_embeddings;
  LayerNorm norm;  // key "LayerNorm"
  Dropout drop;
  bool train = true;
  void set_train(bool on) { train = on; drop.set_train(on); }
  template <class F> void visit(const std::string& prefix, F&& f) {
    word_embeddings.visit(key(prefix, "word_embeddings"), f);
    position_embeddings.visit(key(prefix, "position_embeddings"), f);
    token_type_embeddings.visit(key(prefix, "token_type_embeddings"), f);
    norm.visit(key(prefix, "LayerNorm"), f);
  }
  // ids: i64 [B, T] on any device -> hidden [B, T, D] on the model's device. Token types are all 0 (RoBERTa).
  Tensor forward(const Tensor& ids);
};

// HF's create_position_ids_from_input_ids: cumsum(ids != pad) * (ids != pad) + pad, as i64 [B, T] on the ids' device
// (padded_position_ids).
Tensor roberta_position_ids(const Tensor& ids, int64_t pad_token_id);

struct RobertaSelfAttention {
  int64_t heads = 0, head_dim = 0;
  double attention_dropout = 0.1;
  Linear query, key_proj, value;  // keys "query", "key", "value"
  Generator dropout_gen;
  bool train = true;
  void set_train(bool on) { train = on; }
  template <class F> void visit(const std::string& prefix, F&& f) {
    query.visit(key(prefix, "query"), f);
    key_proj.visit(key(prefix, "key"), f);
    value.visit(key(prefix, "value"), f);
  }
  // h [B, T, D], key_mask [B, T] (nonzero = token) or undefined -> context [B, T, D].
  Tensor forward(const Tensor& h, const Tensor& key_mask);
};

// One post-LN encoder layer: a = LN(h + drop(dense_o(self_attn(h)))), out = LN(a + drop(dense_out(gelu(dense_i(a))))).
struct RobertaLayer {
  RobertaLayer() = default;
  RobertaLayer(const RobertaConfig& c, Generator& init_gen, uint64_t dropout_seed);
  RobertaSelfAttention self_attention;  // attention.self
  Linear attention_dense;               // attention.output.dense
  LayerNorm attention_norm;             // attention.output.LayerNorm
  Linear intermediate_dense;            // intermediate.dense
  Linear output_dense;                  // output.dense
  LayerNorm output_norm;                // output.LayerNorm
  Dropout attention_drop, output_drop;
  bool train = true;
  void set_train(bool on) {
    train = on;
    self_attention.set_train(on);
    attention_drop.set_train(on);
    output_drop.set_train(on);
  }
  template <class F> void visit(const std::string& prefix, F&& f) {
    self_attention.visit(key(prefix, "attention.self"), f);
    attention_dense.visit(key(prefix, "attention.output.dense"), f);
    attention_norm.visit(key(prefix, "attention.output.LayerNorm"), f);
    intermediate_dense.visit(key(prefix, "intermediate.dense"), f);
    output_dense.visit(key(prefix, "output.dense"), f);
    output_norm.visit(key(prefix, "output.LayerNorm"), f);
  }
  Tensor forward_attention(const Tensor& h, const Tensor& key_mask);  // the attention half (with its LayerNorm)
  Tensor forward_ffn(const Tensor& a);                                 // the feed-forward half (with its LayerNorm)
  Tensor forward(const Tensor& h, const Tensor& key_mask) { return forward_ffn(forward_attention(h, key_mask)); }
};

// RobertaClassificationHead: x = h[:, 0] (the <s> token) -> dropout -> dense -> tanh -> dropout -> out_proj.
struct RobertaClassificationHead {
  RobertaClassificationHead() = default;
  RobertaClassificationHead(const RobertaConfig& c, Generator& init_gen, uint64_t dropout_seed);
  Linear dense, out_proj;
  Dropout drop_in, drop_mid;
  bool train = true;
  void set_train(bool on) {
    train = on;
    drop_in.set_train(on);
    drop_mid.set_train(on);
  }
  template <class F> void visit(const std::string& prefix, F&& f) {
    dense.visit(key(prefix, "dense"), f);
    out_proj.visit(key(prefix, "out_proj"), f);
  }
  Tensor forward(const Tensor& hidden);  // [B, T, D] -> logits [B, num_labels]
};

struct RobertaForSequenceClassification {
  // Initialization draws from Generator(seed) as HF's _init_weights does (N(0, initializer_range), padding rows zero,
  // LayerNorm ones/zeros); each dropout site gets its own Philox stream derived from seed.
  explicit RobertaForSequenceClassification(const RobertaConfig& config, uint64_t seed = 0);
  // Units capture `this`: the model must not be copied or moved once built.
  RobertaForSequenceClassification(const RobertaForSequenceClassification&) = delete;
  RobertaForSequenceClassification& operator=(const RobertaForSequenceClassification&) = delete;

  RobertaConfig config;
  RobertaEmbeddings embeddings;       // roberta.embeddings
  std::vector<RobertaLayer> layers;   // roberta.encoder.layer.N
  RobertaClassificationHead classifier;
  bool train = true;

  void set_train(bool on);
  template <class F> void visit(const std::string& prefix, F&& f) {
    embeddings.visit(key(prefix, "roberta.embeddings"), f);
    for (size_t i = 0; i < layers.size(); ++i) layers[i].visit(key(prefix, "roberta.encoder.layer." + std::to_string(i)), f);
    classifier.visit(key(prefix, "classifier"), f);
  }
  // Every dropout stream, named, for checkpoints (their offsets are the state that makes a resumed run exact).
  template <class F> void visit_generators(F&& f) {
    f("roberta.embeddings.dropout", embeddings.drop.gen);
    for (size_t i = 0; i < layers.size(); ++i) {
      const std::string p = "roberta.encoder.layer." + std::to_string(i);
      f(p + ".attention.self.dropout", layers[i].self_attention.dropout_gen);
      f(p + ".attention.output.dropout", layers[i].attention_drop.gen);
      f(p + ".output.dropout", layers[i].output_drop.gen);
    }
    f("classifier.dropout_in", classifier.drop_in.gen);
    f("classifier.dropout_mid", classifier.drop_mid.gen);
  }
  Device device() { return embeddings.word_embeddings.weight.device(); }

  // ids i64 [B, T] and attention_mask [B, T] (nonzero = token; undefined = all tokens), on any device -> logits
  // [B, num_labels] on the model's device.
  Tensor forward(const Tensor& ids, const Tensor& attention_mask);

  // "embeddings" (takes the ids), "layer0" .. "layerN-1" (or "layerI.attention" and "layerI.ffn" with split_layers),
  // "classifier". The context's key_mask is the attention mask on the model's device (see prepare_mask).
  std::vector<Unit> units(bool split_layers = false);
  // The attention mask as the units want it: u8 [B, T] on the model's device (all ones when undefined).
  Tensor prepare_mask(const Tensor& ids, const Tensor& attention_mask);
};

// Loads a HF checkpoint: a .safetensors file, a directory with model.safetensors, or a sharded checkpoint
// (model.safetensors.index.json + shards). lm_head.*, roberta.pooler.* and *.position_ids are skipped, keys of a bare
// RobertaModel get the "roberta." prefix, legacy gamma/beta become weight/bias. Missing keys keep their HF-style
// initialization (the classifier of a pretrained encoder) and are in the report; strict makes any mismatch an error.
LoadReport load_roberta_checkpoint(RobertaForSequenceClassification& model, const std::string& path, bool strict);

}  // namespace ep::nn
