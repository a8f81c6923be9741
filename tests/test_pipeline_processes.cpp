// test_pipeline_processes.cpp — pipelines across processes: the wire format of boundary messages (tensors and
// compressed payloads, corrupt input rejected), and `mpirun -np S build/train_cv|train_glue ... --distributed mpi`
// giving the single-process pipeline's losses bit for bit (plain, compressed with top-k masks crossing processes,
// an emulated link, 1F1B, recomputation, resume from per-rank checkpoints), a failing rank ending the job at once and
// a hung rank ending it after --peer-timeout, and kill -9 of any rank ending the others. The MPI cases skip without
// an MPI build or mpirun.
// Not the in-process executor (test_pipeline_workers.cpp) nor the trainers' single-process pipeline tests.
#include <doctest/doctest.h>

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "compress/compressor.h"
#include "engine/ops.h"
#include "pipeline/compress_hook.h"
#include "pipeline/transport.h"
#include "pipeline/wire.h"
#include "tests/app_runner.h"
#include "tests/test_util.h"

using namespace ep;
using namespace ep::pipeline;

TEST_CASE("pipeline wire: tensors of every dtype and rank round-trip; malformed messages are rejected") {
  for (DType dt : {DType::f32, DType::f64, DType::f16, DType::bf16, DType::u8, DType::i8, DType::i16, DType::i32,
                   DType::i64}) {
    INFO(dtype_name(dt));
    const Tensor t = test::randn({2, 3, 4}, 7, DType::f64).to(dt);
    const std::vector<uint8_t> w = tensor_to_wire(t);
    CHECK(w.size() == 8 + 3 * 8 + t.nbytes());  // header, dims, elements: nothing else travels
    const Tensor back = tensor_from_wire(w.data(), w.size(), "test");
    CHECK(back.dtype() == dt);
    CHECK(back.shape() == t.shape());
    CHECK(back.to_double_vector() == t.to_double_vector());
  }
  const Tensor scalar = from_vector({2.5}, {});
  const auto ws = tensor_to_wire(scalar);
  CHECK(tensor_from_wire(ws.data(), ws.size(), "test").item() == 2.5);
  const Tensor empty0 = empty({0, 5}, DType::f32);
  const auto we = tensor_to_wire(empty0);
  CHECK(tensor_from_wire(we.data(), we.size(), "test").shape() == Shape{0, 5});

  const std::vector<uint8_t> good = tensor_to_wire(test::randn({3, 5}, 8, DType::f32));
  auto fails = [](std::vector<uint8_t> w, const char* what) {
    INFO(what);
    CHECK_THROWS_AS(tensor_from_wire(w.data(), w.size(), "test"), Error);
  };
  fails({good.begin(), good.end() - 1}, "one element byte missing");
  fails({good.begin(), good.begin() + 12}, "a dimension cut short");
  auto bad = good;
  bad[0] = 'X';
  fails(bad, "magic");
  bad = good;
  bad[4] = 200;
  fails(bad, "dtype code");
  bad = good;
  bad[5] = 9;
  fails(bad, "rank above 8");
  bad = good;
  for (int i = 0; i < 8; ++i) bad[8 + size_t(i)] = 0xff;  // dimension 0 = 2^64 - 1: must not allocate
  fails(bad, "a huge dimension");
  bad = good;
  bad.push_back(0);
  fails(bad, "a trailing byte");
  CHECK_THROWS_WITH_AS(tensor_from_wire(good.data(), 7, "boundary message"), doctest::Contains("boundary message"),
                       Error);
}

