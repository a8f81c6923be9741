// test_glue.cpp — GLUE loaders on the real CoLA/RTE files and on hand-made TSVs of every task layout, the metrics
// against hand calculations, and the synthetic token task. Not a tokenizer test. Real-data cases print a notice and
// return when ../shared/data is absent.
#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <unistd.h>
#include <vector>

#include "data/glue.h"
#include "data/metrics.h"
#include "data/synthetic_text.h"
#include "engine/check.h"
#include "tests/test_util.h"

using namespace ep;
using namespace ep::data;
namespace fs = std::filesystem;

namespace {

using ep::test::TempDir;
using ep::test::error_of;
using ep::test::contains;

const std::string kGlueDir = "../shared/data/glue";

bool have_dir(const std::string& p) { return ep::test::have_data(p); }

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

int64_t count_label(const std::vector<GlueExample>& xs, int64_t label) {
  int64_t n = 0;
  for (const auto& x : xs) n += x.label == label;
  return n;
}

const std::string kRteHeader = "index\tsentence1\tsentence2\tlabel\n";

}  // namespace

TEST_CASE("glue: task table") {
  CHECK(glue_tasks().size() == 9);
  const GlueTask& cola = glue_task("cola");
  CHECK(cola.folder == "CoLA");
  CHECK(!cola.pair);
  CHECK(cola.metrics.size() == 1);
  CHECK(cola.metrics[0] == GlueMetric::matthews);
  CHECK(glue_task("SST-2").name == "sst2");
  CHECK(glue_task("sts-b").regression);
  CHECK(glue_task("stsb").num_labels == 1);
  const GlueTask& mnli = glue_task("MNLI");
  CHECK(mnli.num_labels == 3);
  CHECK(mnli.label_strings == std::vector<std::string>{"contradiction", "entailment", "neutral"});  // HF order
  CHECK(glue_task("rte").label_strings == std::vector<std::string>{"entailment", "not_entailment"});
  CHECK(glue_task("mrpc").metrics == std::vector<GlueMetric>{GlueMetric::f1, GlueMetric::accuracy});
  CHECK(glue_task("qqp").metrics[0] == GlueMetric::f1);
  CHECK(glue_task("stsb").metrics == std::vector<GlueMetric>{GlueMetric::pearson, GlueMetric::spearman});
  for (const char* t : {"sst2", "qnli", "rte", "wnli"}) CHECK(glue_task(t).metrics[0] == GlueMetric::accuracy);
  for (const auto& t : glue_tasks()) CHECK(t.splits[1].rfind("dev", 0) == 0);  // train_glue's dev split
  CHECK(glue_task("mnli").splits[1] == "dev_matched");
  std::string msg = error_of<ValueError>([] { glue_task("squad"); });
  CHECK(has(msg, "unknown task 'squad'"));
  CHECK(has(msg, "cola"));
}

TEST_CASE("glue: CoLA real files") {
  const std::string dir = kGlueDir + "/CoLA";
  if (!have_dir(dir)) return;
  const GlueTask& task = glue_task("cola");
  auto train = load_glue(task, dir, "train");
  auto dev = load_glue(task, dir, "dev");
  auto test = load_glue(task, dir, "test");
  // Counts and label balance from formats.md A5.
  CHECK(train.size() == 8551);
  CHECK(dev.size() == 1043);  // the copy's last line has no newline
  CHECK(test.size() == 1063);
  CHECK(count_label(train, 1) == 6023);
  CHECK(count_label(train, 0) == 2528);
  CHECK(count_label(dev, 1) == 721);
  CHECK(count_label(dev, 0) == 322);
  CHECK(count_label(test, -1) == 1063);
  // Rows read by eye from the files (no header: row k is line k).
  CHECK(train[0].line == 1);
  CHECK(train[0].text_a == "Our friends won't buy this analysis, let alone the next one we propose.");
  CHECK(train[0].label == 1);
  CHECK(train[0].text_b.empty());
  CHECK(train[17].line == 18);
  CHECK(train[17].text_a == "They drank the pub.");
  CHECK(train[17].label == 0);
  CHECK(train.back().text_a == "Gilgamesh hasn't kissed Ishtar.");
  CHECK(dev[4].text_a == "As you eat the most, you want the least.");
  CHECK(dev[4].label == 0);
  CHECK(dev.back().line == 1043);
  CHECK(dev.back().text_a == "John talked to Bill about himself.");
  CHECK(dev.back().label == 1);
  // test.tsv has a header: row k is line k+1.
  CHECK(test[0].line == 2);
  CHECK(test[0].text_a == "Bill whistled past the house.");
  CHECK(!test[0].labeled());
  CHECK(test.back().text_a == "A picture of himself frightened John.");
}

