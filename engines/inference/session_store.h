// Saves and restores one sequence's KV cache (plus its token list) on disk,
// so a session survives slot eviction and engine restarts. It is a cache: a
// missing, stale or corrupt file only means the next turn prefills again.
#pragma once

#include <string>
#include <vector>

#include "llama.h"

namespace jota::inference {

class SessionStore {
 public:
  // `dir` empty disables the store. `fingerprint` ties files to one model.
  SessionStore(std::string dir, uint64_t fingerprint);
  bool enabled() const { return !dir_.empty(); }

  // Copies seq `seq`'s state out of the context and writes it (atomically).
  bool Save(llama_context* ctx, llama_seq_id seq, const std::string& session_id,
            const std::vector<llama_token>& tokens, std::string* error);
  // Loads into seq `seq` (which must be empty). False when absent or unusable.
  bool Restore(llama_context* ctx, llama_seq_id seq, const std::string& session_id,
               std::vector<llama_token>* tokens, std::string* error);
  bool Exists(const std::string& session_id) const;

 private:
  std::string PathFor(const std::string& session_id) const;
  std::string dir_;
  uint64_t fingerprint_;
};

}  // namespace jota::inference
