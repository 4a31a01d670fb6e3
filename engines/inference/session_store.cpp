#include "session_store.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace jota::inference {
namespace {
constexpr char kMagic[8] = {'J', 'O', 'T', 'A', 'K', 'V', '0', '1'};

uint64_t Fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

template <typename T>
void Put(std::string& out, const T& v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

template <typename T>
bool Get(const std::string& in, size_t* off, T* v) {
  if (*off + sizeof(T) > in.size()) return false;
  std::memcpy(v, in.data() + *off, sizeof(T));
  *off += sizeof(T);
  return true;
}
}  // namespace

SessionStore::SessionStore(std::string dir, uint64_t fingerprint) : dir_(std::move(dir)), fingerprint_(fingerprint) {
  if (!dir_.empty()) std::filesystem::create_directories(dir_);
}

std::string SessionStore::PathFor(const std::string& session_id) const {
  char name[32];
  std::snprintf(name, sizeof name, "%016llx.kv", static_cast<unsigned long long>(Fnv1a(session_id)));
  return (std::filesystem::path(dir_) / name).string();
}

bool SessionStore::Exists(const std::string& session_id) const {
  std::error_code ec;
  return enabled() && std::filesystem::exists(PathFor(session_id), ec);
}

bool SessionStore::Save(llama_context* ctx, llama_seq_id seq, const std::string& session_id,
                        const std::vector<llama_token>& tokens, std::string* error) {
  if (!enabled()) return false;
  size_t size = llama_state_seq_get_size(ctx, seq);
  std::string blob;
  blob.append(kMagic, sizeof kMagic);
  Put(blob, fingerprint_);
  Put(blob, static_cast<uint32_t>(session_id.size()));
  blob += session_id;
  Put(blob, static_cast<uint32_t>(tokens.size()));
  blob.append(reinterpret_cast<const char*>(tokens.data()), tokens.size() * sizeof(llama_token));
  Put(blob, static_cast<uint64_t>(size));
  size_t header = blob.size();
  blob.resize(header + size);
  size_t written = llama_state_seq_get_data(ctx, reinterpret_cast<uint8_t*>(&blob[header]), size, seq);
  if (written != size) {
    *error = "llama_state_seq_get_data returned " + std::to_string(written) + " of " + std::to_string(size) + " bytes";
    return false;
  }
  std::string path = PathFor(session_id), tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f.write(blob.data(), static_cast<std::streamsize>(blob.size()));
    if (!f) {
      *error = "cannot write " + tmp;
      return false;
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);  // readers never see half a file
  if (ec) {
    *error = "cannot rename " + tmp + ": " + ec.message();
    return false;
  }
  return true;
}

bool SessionStore::Restore(llama_context* ctx, llama_seq_id seq, const std::string& session_id,
                           std::vector<llama_token>* tokens, std::string* error) {
  if (!enabled()) return false;
  std::ifstream f(PathFor(session_id), std::ios::binary);
  if (!f) return false;
  std::string blob((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  size_t off = sizeof kMagic;
  uint64_t fp = 0, size = 0;
  uint32_t id_len = 0, n_tokens = 0;
  if (blob.size() < sizeof kMagic || std::memcmp(blob.data(), kMagic, sizeof kMagic) != 0 || !Get(blob, &off, &fp) ||
      !Get(blob, &off, &id_len) || off + id_len > blob.size()) {
    *error = "not a session file";
    return false;
  }
  if (fp != fingerprint_) {
    *error = "saved for another model";
    return false;
  }
  if (blob.compare(off, id_len, session_id) != 0) {
    *error = "hash collision with another session";
    return false;
  }
  off += id_len;
  if (!Get(blob, &off, &n_tokens) || off + size_t{n_tokens} * sizeof(llama_token) > blob.size()) {
    *error = "truncated session file";
    return false;
  }
  tokens->resize(n_tokens);
  std::memcpy(tokens->data(), blob.data() + off, size_t{n_tokens} * sizeof(llama_token));
  off += size_t{n_tokens} * sizeof(llama_token);
  if (!Get(blob, &off, &size) || off + size != blob.size()) {
    *error = "truncated session file";
    return false;
  }
  size_t read = llama_state_seq_set_data(ctx, reinterpret_cast<const uint8_t*>(blob.data() + off), size, seq);
  if (read == 0) {
    *error = "llama.cpp refused the saved state";
    tokens->clear();
    return false;
  }
  return true;
}

}  // namespace jota::inference