TEST_CASE("glue: RTE real files") {
  const std::string dir = kGlueDir + "/RTE";
  if (!have_dir(dir)) return;
  const GlueTask& task = glue_task("rte");
  auto train = load_glue(task, dir, "train");
  auto dev = load_glue(task, dir, "dev");
  auto test = load_glue(task, dir, "test");
  CHECK(train.size() == 2490);
  CHECK(dev.size() == 277);
  CHECK(test.size() == 3000);
  CHECK(count_label(train, 0) == 1249);  // entailment
  CHECK(count_label(train, 1) == 1241);
  CHECK(count_label(dev, 0) == 146);
  CHECK(count_label(dev, 1) == 131);
  CHECK(train[0].line == 2);
  CHECK(train[0].text_a == "No Weapons of Mass Destruction Found in Iraq Yet.");
  CHECK(train[0].text_b == "Weapons of Mass Destruction Found in Iraq.");
  CHECK(train[0].label == 1);  // not_entailment
  // Index 50 (line 52) opens with a quote that a quote-aware reader would swallow.
  CHECK(train[50].line == 52);
  CHECK(train[50].text_a.rfind("\"Instead of action on crime, we got the federal long gun reg", 0) == 0);
  CHECK(train[50].text_b == "Garry Breitkreuz is a member of the Conservative Party.");
  CHECK(train[50].label == 0);
  CHECK(train.back().text_b == "U.S. to use Turkish military bases.");
  CHECK(train.back().label == 1);
  CHECK(dev.back().text_b == "Greenpeace director said that peace is terrorism.");
  CHECK(test[0].text_a ==
        "Mangla was summoned after Madhumita's sister Nidhi Shukla, who was the first witness in the case.");
  CHECK(test[0].text_b == "Shukla is related to Mangla.");
  CHECK(test[0].label == -1);
  // The other task's layout is refused on line 1.
  std::string msg = error_of<IOError>([&] { load_glue(glue_task("cola"), dir, "dev"); });
  CHECK(has(msg, "dev.tsv:1:"));
}