TEST_CASE("pipeline wire: a compressing boundary sends the payload's own bytes; decode after the trip is unchanged") {
  const Tensor x = test::randn({4, 6, 5}, 9, DType::f32);
  for (const char* spec : {"quant:bits=8", "sortquant:bits=6,split=2", "topk:ratio=0.3", "fp8"}) {
    INFO(spec);
    CompressorHook sender(compress::parse_compressor(spec), compress::parse_compressor(spec));
    CompressorHook receiver(compress::parse_compressor(spec), compress::parse_compressor(spec));
    const Message m = sender.encode(x, Pass::forward, 0);
    const std::vector<uint8_t> w = sender.to_wire(m, Pass::forward, 0);
    CHECK(w.size() == m.bytes);  // what the statistics count is what travels
    const Message arrived = receiver.from_wire(w.data(), w.size(), Pass::forward, 0);
    CHECK(arrived.bytes == m.bytes);
    const Tensor here = sender.decode(m, Pass::forward, Device::cpu(), 0);
    const Tensor there = receiver.decode(arrived, Pass::forward, Device::cpu(), 0);
    CHECK(there.to_double_vector() == here.to_double_vector());
    std::vector<uint8_t> cut(w.begin(), w.end() - 1);
    CHECK_THROWS(receiver.from_wire(cut.data(), cut.size(), Pass::forward, 0));
  }
  // Top-k gradients at the forward's positions: the receiving process learns them from the forward payload, so its
  // backward payload equals the one a single process (whose encoder remembered the mask) makes.
  CompressorHook one(compress::parse_compressor("topk:ratio=0.3"), compress::parse_compressor("topk:ratio=0.3"));
  CompressorHook fwd_side(compress::parse_compressor("topk:ratio=0.3"), compress::parse_compressor("topk:ratio=0.3"));
  CompressorHook bwd_side(compress::parse_compressor("topk:ratio=0.3"), compress::parse_compressor("topk:ratio=0.3"));
  const Tensor g = test::randn({4, 6, 5}, 10, DType::f32);
  const Message m1 = one.encode(x, Pass::forward, 3);
  one.decode(m1, Pass::forward, Device::cpu(), 3);
  const std::vector<uint8_t> g1 = one.to_wire(one.encode(g, Pass::backward, 3), Pass::backward, 3);
  const Message m2 = fwd_side.encode(x, Pass::forward, 3);
  const std::vector<uint8_t> w2 = fwd_side.to_wire(m2, Pass::forward, 3);
  bwd_side.decode(bwd_side.from_wire(w2.data(), w2.size(), Pass::forward, 3), Pass::forward, Device::cpu(), 3);
  const std::vector<uint8_t> g2 = bwd_side.to_wire(bwd_side.encode(g, Pass::backward, 3), Pass::backward, 3);
  CHECK(g1 == g2);
}

