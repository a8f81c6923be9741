// json_lines.h — a run's JSON-lines log (metrics.jsonl, compression.jsonl): one object per line, flushed at once.
// Not a general logger: a file belongs to one run; a fresh run starts it empty, a resume keeps what it won't redo.
#pragma once
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ep {

class JsonLinesLog {
 public:
  JsonLinesLog() = default;  // closed: write() throws until open()
  // Opens `path` for this run. keep_through < 0: a fresh run, the file starts empty (a previous run's lines in the
  // same --out would otherwise mix with this run's). keep_through >= 0: a resumed run; lines whose integer field `key`
  // is <= keep_through are kept, the rest (steps about to be redone, a line torn by a crash) are dropped, rewriting
  // the file atomically, and new lines are appended. Returns the kept rows. Throws IOError naming the path.
  std::vector<nlohmann::json> open(const std::string& path, const char* key, int64_t keep_through);
  void write(const nlohmann::json& row);  // one line, flushed; not thread-safe (callers serialize)

 private:
  std::string path_;
  std::ofstream out_;
};

}  // namespace ep