TEST_CASE("glue: malformed TSVs name file and line") {
  TempDir tmp;
  const GlueTask& rte = glue_task("rte");
  const GlueTask& cola = glue_task("cola");
  const GlueTask& stsb = glue_task("stsb");
  auto rte_err = [&](const std::string& bytes) {
    tmp.write("dev.tsv", bytes);
    return error_of<IOError>([&] { load_glue(rte, tmp.path.string(), "dev"); });
  };
  auto cola_err = [&](const std::string& bytes) {
    tmp.write("dev.tsv", bytes);
    return error_of<IOError>([&] { load_glue(cola, tmp.path.string(), "dev"); });
  };

  std::string m = rte_err(kRteHeader + "0\ta\tb\tentailment\n1\ta\tb\n");
  CHECK(has(m, "dev.tsv:3: expected 4 tab-separated columns, got 3"));
  m = rte_err(kRteHeader + "0\ta\tb\tentailment\n1\ta\tb\tentailment\textra\n");
  CHECK(has(m, "dev.tsv:3: expected 4 tab-separated columns, got 5"));
  m = rte_err(kRteHeader + "0\ta\tb\tmaybe\n");
  CHECK(has(m, "dev.tsv:2: unknown rte label 'maybe' (expected entailment or not_entailment)"));
  m = rte_err(kRteHeader + "0\ta\tb\tEntailment\n");  // case matters, as in HF's label map
  CHECK(has(m, "dev.tsv:2: unknown rte label"));
  m = rte_err("");
  CHECK(has(m, "dev.tsv: empty file"));
  m = rte_err(kRteHeader);
  CHECK(has(m, "dev.tsv: no examples after the header"));
  m = rte_err("index\tsentence1\tsentence2\n0\ta\tb\n");  // a test file loaded as dev
  CHECK(has(m, "dev.tsv:1: expected a rte dev header with 4 tab-separated columns, got 3"));
  m = rte_err("index\tsentence\tsentence2\tlabel\n0\ta\tb\tentailment\n");
  CHECK(has(m, "dev.tsv:1: expected header column 2 to be 'sentence1'"));
  m = rte_err(kRteHeader + "0\ta\tb\tentailment\n\n1\ta\tb\tentailment\n");
  CHECK(has(m, "dev.tsv:3: blank line"));
  m = rte_err(kRteHeader + "0\ta\tb\tentailment\n1\ta\xC3\x28\tb\tentailment\n");  // C3 28: broken 2-byte sequence
  CHECK(has(m, "dev.tsv:3: invalid UTF-8 at byte 4"));
  m = rte_err(kRteHeader + "0\ta\xED\xA0\x80\tb\tentailment\n");  // an encoded surrogate
  CHECK(has(m, "dev.tsv:2: invalid UTF-8"));
  m = rte_err(kRteHeader + "0\ta\rb\tc\tentailment\n");
  CHECK(has(m, "dev.tsv:2: stray carriage return"));
  m = rte_err(kRteHeader + "0\t" + std::string(kGlueMaxLineBytes, 'x') + "\tb\tentailment\n");
  CHECK(has(m, "dev.tsv:2: line longer than"));

  m = cola_err("gj04\t1\t\tFine.\ngj04\t2\t*\tBad label.\n");
  CHECK(has(m, "dev.tsv:2: unknown cola label '2' (expected 0 or 1)"));
  m = cola_err("gj04\t1\t\tFine.\ngj04\t1\tNo mark column.\n");
  CHECK(has(m, "dev.tsv:2: expected 4 tab-separated columns, got 3"));

  const std::string sts_header =
      "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n";
  auto sts_err = [&](const std::string& score) {
    tmp.write("train.tsv", sts_header + "0\tg\tf\t2012\t0001\tnone\tnone\tA.\tB.\t" + score + "\n");
    return error_of<IOError>([&] { load_glue(stsb, tmp.path.string(), "train"); });
  };
  CHECK(has(sts_err("abc"), "train.tsv:2: score 'abc' is not a number"));
  CHECK(has(sts_err("3.5x"), "train.tsv:2: score '3.5x' is not a number"));
  CHECK(has(sts_err(""), "train.tsv:2: score '' is not a number"));
  CHECK(has(sts_err("5.5"), "train.tsv:2: score '5.5' is outside STS-B's range [0, 5]"));
  CHECK(has(sts_err("-0.5"), "outside STS-B's range"));
  CHECK(has(sts_err("nan"), "train.tsv:2: score 'nan'"));
  CHECK(sts_err("4.750").empty());

  // QQP: a row with missing columns is an error (HF skips it).
  tmp.write("train.tsv", "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n0\t1\t2\tQ1?\tQ2?\t0\n1\t3\t4\tQ3?\n");
  m = error_of<IOError>([&] { load_glue(glue_task("qqp"), tmp.path.string(), "train"); });
  CHECK(has(m, "train.tsv:3: expected 6 tab-separated columns, got 4"));
  CHECK(has(m, "QqpProcessor"));

  m = error_of<IOError>([&] { load_glue(rte, (tmp.path / "nowhere").string(), "train"); });
  CHECK(has(m, "train.tsv: no such file"));
  m = error_of<IOError>([&] { load_glue_file(rte, tmp.path.string(), "train"); });
  CHECK(has(m, "not a regular file"));
  m = error_of<ValueError>([&] { load_glue(rte, tmp.path.string(), "validation"); });
  CHECK(has(m, "rte has no split 'validation'"));
  m = error_of<ValueError>([&] { load_glue(rte, tmp.path.string(), "dev_matched"); });
  CHECK(has(m, "no split 'dev_matched'"));
}