namespace {

// mpirun when this build has MPI and the launcher is installed; "" (and a notice) otherwise.
std::string mpirun() {
  static const std::string cmd = [] {
    if (!mpi_built()) {
      std::printf("MPI pipeline cases skipped: built without MPI (install libopenmpi-dev: make deps)\n");
      return std::string();
    }
    if (std::system("command -v mpirun >/dev/null 2>&1") != 0) {
      std::printf("MPI pipeline cases skipped: mpirun not found (install openmpi-bin: make deps)\n");
      return std::string();
    }
    // Root in containers and CI; more ranks than cores on a small machine; no core binding, so every process gets
    // the same number of OpenMP threads as the single-process run it is compared with; TCP over loopback, which
    // needs neither a sized /dev/shm nor a network (containers may lack both).
    // Under AddressSanitizer (make SANITIZE=address) the ranks skip the exit-time leak check: OpenMPI leaves its
    // own allocations (plugins it has unloaded, MPI_Init's tables) to the OS, which LeakSanitizer would report.
#ifdef __SANITIZE_ADDRESS__
    const std::string sanitizer = "-x ASAN_OPTIONS=detect_leaks=0 ";
#else
    const std::string sanitizer;
#endif
    return std::string("mpirun --allow-run-as-root --oversubscribe --bind-to none --mca btl self,tcp "
                       "--mca btl_tcp_if_include lo -x OMP_NUM_THREADS=1 ") + sanitizer;
  }();
  return cmd;
}

const char* kCv = "--data synthetic --synthetic-size 256 --batch-size 60 --width 0.25 --epochs 1 --max-steps 3 "
                  "--log-steps --split-fine --chunks 4 ";
const char* kGlue = "--synthetic-size 256 --batch-size 30 --lr 1e-3 --epochs 1 --max-steps 3 --log-steps "
                    "--split-fine --chunks 4 ";

std::map<int, std::string> single(const std::string& app, const std::string& args) {
  test::AppRun r = test::run_command("OMP_NUM_THREADS=1 " + test::app_path(app) + " " + args);
  REQUIRE_MESSAGE(r.status == 0, r.out);
  return test::step_losses(r.out);
}

std::map<int, std::string> distributed(const std::string& app, int ranks, const std::string& args) {
  test::AppRun r = test::run_command("timeout 300 " + mpirun() + "-np " + std::to_string(ranks) + " " +
                                     test::app_path(app) + " " + args + " --distributed mpi");
  REQUIRE_MESSAGE(r.status == 0, r.out);
  return test::step_losses(r.out);
}

// compression.jsonl rows of a run folder and its rank folders, keyed by (step, boundary, direction), each key's rows
// in file order (one per micro-batch, in the order the sending stage encoded them).
std::map<std::tuple<int, int, std::string>, std::vector<nlohmann::json>> compression_rows(const std::string& dir) {
  std::map<std::tuple<int, int, std::string>, std::vector<nlohmann::json>> rows;
  std::map<std::tuple<int, int, std::string>, std::string> file_of;
  for (const std::string& d : {dir, dir + "/rank1", dir + "/rank2", dir + "/rank3"}) {
    std::ifstream in(d + "/compression.jsonl");
    for (std::string line; std::getline(in, line);) {
      auto j = nlohmann::json::parse(line);
      auto key = std::make_tuple(j["step"].get<int>(), j["boundary"].get<int>(), j["direction"].get<std::string>());
      CHECK_MESSAGE(file_of.emplace(key, d).first->second == d, "one boundary direction logged by two processes");
      rows[key].push_back(j);
    }
  }
  return rows;
}

// The processes of MPI rank `rank` (any rank for -1) whose command line mentions `marker`, read from /proc, so no
// procps is needed.
std::vector<pid_t> rank_processes(const std::string& marker, int rank) {
  auto read_all = [](const std::filesystem::path& f) {
    std::ifstream in(f, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  };
  const std::string want = "OMPI_COMM_WORLD_RANK=" + (rank < 0 ? std::string() : std::to_string(rank) + '\0');
  std::vector<pid_t> pids;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string pid = entry.path().filename().string();
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    if (read_all(entry.path() / "cmdline").find(marker) == std::string::npos) continue;
    const std::string env = '\0' + read_all(entry.path() / "environ") + '\0';  // NUL-separated VAR=value entries
    if (env.find('\0' + want) != std::string::npos) pids.push_back(pid_t(std::stol(pid)));
  }
  return pids;
}

// Sends `signal` to the processes of MPI rank `rank` running with `marker` in their command line; returns how many.
int signal_rank(const std::string& marker, int rank, int signal) {
  int sent = 0;
  for (pid_t pid : rank_processes(marker, rank)) sent += kill(pid, signal) == 0;
  return sent;
}

}  // namespace

