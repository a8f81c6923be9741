// glue.cpp — the GLUE task table, each split's column layout (positions as HF transformers' glue processors use them)
// and a streaming, strict TSV reader. Not forgiving: a malformed row stops the load with its file and line.
#include "data/glue.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

#include "data/metrics.h"
#include "engine/check.h"

namespace ep::data {

namespace fs = std::filesystem;

const char* glue_metric_name(GlueMetric m) {
  switch (m) {
    case GlueMetric::accuracy: return "accuracy";
    case GlueMetric::matthews: return "mcc";
    case GlueMetric::f1: return "f1";
    case GlueMetric::pearson: return "pearson";
    case GlueMetric::spearman: return "spearman";
  }
  return "?";
}

const std::vector<GlueTask>& glue_tasks() {
  using M = GlueMetric;
  static const std::vector<std::string> std_splits = {"train", "dev", "test"};
  static const std::vector<std::string> binary = {"0", "1"};
  // Field order matters to callers that build a GlueTask by aggregate initialisation (train_glue's synthetic task).
  // splits[1] is each task's dev split (MNLI: dev_matched); train_glue relies on that.
  static const std::vector<GlueTask> tasks = {
      {"cola", "CoLA", 2, false, false, binary, {M::matthews}, std_splits},
      {"sst2", "SST-2", 2, false, false, binary, {M::accuracy}, std_splits},
      {"mrpc", "MRPC", 2, false, true, binary, {M::f1, M::accuracy}, std_splits},
      {"qqp", "QQP", 2, false, true, binary, {M::f1, M::accuracy}, std_splits},
      {"stsb", "STS-B", 1, true, true, {}, {M::pearson, M::spearman}, std_splits},
      {"mnli", "MNLI", 3, false, true, {"contradiction", "entailment", "neutral"}, {M::accuracy},
       {"train", "dev_matched", "dev_mismatched", "test_matched", "test_mismatched", "dev", "test"}},
      {"qnli", "QNLI", 2, false, true, {"entailment", "not_entailment"}, {M::accuracy}, std_splits},
      {"rte", "RTE", 2, false, true, {"entailment", "not_entailment"}, {M::accuracy}, std_splits},
      {"wnli", "WNLI", 2, false, true, binary, {M::accuracy}, std_splits},
  };
  return tasks;
}

const GlueTask& glue_task(std::string_view name) {
  std::string key;
  for (char c : name)
    if (c != '-') key += char(std::tolower(static_cast<unsigned char>(c)));
  std::string known;
  for (const auto& t : glue_tasks()) {
    if (t.name == key) return t;
    known += (known.empty() ? "" : " ") + t.name;
  }
  EP_THROW(ValueError, "[glue] unknown task '", name, "' (known: ", known, ")");
}

namespace {

// Where a split's fields are. Positions are 0-based columns; -1 = absent. `header_names` are the header's expected
// names at text_a, text_b and label (checked so that a file of another task or split fails on line 1).
struct Layout {
  bool header = true;
  int columns = 0;
  int text_a = -1, text_b = -1, label = -1;
  const char *name_a = nullptr, *name_b = nullptr, *name_label = nullptr;
};

bool is_test_split(const std::string& split) { return split.rfind("test", 0) == 0; }

Layout layout_for(const GlueTask& task, const std::string& split) {
  const bool test = is_test_split(split);
  const std::string& t = task.name;
  if (t == "cola")  // train/dev: source, label, original mark, sentence; no header (formats.md A5)
    return test ? Layout{true, 2, 1, -1, -1, "sentence", nullptr, nullptr} : Layout{false, 4, 3, -1, 1};
  if (t == "sst2")
    return test ? Layout{true, 2, 1, -1, -1, "sentence", nullptr, nullptr}
                : Layout{true, 2, 0, -1, 1, "sentence", nullptr, "label"};
  if (t == "mrpc")  // Quality #1 ID #2 ID #1 String #2 String (test: index instead of Quality)
    return Layout{true, 5, 3, 4, test ? -1 : 0, "#1 String", "#2 String", test ? nullptr : "Quality"};
  if (t == "qqp")  // id qid1 qid2 question1 question2 is_duplicate; test: id question1 question2
    return test ? Layout{true, 3, 1, 2, -1, "question1", "question2", nullptr}
                : Layout{true, 6, 3, 4, 5, "question1", "question2", "is_duplicate"};
  if (t == "stsb")  // index genre filename year old_index source1 source2 sentence1 sentence2 score (test: no score)
    return test ? Layout{true, 9, 7, 8, -1, "sentence1", "sentence2", nullptr}
                : Layout{true, 10, 7, 8, 9, "sentence1", "sentence2", "score"};
  if (t == "mnli") {  // index promptID pairID genre 2 binary parses 2 parses sentence1 sentence2 [label1..] gold_label
    if (test) return Layout{true, 10, 8, 9, -1, "sentence1", "sentence2", nullptr};
    if (split == "train") return Layout{true, 12, 8, 9, 11, "sentence1", "sentence2", "gold_label"};
    return Layout{true, 16, 8, 9, 15, "sentence1", "sentence2", "gold_label"};  // dev: label1..label5, gold_label
  }
  if (t == "qnli")  // index question sentence label
    return Layout{true, test ? 3 : 4, 1, 2, test ? -1 : 3, "question", "sentence", test ? nullptr : "label"};
  // rte, wnli: index sentence1 sentence2 label
  return Layout{true, test ? 3 : 4, 1, 2, test ? -1 : 3, "sentence1", "sentence2", test ? nullptr : "label"};
}

// Quotes a field for an error message, shortened so a huge field cannot flood the terminal.
std::string shown(std::string_view s) {
  constexpr size_t kMax = 40;
  if (s.size() <= kMax) return "'" + std::string(s) + "'";
  return "'" + std::string(s.substr(0, kMax)) + "...' (" + std::to_string(s.size()) + " bytes)";
}

// Offset of the first byte that is not part of well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF), or npos.
size_t invalid_utf8_at(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) { ++i; continue; }
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c == 0xE0) { len = 3; lo = 0xA0; }
    else if (c >= 0xE1 && c <= 0xEC) len = 3;
    else if (c == 0xED) { len = 3; hi = 0x9F; }  // U+D800..DFFF are surrogates
    else if (c >= 0xEE && c <= 0xEF) len = 3;
    else if (c == 0xF0) { len = 4; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) len = 4;
    else if (c == 0xF4) { len = 4; hi = 0x8F; }  // above U+10FFFF
    else return i;
    if (i + len > n || p[i + 1] < lo || p[i + 1] > hi) return i;
    for (size_t k = 2; k < len; ++k)
      if (p[i + k] < 0x80 || p[i + k] > 0xBF) return i;
    i += len;
  }
  return std::string_view::npos;
}