TEST_CASE("glue: line endings, BOM and verbatim quotes") {
  TempDir tmp;
  const GlueTask& rte = glue_task("rte");
  const std::string rows[] = {"0\t\"Quoted\" start\tb one\tentailment", "1\ta \"\"x\"\" y\t\"unbalanced\tnot_entailment"};
  auto load = [&](const std::string& bytes) {
    tmp.write("dev.tsv", bytes);
    return load_glue(rte, tmp.path.string(), "dev");
  };
  auto expect_rows = [&](const std::vector<GlueExample>& xs) {
    REQUIRE(xs.size() == 2);
    CHECK(xs[0].text_a == "\"Quoted\" start");
    CHECK(xs[0].text_b == "b one");
    CHECK(xs[0].label == 0);
    CHECK(xs[0].line == 2);
    CHECK(xs[1].text_a == "a \"\"x\"\" y");
    CHECK(xs[1].text_b == "\"unbalanced");
    CHECK(xs[1].label == 1);
    CHECK(xs[1].line == 3);
  };
  expect_rows(load(kRteHeader + rows[0] + "\n" + rows[1] + "\n"));
  expect_rows(load(kRteHeader + rows[0] + "\n" + rows[1]));  // no final newline
  expect_rows(load("index\tsentence1\tsentence2\tlabel\r\n" + rows[0] + "\r\n" + rows[1] + "\r\n"));
  expect_rows(load("index\tsentence1\tsentence2\tlabel\r\n" + rows[0] + "\r\n" + rows[1]));  // CRLF, no final EOL
  expect_rows(load("\xEF\xBB\xBF" + kRteHeader + rows[0] + "\n" + rows[1] + "\n"));  // BOM (MRPC's files have one)
  // Non-ASCII text survives byte for byte; empty fields are kept (not an error).
  auto xs = load(kRteHeader + "0\tcaf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\t\tentailment\n");
  REQUIRE(xs.size() == 1);
  CHECK(xs[0].text_a == "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80");
  CHECK(xs[0].text_b.empty());
  // A file bigger than the reader's 64 KiB block, with rows straddling block edges.
  std::string big = kRteHeader;
  for (int i = 0; i < 3000; ++i)
    big += std::to_string(i) + "\tsentence number " + std::to_string(i) + "\tb\t" +
           (i % 3 == 0 ? "entailment" : "not_entailment") + "\n";
  xs = load(big);
  REQUIRE(xs.size() == 3000);
  CHECK(xs[2999].text_a == "sentence number 2999");
  CHECK(xs[2999].line == 3001);
  CHECK(count_label(xs, 0) == 1000);
}