TEST_CASE("pipeline processes: mpirun train_cv / train_glue == the single-process pipeline, bit for bit") {
  if (!test::have_app("train_cv") || !test::have_app("train_glue") || mpirun().empty()) return;
  const std::string d = test::fresh_tmp_path("pipe_mpi");
  // MobileNetV2 edge | cloud | edge (deferred BatchNorm), three processes.
  const auto one = single("train_cv", std::string(kCv) + "--split 1,1 --out " + d + "/single");
  REQUIRE(one.size() == 3);
  CHECK(distributed("train_cv", 3, std::string(kCv) + "--split 1,1 --out " + d + "/dist") == one);
  // Rank 0 writes the usual run folder; the others write theirs under rank<r>/.
  CHECK(std::filesystem::exists(d + "/dist/summary.json"));
  CHECK(std::filesystem::exists(d + "/dist/rank2/checkpoint.safetensors"));
  // Rank 0's statistics cover every stage and boundary: the same bytes as the single process, every stage's tasks.
  auto last_step = [](const std::string& dir) {
    std::ifstream in(dir + "/summary.json");
    return nlohmann::json::parse(in)["pipeline_last_step"];
  };
  const nlohmann::json ps = last_step(d + "/single"), pd = last_step(d + "/dist");
  CHECK(pd["boundaries"] == ps["boundaries"]);
  REQUIRE(pd["stages"].size() == 3);
  for (const auto& stage : pd["stages"]) {
    CHECK(stage["tasks"] == 8);  // 4 micro-batches, forward and backward
    CHECK(stage["busy_ms"].get<double>() > 0);
  }
  // An emulated link between the processes (one machine): the same losses, and no step shorter than the time the
  // first boundary's forward bytes take on the link.
  CHECK(distributed("train_cv", 3, std::string(kCv) + "--split 1,1 --link 20Mbit,1ms --out " + d + "/dist_link") == one);
  {
    const nlohmann::json pl = last_step(d + "/dist_link");
    const double wire_ms = pl["boundaries"][0]["forward_bytes"].get<double>() * 8 / 20e6 * 1000;
    CHECK(wire_ms > 100);  // the test means something: the link costs more than noise
    CHECK(pl["step_ms"].get<double>() >= wire_ms);
  }
  // 1F1B with recomputation, four processes.
  CHECK(distributed("train_cv", 4, std::string(kCv) + "--stages 3,8,6,4 --pipeline-schedule 1f1b --checkpoint always "
                                                      "--out " + d + "/dist4") ==
        single("train_cv", std::string(kCv) + "--stages 3,8,6,4 --pipeline-schedule 1f1b --out " + d + "/single4"));
  // Compressed boundaries: the payloads cross processes, top-k gradients use the positions the forward payload
  // carried, and the statistics each process logs for what it sent add up to the single process's.
  for (const char* spec : {"sortquant:bits=6,split=2", "topk:ratio=0.5"}) {
    INFO(spec);
    const std::string c = std::string(kCv) + "--split 1,1 --compress " + spec + " --out ";
    const auto s = single("train_cv", c + d + "/single_c");
    CHECK(distributed("train_cv", 3, c + d + "/dist_c") == s);
    CHECK(s != one);
    const auto a = compression_rows(d + "/single_c"), b = compression_rows(d + "/dist_c");
    CHECK(a.size() == 12);  // 3 steps x 2 boundaries x 2 directions, 4 micro-batches each
    for (const auto& [key, r] : a) CHECK(r.size() == 4);
    CHECK(a == b);
    std::filesystem::remove_all(d + "/single_c");
    std::filesystem::remove_all(d + "/dist_c");
  }
  // RoBERTa with dropout and padding masks, four processes, gradients clipped by the norm over every process's
  // parameters (each clipping by its own stage's norm gave other bits; the clipping does change them).
  const auto glue_single = single("train_glue", std::string(kGlue) + "--stages 1,2,2,1 --clip-norm 0.05 --out " + d +
                                                    "/glue_single");
  CHECK(distributed("train_glue", 4, std::string(kGlue) + "--stages 1,2,2,1 --clip-norm 0.05 --out " + d +
                                         "/glue_dist") == glue_single);
  CHECK(single("train_glue", std::string(kGlue) + "--stages 1,2,2,1 --out " + d + "/glue_unclipped") != glue_single);
  std::filesystem::remove_all(d);
}