// Lines of a file in 64 KiB reads, each at most kGlueMaxLineBytes; "\r\n" and a missing final newline handled.
class LineReader {
 public:
  explicit LineReader(const std::string& path) : path_(path), in_(path, std::ios::binary), buf_(1 << 16) {
    EP_CHECK(in_.good(), IOError, path, ": cannot open for reading");
  }
  int64_t line_no() const { return line_no_; }

  // The next line without its terminator; false at the end of the file.
  bool next(std::string& line) {
    line.clear();
    bool any = false;  // a byte of this line (or its '\n') was consumed
    for (;;) {
      if (pos_ == end_ && !fill()) {
        if (!any) return false;
        break;  // the last line had no newline
      }
      any = true;
      const char* start = buf_.data() + pos_;
      const void* nl = std::memchr(start, '\n', end_ - pos_);
      const size_t take = nl ? size_t(static_cast<const char*>(nl) - start) : end_ - pos_;
      EP_CHECK(line.size() + take <= kGlueMaxLineBytes, IOError, path_, ":", line_no_ + 1, ": line longer than ",
               kGlueMaxLineBytes, " bytes (not a GLUE TSV?)");
      line.append(start, take);
      pos_ += take;
      if (nl) {
        ++pos_;
        break;
      }
    }
    ++line_no_;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return true;
  }