TEST_CASE("glue: every task's layout picks HF's columns") {
  TempDir tmp;
  auto load = [&](const char* task, const std::string& split, const std::string& bytes) {
    std::string file = split == "dev" && std::string(task) == "mnli" ? "dev_matched" : split;
    tmp.write(file + ".tsv", bytes);
    return load_glue(glue_task(task), tmp.path.string(), split);
  };
  SUBCASE("sst2") {
    auto xs = load("sst2", "train", "sentence\tlabel\nit 's a charming journey . \t1\nbad \t0\n");
    REQUIRE(xs.size() == 2);
    CHECK(xs[0].text_a == "it 's a charming journey . ");  // trailing space kept verbatim
    CHECK(xs[0].label == 1);
    CHECK(xs[1].label == 0);
    xs = load("sst2", "test", "index\tsentence\n0\tuneasy mishmash .\n");
    CHECK(xs[0].text_a == "uneasy mishmash .");
    CHECK(xs[0].label == -1);
  }
  SUBCASE("mrpc") {
    auto xs = load("mrpc", "train",
                   "\xEF\xBB\xBFQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t702876\t702977\tFirst one .\tSecond one .\n");
    REQUIRE(xs.size() == 1);
    CHECK(xs[0].text_a == "First one .");
    CHECK(xs[0].text_b == "Second one .");
    CHECK(xs[0].label == 1);
    xs = load("mrpc", "test", "index\t#1 ID\t#2 ID\t#1 String\t#2 String\n0\t1089874\t1089925\tA .\tB .\n");
    CHECK(xs[0].text_a == "A .");
    CHECK(xs[0].text_b == "B .");
    CHECK(xs[0].label == -1);
  }
  SUBCASE("qqp") {
    auto xs = load("qqp", "dev", "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n201359\t303345\t303346\tWhy?\tHow?\t1\n");
    CHECK(xs[0].text_a == "Why?");
    CHECK(xs[0].text_b == "How?");
    CHECK(xs[0].label == 1);
    xs = load("qqp", "test", "id\tquestion1\tquestion2\n0\tQ one?\tQ two?\n");
    CHECK(xs[0].text_a == "Q one?");
    CHECK(xs[0].text_b == "Q two?");
  }
  SUBCASE("stsb") {
    auto xs = load("stsb", "dev",
                   "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
                   "0\tmain-captions\tMSRvid\t2012test\t0000\tnone\tnone\tA man with a hard hat is dancing.\t"
                   "A man wearing a hard hat is dancing.\t5.000\n"
                   "1\tmain-captions\tMSRvid\t2012test\t0004\tnone\tnone\tA.\tB.\t3.800\n");
    REQUIRE(xs.size() == 2);
    CHECK(xs[0].text_a == "A man with a hard hat is dancing.");
    CHECK(xs[0].text_b == "A man wearing a hard hat is dancing.");
    CHECK(xs[0].score == 5.0f);
    CHECK(xs[1].score == 3.8f);
    CHECK(xs[0].label == -1);
    CHECK(xs[0].labeled());
    xs = load("stsb", "test",
              "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\n"
              "0\tmain-captions\tMSRvid\t2012test\t0024\tnone\tnone\tX.\tY.\n");
    CHECK(xs[0].text_b == "Y.");
    CHECK(std::isnan(xs[0].score));
    CHECK(!xs[0].labeled());
  }
  SUBCASE("mnli") {
    const std::string pre = "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
                            "sentence1_parse\tsentence2_parse\tsentence1\tsentence2";
    const std::string row = "0\t31193\t31193n\tgovernment\t( ( a ) )\t( b )\t(ROOT (S a))\t(ROOT (S b))\tPremise .\t"
                            "Hypothesis .";
    auto xs = load("mnli", "train", pre + "\tlabel1\tgold_label\n" + row + "\tneutral\tneutral\n");
    CHECK(xs[0].text_a == "Premise .");
    CHECK(xs[0].text_b == "Hypothesis .");
    CHECK(xs[0].label == 2);  // neutral
    const std::string dev_header = pre + "\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n";
    xs = load("mnli", "dev", dev_header + row + "\tneutral\tcontradiction\tcontradiction\tneutral\tcontradiction\tcontradiction\n");
    CHECK(xs[0].label == 0);  // the gold label (last column), not label1
    tmp.write("dev_mismatched.tsv", dev_header + row + "\tentailment\tentailment\tentailment\tentailment\tneutral\tentailment\n");
    xs = load_glue(glue_task("mnli"), tmp.path.string(), "dev_mismatched");
    CHECK(xs[0].label == 1);
    xs = load("mnli", "test_matched", pre + "\n" + row + "\n");
    CHECK(xs[0].text_b == "Hypothesis .");
    CHECK(xs[0].label == -1);
    // A row with an extra tab (a known MNLI/QQP quirk) is an error, not a shifted label.
    std::string m = error_of<IOError>(
        [&] { load("mnli", "train", pre + "\tlabel1\tgold_label\n" + row + "\tx\tneutral\tneutral\n"); });
    CHECK(has(m, "train.tsv:2: expected 12 tab-separated columns, got 13"));
  }
  SUBCASE("qnli, wnli") {
    auto xs = load("qnli", "train", "index\tquestion\tsentence\tlabel\n0\tWhen?\tThen.\tnot_entailment\n");
    CHECK(xs[0].text_a == "When?");
    CHECK(xs[0].text_b == "Then.");
    CHECK(xs[0].label == 1);
    xs = load("wnli", "dev", "index\tsentence1\tsentence2\tlabel\n0\tS1.\tS2.\t1\n");
    CHECK(xs[0].text_b == "S2.");
    CHECK(xs[0].label == 1);
  }
}

