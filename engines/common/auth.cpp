#include "auth.h"

namespace jota {

bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const std::string& longer = a.size() >= b.size() ? a : b;
  for (size_t i = 0; i < longer.size(); ++i) {
    unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= x ^ y;
  }
  return diff == 0;
}

grpc::Status BearerAuth::CheckHeader(const std::string* header) const {
  if (!enabled()) return grpc::Status::OK;
  if (header == nullptr)
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "missing 'authorization: Bearer <token>' metadata");
  static const std::string kPrefix = "Bearer ";
  if (header->size() <= kPrefix.size() || header->compare(0, kPrefix.size(), kPrefix) != 0)
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "authorization metadata must be 'Bearer <token>'");
  if (!ConstantTimeEquals(header->substr(kPrefix.size()), token_))
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "invalid engine token");
  return grpc::Status::OK;
}

grpc::Status BearerAuth::Check(const grpc::ServerContext& ctx) const {
  if (!enabled()) return grpc::Status::OK;
  const auto& md = ctx.client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) return CheckHeader(nullptr);
  std::string value(it->second.data(), it->second.size());
  return CheckHeader(&value);
}

}  // namespace jota
