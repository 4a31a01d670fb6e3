// Bearer-token check for engine calls. When a token is configured, every
// call (except grpc.health.v1 and reflection, which probes and load
// balancers use) needs `authorization: Bearer <token>` metadata.
#pragma once

#include <string>

#include <grpcpp/grpcpp.h>

namespace jota {

class BearerAuth {
 public:
  explicit BearerAuth(std::string token) : token_(std::move(token)) {}
  bool enabled() const { return !token_.empty(); }
  // OK, or UNAUTHENTICATED with the reason (missing / malformed / wrong).
  grpc::Status Check(const grpc::ServerContext& ctx) const;
  // The check itself, on a raw header value (nullptr: header absent).
  grpc::Status CheckHeader(const std::string* header) const;

 private:
  std::string token_;
};

// Compares in time independent of where the strings first differ.
bool ConstantTimeEquals(const std::string& a, const std::string& b);

}  // namespace jota