TEST_CASE("glue metrics: Matthews correlation against hand-computed confusion matrices") {
  // TP 6, FN 2, FP 1, TN 3: (6·3 − 1·2) / sqrt(7·8·4·5) = 16 / sqrt(1120) = 0.478091...
  std::vector<int64_t> gold = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0};
  std::vector<int64_t> pred = {1, 1, 1, 1, 1, 1, 0, 0, 1, 0, 0, 0};
  BinaryConfusion c = binary_confusion(pred, gold);
  CHECK(c.tp == 6);
  CHECK(c.fn == 2);
  CHECK(c.fp == 1);
  CHECK(c.tn == 3);
  CHECK(matthews_corrcoef(c) == doctest::Approx(0.4780914437).epsilon(1e-9));
  CHECK(matthews_corrcoef(pred, gold) == doctest::Approx(0.4780914437).epsilon(1e-9));
  // sklearn's documented example, with -1 written as 0: MCC = -1/3.
  CHECK(matthews_corrcoef(std::vector<int64_t>{1, 0, 1, 1}, std::vector<int64_t>{1, 1, 1, 0}) ==
        doctest::Approx(-1.0 / 3.0).epsilon(1e-12));
  // Perfect, inverted, and one predicted class only (denominator 0 -> 0 as sklearn).
  CHECK(matthews_corrcoef(gold, gold) == doctest::Approx(1.0));
  std::vector<int64_t> inverted(gold.size());
  for (size_t i = 0; i < gold.size(); ++i) inverted[i] = 1 - gold[i];
  CHECK(matthews_corrcoef(inverted, gold) == doctest::Approx(-1.0));
  std::vector<int64_t> all_ones(gold.size(), 1);
  CHECK(matthews_corrcoef(all_ones, gold) == 0.0);
  CHECK(matthews_corrcoef(BinaryConfusion{0, 0, 0, 5}) == 0.0);
  // GLUE-sized counts: the products exceed 2^31 and must not overflow.
  BinaryConfusion big{300000, 100000, 50000, 250000};
  const double num = 300000.0 * 250000.0 - 100000.0 * 50000.0;  // 7.0e10
  const double den = std::sqrt(400000.0 * 350000.0 * 350000.0 * 300000.0);
  CHECK(matthews_corrcoef(big) == doctest::Approx(num / den).epsilon(1e-12));
  // Three classes. gold 0 0 1 1 2 2, pred 0 1 1 1 2 0: correct c = 4, s = 6, true counts t = (2,2,2), predicted
  // p = (2,3,1): (4·6 − (4+6+2)) / sqrt((36 − 14)(36 − 12)) = 12 / sqrt(528).
  CHECK(matthews_corrcoef(std::vector<int64_t>{0, 1, 1, 1, 2, 0}, std::vector<int64_t>{0, 0, 1, 1, 2, 2}) ==
        doctest::Approx(12.0 / std::sqrt(528.0)).epsilon(1e-12));
  // Labels are a set, not a range: classes 5 and 9 behave as 0 and 1.
  CHECK(matthews_corrcoef(std::vector<int64_t>{9, 5, 9, 9}, std::vector<int64_t>{9, 9, 9, 5}) ==
        doctest::Approx(-1.0 / 3.0).epsilon(1e-12));
  // Bad input.
  CHECK(has(error_of<ValueError>([] { matthews_corrcoef(std::vector<int64_t>{}, std::vector<int64_t>{}); }),
            "empty input"));
  CHECK(has(error_of<ValueError>([] { matthews_corrcoef(std::vector<int64_t>{1}, std::vector<int64_t>{1, 0}); }),
            "1 predictions but 2 references"));
  CHECK(has(error_of<ValueError>([] { accuracy(std::vector<int64_t>{1}, std::vector<int64_t>{-1}); }),
            "unlabeled test example"));
  CHECK(has(error_of<ValueError>([] { binary_confusion(std::vector<int64_t>{2}, std::vector<int64_t>{1}); }),
            "labels must be 0 or 1"));
}

TEST_CASE("glue metrics: accuracy and F1 by hand") {
  std::vector<int64_t> gold = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0};
  std::vector<int64_t> pred = {1, 1, 1, 1, 1, 1, 0, 0, 1, 0, 0, 0};
  CHECK(accuracy(pred, gold) == doctest::Approx(9.0 / 12.0));
  // 2·6 / (2·6 + 1 + 2) = 0.8
  CHECK(f1_score(pred, gold) == doctest::Approx(0.8).epsilon(1e-12));
  // precision 1/3, recall 1/2: F1 = 2·(1/6)/(5/6) = 0.4
  CHECK(f1_score(std::vector<int64_t>{1, 1, 1, 0}, std::vector<int64_t>{1, 0, 0, 1}) == doctest::Approx(0.4));
  CHECK(f1_score(std::vector<int64_t>{0, 0}, std::vector<int64_t>{0, 0}) == 0.0);  // no positive anywhere
  CHECK(f1_score(std::vector<int64_t>{0, 0}, std::vector<int64_t>{1, 1}) == 0.0);
  CHECK(accuracy(std::vector<int64_t>{2, 0, 1}, std::vector<int64_t>{2, 1, 1}) == doctest::Approx(2.0 / 3.0));
}

