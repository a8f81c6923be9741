// json_lines.cpp — opening a run's JSON-lines log fresh or for a resume, and writing its lines.
// Not a reader for users' files: lines here were written by JsonLinesLog, so one that does not parse is simply dropped.
#include "engine/json_lines.h"

#include <filesystem>

#include "engine/check.h"
#include "engine/safetensors.h"  // write_file_atomic

namespace ep {

std::vector<nlohmann::json> JsonLinesLog::open(const std::string& path, const char* key, int64_t keep_through) {
  path_ = path;
  std::string kept;
  std::vector<nlohmann::json> rows;
  if (keep_through >= 0 && std::filesystem::exists(path)) {
    std::ifstream in(path);
    EP_CHECK(in.good(), IOError, path, ": cannot read the log to resume it");
    std::string line;
    while (std::getline(in, line)) {
      // A crash can tear the last line; it and any row of a later step are left out.
      nlohmann::json row = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      const bool keep = row.is_object() && row.contains(key) && row[key].is_number_integer() &&
                        row[key].get<int64_t>() <= keep_through;
      if (keep) {
        kept += line + "\n";
        rows.push_back(std::move(row));
      }
    }
  }
  write_file_atomic(path, kept);
  out_.open(path, std::ios::app);
  EP_CHECK(out_.good(), IOError, path, ": cannot open for appending");
  return rows;
}

void JsonLinesLog::write(const nlohmann::json& row) {
  EP_CHECK(out_.is_open(), IOError, "[json_lines] write before open (", path_.empty() ? "no path" : path_, ")");
  out_ << row.dump() << "\n";
  out_.flush();
  EP_CHECK(out_.good(), IOError, path_, ": write failed");
}

}  // namespace ep
