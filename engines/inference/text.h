// Text streaming rules for generated tokens, kept free of llama.cpp so they
// are unit-tested on their own:
//  - only complete UTF-8 is streamed (a character split across tokens waits);
//  - a stop string is caught even when split across tokens, and no part of it
//    is ever streamed (text that might begin one is held back until decided).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace jota::inference {

// Length of the longest prefix of `s` that ends on a UTF-8 character
// boundary (an incomplete trailing sequence is excluded; invalid bytes count
// as complete so they can never block the stream).
size_t CompleteUtf8Prefix(const std::string& s);

// Replaces invalid UTF-8 with U+FFFD so every streamed piece is valid
// (protobuf `string` fields must be, and clients expect it).
std::string SanitizeUtf8(const std::string& s);

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);

  struct Result {
    std::string emit;      // text safe to stream now
    bool stopped = false;  // a stop string matched
    std::string stop;      // which one
  };

  // Adds newly generated text and returns what may be streamed.
  Result Push(const std::string& text);
  // End of generation: releases what was held back (incomplete UTF-8 included,
  // sanitized).
  std::string Flush();

 private:
  std::vector<std::string> stops_;
  std::string pending_;
};

}  // namespace jota::inference
