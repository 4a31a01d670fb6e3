#include "text.h"

#include <algorithm>

namespace jota::inference {
namespace {
// Expected length of a UTF-8 sequence from its lead byte (0: not a lead byte).
int SeqLen(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) return 2;
  if ((c & 0xF0) == 0xE0) return 3;
  if ((c & 0xF8) == 0xF0) return 4;
  return 0;
}
}  // namespace

size_t CompleteUtf8Prefix(const std::string& s) {
  // Look back at most 3 bytes for a lead byte whose sequence runs past the end.
  size_t n = s.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    unsigned char c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking
    int len = SeqLen(c);
    if (len > static_cast<int>(back)) return n - back;  // incomplete
    return n;
  }
  return n;
}

std::string SanitizeUtf8(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    int len = SeqLen(c);
    bool ok = len > 0 && i + len <= s.size();
    for (int k = 1; ok && k < len; ++k) ok = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
    if (ok && len > 1) {
      // Reject overlong forms, surrogates and code points past U+10FFFF.
      unsigned cp = c & (0x7F >> len);
      for (int k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
      static const unsigned kMin[] = {0, 0, 0x80, 0x800, 0x10000};
      ok = cp >= kMin[len] && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
    }
    if (ok) {
      out.append(s, i, len);
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

StopMatcher::StopMatcher(std::vector<std::string> stops) {
  for (auto& s : stops)
    if (!s.empty()) stops_.push_back(std::move(s));
}

StopMatcher::Result StopMatcher::Push(const std::string& text) {
  pending_ += text;
  Result r;
  // Earliest full match of any stop string wins; text before it is streamed.
  size_t best = std::string::npos;
  for (const auto& stop : stops_) {
    size_t at = pending_.find(stop);
    if (at != std::string::npos && at < best) {
      best = at;
      r.stop = stop;
    }
  }
  if (best != std::string::npos) {
    r.emit = SanitizeUtf8(pending_.substr(0, best));
    r.stopped = true;
    pending_.clear();
    return r;
  }
  // Hold back the longest tail that is a prefix of some stop string.
  size_t hold = 0;
  for (const auto& stop : stops_) {
    for (size_t k = std::min(stop.size() - 1, pending_.size()); k > hold; --k) {
      if (pending_.compare(pending_.size() - k, k, stop, 0, k) == 0) {
        hold = k;
        break;
      }
    }
  }
  size_t safe = CompleteUtf8Prefix(pending_.substr(0, pending_.size() - hold));
  r.emit = SanitizeUtf8(pending_.substr(0, safe));
  pending_.erase(0, safe);
  return r;
}

std::string StopMatcher::Flush() {
  std::string out = SanitizeUtf8(pending_);
  pending_.clear();
  return out;
}

}  // namespace jota::inference
