// jpeg_guard.cpp — the marker walk of jpeg_guard.h. It follows stb_image's reader: fill bytes before a marker, segment
// lengths (stb fails unless each segment consumes exactly its length), entropy-coded data after SOS up to the next
// 0xFF that is neither stuffing (FF 00) nor a restart marker. Not a decoder.
#include "data/jpeg_guard.h"

#include <algorithm>

namespace ep::data {

std::string jpeg_table_hazard(const uint8_t* data, size_t size) {
  // SOI, after any number of 0xFF fill bytes (stb accepts FF FF D8 as well; found by libFuzzer). Else not a JPEG:
  // stb decides.
  size_t pos = 0;
  while (pos < size && data[pos] == 0xFF) ++pos;
  if (pos == 0 || pos >= size || data[pos] != 0xD8) return "";
  ++pos;
  // Bytes past the end read as 0, as stb's stbi__get8 returns at end of input.
  auto at = [&](size_t i) -> unsigned { return i < size ? data[i] : 0u; };
  bool after_scan = false;  // inside entropy-coded data, where FF 00 is a stuffed byte and FF D0..D7 a restart
  int frame = -1;            // the SOF marker's low nibble: 0, 1 sequential, 2 progressive
  bool dc_defined[4] = {}, ac_defined[4] = {};  // Huffman tables a DHT has defined so far
  bool q_defined[4] = {};                       // quantization tables a DQT has defined so far
  unsigned frame_ids[4] = {}, frame_tq[4] = {}, frame_n = 0;  // the frame's components: id and quantization table
  for (;;) {
    // The next marker. Where stb expects one at once and finds other bytes it either fails or (before the frame
    // header) skips them looking for 0xFF; scanning forward covers both.
    for (;;) {
      while (pos < size && data[pos] != 0xFF) ++pos;
      while (pos < size && data[pos] == 0xFF) ++pos;  // fill bytes
      if (pos >= size) return "";
      if (after_scan && (data[pos] == 0x00 || (data[pos] >= 0xD0 && data[pos] <= 0xD7))) {
        ++pos;
        continue;
      }
      break;
    }
    const unsigned marker = data[pos++];
    if (marker == 0xD9) return "";  // EOI
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8)) {
      after_scan = false;
      continue;  // no length field
    }
    const size_t length = (at(pos) << 8) | at(pos + 1);
    if (marker == 0xC4) {  // DHT: tables of [class/id][16 counts][sum(counts) values] while the length lasts
      long remaining = long(length) - 2;
      size_t t = pos + 2;
      for (int table = 0; remaining > 0; ++table) {
        if (t >= size) return "";  // stb reads zeros: empty tables, then fails on the length
        unsigned codes = 0;
        for (size_t i = 0; i < 16; ++i) codes += at(t + 1 + i);
        if (codes > 256)
          return "DHT table " + std::to_string(table) + " declares " + std::to_string(codes) + " codes (at most 256)";
        const unsigned kind = at(t) >> 4, id = at(t) & 15;  // stb rejects a class above 1 or an id above 3 itself
        if (kind <= 1 && id <= 3) (kind == 0 ? dc_defined : ac_defined)[id] = true;
        t += 17 + codes;
        remaining -= long(17 + codes);
      }
    }
    if (marker == 0xDB) {  // DQT: tables of [precision << 4 | id][64 values of 1 or 2 bytes] while the length lasts
      long remaining = long(length) - 2;
      for (size_t t = pos + 2; remaining > 0 && t < size;) {
        const unsigned precision = at(t) >> 4, id = at(t) & 15, bytes = 1 + 64 * (precision ? 2 : 1);
        if (id <= 3) q_defined[id] = true;  // stb rejects an id above 3 itself
        t += bytes;
        remaining -= long(bytes);
      }
    }
    if (marker == 0xC0 || marker == 0xC1 || marker == 0xC2) {  // SOF: [P][Y][X][n][n x (id, sampling, Tq)]
      frame = int(marker & 0x0F);
      frame_n = std::min(at(pos + 7), 4u);
      for (unsigned k = 0; k < frame_n; ++k) {
        frame_ids[k] = at(pos + 8 + 3 * k);
        frame_tq[k] = at(pos + 10 + 3 * k);
      }
    }
    if (marker == 0xDA && frame >= 0) {  // SOS: [n][n x (component, DC table << 4 | AC table)][Ss][Se][Ah << 4 | Al]
      const unsigned n = at(pos + 2);
      const unsigned ss = at(pos + 3 + 2 * n), ah = at(pos + 5 + 2 * n) >> 4;
      // What stb decodes with: a sequential scan both tables; a progressive DC scan its DC table on the first pass
      // (a refinement reads raw bits); a progressive AC scan its AC table.
      const bool uses_dc = frame != 2 || (ss == 0 && ah == 0), uses_ac = frame != 2 || ss != 0;
      for (unsigned k = 0; k < n && k < 4; ++k) {
        const unsigned dc = at(pos + 4 + 2 * k) >> 4, ac = at(pos + 4 + 2 * k) & 15;
        if (uses_dc && dc <= 3 && !dc_defined[dc])
          return "scan uses DC Huffman table " + std::to_string(dc) + ", which no DHT defined";
        if (uses_ac && ac <= 3 && !ac_defined[ac])
          return "scan uses AC Huffman table " + std::to_string(ac) + ", which no DHT defined";
        const unsigned id = at(pos + 3 + 2 * k);
        for (unsigned c = 0; c < frame_n; ++c)
          if (frame_ids[c] == id && frame_tq[c] <= 3 && !q_defined[frame_tq[c]])
            return "scan's component " + std::to_string(id) + " uses quantization table " +
                   std::to_string(frame_tq[c]) + ", which no DQT defined";
      }
    }
    pos += length;
    after_scan = marker == 0xDA;  // SOS: its header, then entropy-coded data
  }
}

}  // namespace ep::data