TEST_CASE("pipeline processes: an epoch's last batch shorter than --chunks, in every process alike, as in one") {
  if (!test::have_app("train_cv") || mpirun().empty()) return;
  const std::string d = test::fresh_tmp_path("pipe_mpi_short");
  // 256 rows in batches of 60 end with 16, fewer than --chunks 20; the 51 test rows too. Every rank sees the rows,
  // so all of them reschedule at that step (a retry after running out of memory could not).
  const std::string args = "--data synthetic --synthetic-size 256 --batch-size 60 --width 0.25 --epochs 1 --log-steps "
                           "--split-fine --split 1,1 --chunks 20 ";
  const auto one = single("train_cv", args + "--out " + d + "/single");
  REQUIRE(one.size() == 5);
  CHECK(distributed("train_cv", 3, args + "--out " + d + "/dist") == one);
  std::filesystem::remove_all(d);
}

TEST_CASE("pipeline processes: resume from per-rank checkpoints continues the run exactly") {
  if (!test::have_app("train_cv") || mpirun().empty()) return;
  const std::string d = test::fresh_tmp_path("pipe_mpi_resume");
  const std::string base = "--data synthetic --synthetic-size 256 --batch-size 60 --width 0.25 --epochs 2 --log-steps "
                           "--split-fine --split 1,1 --chunks 3 ";
  const auto whole = distributed("train_cv", 3, base + "--max-steps 6 --out " + d + "/whole");
  REQUIRE(whole.size() == 6);
  const auto first = distributed("train_cv", 3, base + "--max-steps 3 --out " + d + "/part");
  const auto rest = distributed("train_cv", 3, base + "--max-steps 6 --resume " + d + "/part/checkpoint.safetensors "
                                                      "--out " + d + "/part");
  std::map<int, std::string> joined = first;
  joined.insert(rest.begin(), rest.end());
  CHECK(joined == whole);
  std::filesystem::remove_all(d);
}