 private:
  bool fill() {
    if (in_.eof()) return false;
    in_.read(buf_.data(), std::streamsize(buf_.size()));
    EP_CHECK(!in_.bad(), IOError, path_, ":", line_no_ + 1, ": read error");
    pos_ = 0;
    end_ = size_t(in_.gcount());
    return end_ > 0;
  }

  std::string path_;
  std::ifstream in_;
  std::vector<char> buf_;
  size_t pos_ = 0, end_ = 0;
  int64_t line_no_ = 0;
};

void split_tabs(std::string_view line, std::vector<std::string_view>& out) {
  out.clear();
  size_t start = 0;
  for (;;) {
    const size_t tab = line.find('\t', start);
    if (tab == std::string_view::npos) {
      out.push_back(line.substr(start));
      return;
    }
    out.push_back(line.substr(start, tab - start));
    start = tab + 1;
  }
}

void check_header(const std::string& path, const std::string& task, const std::string& split, const Layout& lay,
                  const std::vector<std::string_view>& cols) {
  EP_CHECK(int(cols.size()) == lay.columns, IOError, path, ":1: expected a ", task, " ", split, " header with ",
           lay.columns, " tab-separated columns, got ", cols.size(), " (wrong task or split?)");
  auto expect = [&](int at, const char* name) {
    if (at < 0 || !name) return;
    EP_CHECK(cols[size_t(at)] == name, IOError, path, ":1: expected header column ", at + 1, " to be '", name,
             "' for ", task, " ", split, ", got ", shown(cols[size_t(at)]), " (wrong task or split?)");
  };
  expect(lay.text_a, lay.name_a);
  expect(lay.text_b, lay.name_b);
  expect(lay.label, lay.name_label);
}

float parse_score(const std::string& path, int64_t line, std::string_view field) {
  double v = 0;
  const char* b = field.data();
  const char* e = b + field.size();
  auto [ptr, ec] = std::from_chars(b, e, v);
  EP_CHECK(ec == std::errc() && ptr == e && !field.empty(), IOError, path, ":", line, ": score ", shown(field),
           " is not a number");
  EP_CHECK(std::isfinite(v) && v >= 0.0 && v <= 5.0, IOError, path, ":", line, ": score ", shown(field),
           " is outside STS-B's range [0, 5]");
  return float(v);
}

int64_t parse_label(const std::string& path, int64_t line, const GlueTask& task, std::string_view field) {
  for (size_t k = 0; k < task.label_strings.size(); ++k)
    if (field == task.label_strings[k]) return int64_t(k);
  std::string expected;
  for (size_t k = 0; k < task.label_strings.size(); ++k)
    expected += (k == 0 ? "" : k + 1 == task.label_strings.size() ? " or " : ", ") + task.label_strings[k];
  EP_THROW(IOError, path, ":", line, ": unknown ", task.name, " label ", shown(field), " (expected ", expected, ")");
}

}  // namespace

