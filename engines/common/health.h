// grpc.health.v1.Health, served by both engines. Unlike grpc's built-in
// default service (which starts out SERVING), the status here is NOT_SERVING
// from the first instant until the engine says its model is loaded.
#pragma once

#include <condition_variable>
#include <map>
#include <mutex>
#include <string>

#include "grpc/health/v1/health.grpc.pb.h"

namespace jota {

class HealthService final : public grpc::health::v1::Health::Service {
 public:
  using Status = grpc::health::v1::HealthCheckResponse::ServingStatus;

  // `services`: the names answered besides "" (the whole server).
  explicit HealthService(const std::vector<std::string>& services);

  // Sets every known service (and "") at once.
  void SetServing(bool serving);
  // Ends every Watch stream (at shutdown).
  void Shutdown();

  grpc::Status Check(grpc::ServerContext* ctx, const grpc::health::v1::HealthCheckRequest* req,
                     grpc::health::v1::HealthCheckResponse* res) override;
  grpc::Status Watch(grpc::ServerContext* ctx, const grpc::health::v1::HealthCheckRequest* req,
                     grpc::ServerWriter<grpc::health::v1::HealthCheckResponse>* writer) override;

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::map<std::string, Status> status_;
  uint64_t version_ = 0;
  bool shutdown_ = false;
};

}  // namespace jota
