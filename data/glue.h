// glue.h — the nine GLUE tasks (labels, metrics, file layouts as HF transformers' glue processors read them) and a
// strict TSV loader that returns raw text pairs with labels. Not a tokenizer and not a batcher: see the BPE code.
#pragma once
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ep::data {

enum class GlueMetric { accuracy, matthews, f1, pearson, spearman };
// "accuracy", "mcc", "f1", "pearson", "spearman": the keys train_glue logs.
const char* glue_metric_name(GlueMetric m);

struct GlueTask {
  std::string name;                        // cola sst2 mrpc qqp stsb mnli qnli rte wnli (lower case, the CLI name)
  std::string folder;                      // the official GLUE folder: CoLA SST-2 MRPC QQP STS-B MNLI QNLI RTE WNLI
  int num_labels = 2;                      // 1 for the regression task (STS-B)
  bool regression = false;                 // labels are similarity scores in [0, 5], not classes
  bool pair = false;                       // text_b is used
  std::vector<std::string> label_strings;  // label id k is label_strings[k] in the files (HF get_labels() order)
  std::vector<GlueMetric> metrics;         // the first is the task's main metric (model selection)
  std::vector<std::string> splits;         // split names load_glue accepts (file = <split>.tsv)
};

// Every task, in the GLUE paper's order.
const std::vector<GlueTask>& glue_tasks();
// The task called `name` (case-insensitive; "sst-2" and "sts-b" also accepted). ValueError lists the known names.
const GlueTask& glue_task(std::string_view name);

struct GlueExample {
  std::string text_a;
  std::string text_b;       // empty for single-sentence tasks
  int64_t label = -1;       // class id in [0, num_labels); -1 for test splits and for the regression task
  float score = NAN;        // STS-B similarity in [0, 5]; NaN for classification tasks and test splits
  int64_t line = 0;         // 1-based line of the row in its file (the header is line 1 where there is one)
  bool labeled() const { return label >= 0 || !std::isnan(score); }
};

// The longest line the reader accepts. GLUE's longest (MNLI rows with two parse trees) are a few KiB; the limit only
// stops an unterminated or binary file from being read into memory whole.
inline constexpr size_t kGlueMaxLineBytes = size_t(1) << 20;

// Reads `dir`/<split>.tsv of `task`. Splits are train, dev and test; MNLI has train, dev_matched, dev_mismatched,
// test_matched and test_mismatched ("dev"/"test" mean the matched ones). Test splits have no labels: label -1 and
// score NaN.
//
// The file is read as UTF-8 (a leading BOM is skipped, as HF's utf-8-sig), split on '\n' (a "\r\n" ending is accepted,
// the last line may lack its newline) and on '\t'. Fields are taken verbatim: quote characters are ordinary text,
// never unescaped (HF reads GLUE with quotechar=None; a quote-aware reader merges rows, e.g. 72 RTE train fields begin
// with '"'). Nothing is trimmed.
//
// Strict, with IOError "<file>:<line>: <problem>" (or "<file>: <problem>") for: a missing or unreadable file, an empty
// file or one with a header and no rows, a header that is not the task's (wrong column count or names), a row with
// another column count than the layout's (this includes MNLI/QQP rows with extra tabs; HF's QqpProcessor silently
// skips QQP rows with missing columns, we report them so that counts never change silently), a blank line, a label
// that is not one of label_strings, an STS-B score that is not a finite number in [0, 5], invalid UTF-8, a stray
// '\r', a line longer than kGlueMaxLineBytes. An unknown split is a ValueError.
std::vector<GlueExample> load_glue(const GlueTask& task, const std::string& dir, const std::string& split);

// The same for an explicit file, read with the layout of `split`. Messages name the file by the path as given.
std::vector<GlueExample> load_glue_file(const GlueTask& task, const std::string& path, const std::string& split);

struct MetricValue {
  std::string name;  // glue_metric_name()
  double value;      // as a fraction / correlation (GLUE's leaderboard shows ×100)
};
// The task's metrics, in task.metrics order. Classification tasks take class ids; STS-B takes scores.
std::vector<MetricValue> glue_evaluate(const GlueTask& task, std::span<const int64_t> pred,
                                       std::span<const int64_t> gold);
std::vector<MetricValue> glue_evaluate(const GlueTask& task, std::span<const float> pred,
                                       std::span<const float> gold);

}  // namespace ep::data