TEST_CASE("pipeline processes: a failing rank ends the whole job at once; a hung rank ends it after --peer-timeout") {
  if (!test::have_app("train_cv") || mpirun().empty()) return;
  const std::string d = test::fresh_tmp_path("pipe_mpi_fail");
  const std::string base = "--data synthetic --synthetic-size 256 --batch-size 60 --width 0.25 --epochs 1 "
                           "--split-fine --split 1,1 --chunks 3 ";
  distributed("train_cv", 3, base + "--max-steps 1 --out " + d);
  // Rank 1 cannot read its checkpoint: it fails at start; the others, waiting for it, are ended with it.
  std::filesystem::remove(d + "/rank1/checkpoint.safetensors");
  auto t0 = std::chrono::steady_clock::now();
  test::AppRun r = test::run_command("timeout 120 " + mpirun() + "-np 3 " + test::app_path("train_cv") + " " + base +
                                     "--peer-timeout 100 --resume " + d + "/checkpoint.safetensors --out " + d +
                                     " --distributed mpi");
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(r.status != 0);
  CHECK(r.status != 124);  // not the outer timeout
  CHECK(s < 60);           // well before the peer timeout: the failing rank ended the job
  CHECK(r.out.find("rank1/checkpoint.safetensors") != std::string::npos);

  // Rank 1 stops (SIGSTOP: alive but silent, like a hung machine): its neighbours give up after --peer-timeout 3.
  const std::string out = d + "/hung";
  const std::string cmd = "timeout 120 " + mpirun() + "-np 3 " + test::app_path("train_cv") + " " + base +
                          "--synthetic-size 2000 --epochs 5 --peer-timeout 3 --out " + out + " --distributed mpi";
  std::thread stopper([&] {
    // Wait until rank 1 is running (its run folder appears), then stop it by its MPI rank.
    for (int i = 0; i < 200 && !std::filesystem::exists(out + "/rank1/config.json"); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    CHECK(signal_rank(out, 1, SIGSTOP) == 1);
  });
  t0 = std::chrono::steady_clock::now();
  r = test::run_command(cmd);
  stopper.join();
  s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(r.status != 0);
  CHECK(r.status != 124);
  CHECK(s < 60);
  // A neighbour names the silent rank, waiting either for its message or for it to take one (which of the two
  // times out first depends on where rank 1 stopped).
  CHECK_MESSAGE((r.out.find("from rank 1 within 3 s") != std::string::npos ||
                 r.out.find("to rank 1 not delivered within 3 s") != std::string::npos),
                r.out);
  std::filesystem::remove_all(d);
}

TEST_CASE("pipeline processes: kill -9 of any rank of 2, 3 or 4 mid-run ends every survivor, non-zero, in time") {
  if (!test::have_app("train_cv") || mpirun().empty()) return;
  const std::string d = test::fresh_tmp_path("pipe_mpi_kill");
  const double peer_timeout = 30;  // reliability.md goal 8's bar in tests
  const std::string base = "--data synthetic --synthetic-size 2000 --batch-size 60 --width 0.25 --epochs 5 "
                           "--split-fine --chunks 3 --peer-timeout 30 ";
  for (const auto& [ranks, stages] : std::vector<std::pair<int, std::string>>{
           {2, "--stages 10,11"}, {3, "--split 1,1"}, {4, "--stages 3,8,6,4"}}) {
    for (int victim = 0; victim < ranks; ++victim) {
      INFO(ranks, " ranks, rank ", victim, " killed");
      const std::string out = d + "/np" + std::to_string(ranks) + "_kill" + std::to_string(victim);
      std::chrono::steady_clock::time_point killed_at;
      int killed = 0;
      std::thread killer([&] {
        // Every rank has started once its run folder exists; a second later they are inside training steps (the
        // whole run would take many more seconds).
        auto started = [&] {
          for (int r = 0; r < ranks; ++r)
            if (!std::filesystem::exists(out + (r == 0 ? "" : "/rank" + std::to_string(r)) + "/config.json"))
              return false;
          return true;
        };
        for (int i = 0; i < 1200 && !started(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
        std::this_thread::sleep_for(std::chrono::seconds(1));
        killed = signal_rank(out, victim, SIGKILL);
        killed_at = std::chrono::steady_clock::now();
      });
      test::AppRun r = test::run_command("timeout 180 " + mpirun() + "-np " + std::to_string(ranks) + " " +
                                         test::app_path("train_cv") + " " + base + stages + " --out " + out +
                                         " --distributed mpi");
      const auto ended = std::chrono::steady_clock::now();
      killer.join();
      REQUIRE_MESSAGE(killed == 1, r.out);  // the victim was found while the job ran
      CHECK(r.status != 0);
      CHECK(r.status != 124);  // not the outer timeout
      CHECK(std::chrono::duration<double>(ended - killed_at).count() < peer_timeout);
      CHECK(rank_processes(out, -1).empty());  // no survivor left running
    }
  }
  std::filesystem::remove_all(d);
}

TEST_CASE("pipeline processes: bad --distributed use gets one line and exit 2") {
  if (!test::have_app("train_cv")) return;
  const std::string d = test::fresh_tmp_path("pipe_mpi_bad");
  const std::string base = "--data synthetic --synthetic-size 64 --batch-size 30 --width 0.25 --max-steps 1 "
                           "--split-fine --out " + d + " ";
  for (const char* bad : {"--split 1,1 --chunks 2 --distributed tcp",          // unknown mode
                          "--split 1,1 --distributed mpi",                     // no pipeline
                          "--split 1,1 --chunks 2 --distributed mpi"}) {      // not started by mpirun (or no MPI)
    INFO(bad);
    test::AppRun r = test::run_app("train_cv", base + bad);
    CHECK(r.status == 2);
    CHECK(r.out.find("--distributed") != std::string::npos);
    CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 1);
  }
  if (!mpirun().empty()) {  // two processes for three stages: every rank says so, and the job ends
    test::AppRun r = test::run_command("timeout 120 " + mpirun() + "-np 2 " + test::app_path("train_cv") + " " + base +
                                       "--split 1,1 --chunks 2 --distributed mpi");
    CHECK(r.status == 2);
    CHECK(r.out.find("3 stages need 3 processes (mpirun -np 3), this job has 2") != std::string::npos);
  }
  std::filesystem::remove_all(d);
}