TEST_CASE("glue metrics: Pearson and Spearman by hand") {
  // x 1..5, y 2 4 5 4 5: dx -2 -1 0 1 2, dy -2 0 1 0 1 -> Sxy 6, Sxx 10, Syy 6, r = 6/sqrt(60).
  std::vector<double> x = {1, 2, 3, 4, 5}, y = {2, 4, 5, 4, 5};
  CHECK(pearson(x, y) == doctest::Approx(6.0 / std::sqrt(60.0)).epsilon(1e-12));
  std::vector<float> xf = {1, 2, 3, 4, 5}, yf = {2, 4, 5, 4, 5};
  CHECK(pearson(xf, yf) == doctest::Approx(6.0 / std::sqrt(60.0)).epsilon(1e-7));
  CHECK(pearson(x, std::vector<double>{10, 8, 6, 4, 2}) == doctest::Approx(-1.0));
  CHECK(pearson(x, std::vector<double>{3, 3, 3, 3, 3}) == 0.0);  // constant: 0 (scipy: NaN), see metrics.h

  CHECK(average_ranks(std::vector<double>{10, 20, 20, 30}) == std::vector<double>{1, 2.5, 2.5, 4});
  CHECK(average_ranks(std::vector<double>{7, 7, 7}) == std::vector<double>{2, 2, 2});
  CHECK(average_ranks(std::vector<double>{3, 1, 2}) == std::vector<double>{3, 1, 2});
  // x 3 1 4 1 5 -> ranks 3 1.5 4 1.5 5; y 9 2 6 5 3 -> ranks 5 1 4 3 2. Centred: (0 -1.5 1 -1.5 2), (2 -2 1 0 -1):
  // S = 2, Sxx = 9.5, Syy = 10 -> rho = 2 / sqrt(95).
  CHECK(spearman(std::vector<double>{3, 1, 4, 1, 5}, std::vector<double>{9, 2, 6, 5, 3}) ==
        doctest::Approx(2.0 / std::sqrt(95.0)).epsilon(1e-12));
  // Monotone but not linear: rho 1 while r < 1.
  std::vector<double> cube = {1, 8, 27, 64, 125};
  CHECK(spearman(x, cube) == doctest::Approx(1.0));
  CHECK(pearson(x, cube) < 0.99);
  CHECK(spearman(x, std::vector<double>{1, 1, 1, 1, 1}) == 0.0);

  CHECK(has(error_of<ValueError>([] { pearson(std::vector<double>{}, std::vector<double>{}); }), "empty input"));
  CHECK(has(error_of<ValueError>([] { spearman(std::vector<double>{1, NAN}, std::vector<double>{1, 2}); }),
            "x 1 is not finite"));
  CHECK(has(error_of<ValueError>([] { pearson(std::vector<double>{1, 2}, std::vector<double>{1}); }),
            "2 predictions but 1 references"));
}

TEST_CASE("glue: glue_evaluate dispatches each task's metrics") {
  std::vector<int64_t> gold = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0};
  std::vector<int64_t> pred = {1, 1, 1, 1, 1, 1, 0, 0, 1, 0, 0, 0};
  auto cola = glue_evaluate(glue_task("cola"), pred, gold);
  REQUIRE(cola.size() == 1);
  CHECK(cola[0].name == "mcc");
  CHECK(cola[0].value == doctest::Approx(16.0 / std::sqrt(1120.0)));
  auto mrpc = glue_evaluate(glue_task("mrpc"), pred, gold);
  REQUIRE(mrpc.size() == 2);
  CHECK(mrpc[0].name == "f1");
  CHECK(mrpc[0].value == doctest::Approx(0.8));
  CHECK(mrpc[1].name == "accuracy");
  CHECK(mrpc[1].value == doctest::Approx(0.75));
  std::vector<float> sp = {1, 2, 3, 4, 5}, sg = {2, 4, 5, 4, 5};
  auto sts = glue_evaluate(glue_task("stsb"), sp, sg);
  REQUIRE(sts.size() == 2);
  CHECK(sts[0].name == "pearson");
  CHECK(sts[0].value == doctest::Approx(6.0 / std::sqrt(60.0)).epsilon(1e-6));
  CHECK(sts[1].name == "spearman");
  CHECK(has(error_of<ValueError>([&] { glue_evaluate(glue_task("stsb"), pred, gold); }), "regression task"));
  CHECK(has(error_of<ValueError>([&] { glue_evaluate(glue_task("rte"), sp, sg); }), "classification task"));
}

