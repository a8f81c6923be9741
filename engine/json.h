// json.h — JSON text into nlohmann::json with the nesting depth capped while parsing, for every file a user hands us
// (--config, config.json, model.safetensors.index.json). Not a schema: callers check the fields they read.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "engine/check.h"

namespace ep {

// nlohmann parses and destroys iteratively, but its copy constructor and dump() recurse: a 100,000-deep array parses,
// then overflows the stack when an error message dumps it (reliability.md §3, nlohmann/json#5387). No file we read
// nests more than a few levels, so the cap costs nothing legitimate.
inline constexpr int kMaxJsonDepth = 16;

// Throws Err "<origin>: not valid JSON (<parser message>)" or "<origin>: JSON nested deeper than 16 levels".
template <class Err = ValueError>
nlohmann::json parse_json_capped(const std::string& text, const std::string& origin, int max_depth = kMaxJsonDepth) {
  bool too_deep = false;
  auto cap = [&](int depth, nlohmann::json::parse_event_t ev, nlohmann::json&) {
    if ((ev == nlohmann::json::parse_event_t::object_start || ev == nlohmann::json::parse_event_t::array_start) &&
        depth >= max_depth)
      too_deep = true;
    return !too_deep;  // false discards the value instead of building it deeper
  };
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text, cap);
  } catch (const nlohmann::json::exception& e) {
    if (!too_deep) EP_THROW(Err, origin, ": not valid JSON (", e.what(), ")");
  }
  EP_CHECK(!too_deep, Err, origin, ": JSON nested deeper than ", max_depth, " levels");
  return j;
}

}  // namespace ep