std::vector<GlueExample> load_glue_file(const GlueTask& task, const std::string& path, const std::string& split) {
  EP_CHECK(std::find(task.splits.begin(), task.splits.end(), split) != task.splits.end(), ValueError, "[glue] ",
           task.name, " has no split '", split, "'");
  std::error_code ec;
  EP_CHECK(fs::exists(path, ec), IOError, path, ": no such file");
  EP_CHECK(fs::is_regular_file(path, ec), IOError, path, ": not a regular file");
  const uintmax_t bytes = fs::file_size(path, ec);
  EP_CHECK(!ec, IOError, path, ": cannot read its size (", ec.message(), ")");
  EP_CHECK(bytes > 0, IOError, path, ": empty file (expected ", task.name, " ", split, " rows)");

  const Layout lay = layout_for(task, split);
  const bool labeled = lay.label >= 0;
  LineReader reader(path);
  std::string line;
  std::vector<std::string_view> cols;
  std::vector<GlueExample> out;
  while (reader.next(line)) {
    const int64_t at = reader.line_no();
    std::string_view text = line;
    if (at == 1 && text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);  // BOM (HF reads utf-8-sig)
    const size_t bad = invalid_utf8_at(text);
    EP_CHECK(bad == std::string_view::npos, IOError, path, ":", at, ": invalid UTF-8 at byte ", bad + 1);
    EP_CHECK(text.find('\r') == std::string_view::npos, IOError, path, ":", at,
             ": stray carriage return inside the line (only \\n or \\r\\n line ends are allowed)");
    EP_CHECK(!text.empty(), IOError, path, ":", at, ": blank line (expected ", lay.columns,
             " tab-separated columns)");
    split_tabs(text, cols);
    if (at == 1 && lay.header) {
      check_header(path, task.name, split, lay, cols);
      continue;
    }
    EP_CHECK(int(cols.size()) == lay.columns, IOError, path, ":", at, ": expected ", lay.columns,
             " tab-separated columns, got ", cols.size(),
             task.name == "qqp" ? " (HF's QqpProcessor would skip this row silently; we do not)" : "");
    GlueExample ex;
    ex.line = at;
    ex.text_a = std::string(cols[size_t(lay.text_a)]);
    if (lay.text_b >= 0) ex.text_b = std::string(cols[size_t(lay.text_b)]);
    if (labeled) {
      const std::string_view field = cols[size_t(lay.label)];
      if (task.regression) ex.score = parse_score(path, at, field);
      else ex.label = parse_label(path, at, task, field);
    }
    out.push_back(std::move(ex));
  }
  EP_CHECK(!out.empty(), IOError, path, ": no examples", lay.header ? " after the header" : "");
  return out;
}

std::vector<GlueExample> load_glue(const GlueTask& task, const std::string& dir, const std::string& split) {
  EP_CHECK(std::find(task.splits.begin(), task.splits.end(), split) != task.splits.end(), ValueError, "[glue] ",
           task.name, " has no split '", split, "'");
  std::string file = split;
  if (task.name == "mnli" && (split == "dev" || split == "test")) file += "_matched";
  return load_glue_file(task, (fs::path(dir) / (file + ".tsv")).string(), file);
}

std::vector<MetricValue> glue_evaluate(const GlueTask& task, std::span<const int64_t> pred,
                                       std::span<const int64_t> gold) {
  EP_CHECK(!task.regression, ValueError, "[glue] ", task.name, " is a regression task: evaluate it with scores");
  std::vector<MetricValue> out;
  for (GlueMetric m : task.metrics) {
    double v = 0;
    switch (m) {
      case GlueMetric::accuracy: v = accuracy(pred, gold); break;
      case GlueMetric::matthews: v = matthews_corrcoef(pred, gold); break;
      case GlueMetric::f1: v = f1_score(pred, gold); break;
      default: EP_THROW(ValueError, "[glue] ", glue_metric_name(m), " needs scores, not class ids");
    }
    out.push_back({glue_metric_name(m), v});
  }
  return out;
}

std::vector<MetricValue> glue_evaluate(const GlueTask& task, std::span<const float> pred,
                                       std::span<const float> gold) {
  EP_CHECK(task.regression, ValueError, "[glue] ", task.name, " is a classification task: evaluate it with class ids");
  std::vector<MetricValue> out;
  for (GlueMetric m : task.metrics) {
    EP_CHECK(m == GlueMetric::pearson || m == GlueMetric::spearman, ValueError, "[glue] ", glue_metric_name(m),
             " needs class ids, not scores");
    out.push_back({glue_metric_name(m), m == GlueMetric::pearson ? pearson(pred, gold) : spearman(pred, gold)});
  }
  return out;
}

}  // namespace ep::data