TEST_CASE("glue synthetic text: determinism, specials, ranges, balance and the rule") {
  const int64_t vocab = 64, n = 2000, min_len = 6, max_len = 40;
  auto a = make_synthetic_text(n, vocab, min_len, max_len, 7);
  auto b = make_synthetic_text(n, vocab, min_len, max_len, 7);
  auto other = make_synthetic_text(n, vocab, min_len, max_len, 8);
  auto prefix = make_synthetic_text(10, vocab, min_len, max_len, 7);
  REQUIRE(a.size() == size_t(n));
  int64_t same_as_other = 0, ones = 0;
  std::set<size_t> lengths;
  std::vector<double> len_of, label_of;
  for (int64_t i = 0; i < n; ++i) {
    const auto& ex = a[size_t(i)];
    CHECK(ex.ids == b[size_t(i)].ids);
    CHECK(ex.label == b[size_t(i)].label);
    same_as_other += ex.ids == other[size_t(i)].ids;
    if (i < 10) CHECK(ex.ids == prefix[size_t(i)].ids);  // example i does not depend on n
    REQUIRE(ex.ids.size() >= size_t(min_len));
    REQUIRE(ex.ids.size() <= size_t(max_len));
    lengths.insert(ex.ids.size());
    CHECK(ex.ids.front() == 0);
    CHECK(ex.ids.back() == 2);
    // Group A = [4, 19), B = [19, 34) for vocab 64 ((64 - 4) / 4 = 15); counted here independently of the library.
    int64_t count_a = 0, count_b = 0;
    for (size_t p = 1; p + 1 < ex.ids.size(); ++p) {
      const int64_t id = ex.ids[p];
      CHECK((id >= 4 && id < vocab));
      count_a += id >= 4 && id < 19;
      count_b += id >= 19 && id < 34;
    }
    CHECK((count_a + count_b) % 2 == 1);
    CHECK(count_a + count_b <= 7);
    CHECK(ex.label == (count_a > count_b ? 1 : 0));
    ones += ex.label;
    len_of.push_back(double(ex.ids.size()));
    label_of.push_back(double(ex.label));
  }
  CHECK(same_as_other < n / 20);
  CHECK(ones == n / 2);
  CHECK(lengths.size() == size_t(max_len - min_len + 1));  // every length occurs: padding is exercised
  CHECK(std::abs(pearson(len_of, label_of)) < 0.1);        // the length says nothing about the label
  CHECK(synthetic_text_group(4, vocab) == 0);
  CHECK(synthetic_text_group(18, vocab) == 0);
  CHECK(synthetic_text_group(19, vocab) == 1);
  CHECK(synthetic_text_group(33, vocab) == 1);
  CHECK(synthetic_text_group(34, vocab) == -1);
  CHECK(synthetic_text_group(2, vocab) == -1);

  // The smallest legal settings: length 3 holds one content token, which must be a signal token.
  auto tiny = make_synthetic_text(50, 8, 3, 3, 1);
  for (const auto& ex : tiny) {
    REQUIRE(ex.ids.size() == 3);
    CHECK(ex.ids[1] == (ex.label == 1 ? 4 : 5));
  }
  CHECK(has(error_of<ValueError>([] { make_synthetic_text(4, 7, 3, 5, 0); }), "vocab must be >= 8"));
  CHECK(has(error_of<ValueError>([] { make_synthetic_text(4, 64, 2, 5, 0); }), "min_len"));
  CHECK(has(error_of<ValueError>([] { make_synthetic_text(4, 64, 6, 5, 0); }), "min_len"));
  CHECK(make_synthetic_text(0, 64, 3, 5, 0).empty());
}
