#include "health.h"

#include <chrono>

namespace jota {
using grpc::health::v1::HealthCheckResponse;

HealthService::HealthService(const std::vector<std::string>& services) {
  status_[""] = HealthCheckResponse::NOT_SERVING;
  for (const auto& s : services) status_[s] = HealthCheckResponse::NOT_SERVING;
}

void HealthService::SetServing(bool serving) {
  std::lock_guard<std::mutex> lock(mu_);
  if (shutdown_) return;  // a late "loaded" must not revive a stopping server
  for (auto& [name, st] : status_)
    st = serving ? HealthCheckResponse::SERVING : HealthCheckResponse::NOT_SERVING;
  ++version_;
  changed_.notify_all();
}

void HealthService::Shutdown() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [name, st] : status_) st = HealthCheckResponse::NOT_SERVING;
  shutdown_ = true;
  ++version_;
  changed_.notify_all();
}

grpc::Status HealthService::Check(grpc::ServerContext*, const grpc::health::v1::HealthCheckRequest* req,
                                  HealthCheckResponse* res) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = status_.find(req->service());
  if (it == status_.end())
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown service '" + req->service() + "'");
  res->set_status(it->second);
  return grpc::Status::OK;
}

grpc::Status HealthService::Watch(grpc::ServerContext* ctx, const grpc::health::v1::HealthCheckRequest* req,
                                  grpc::ServerWriter<HealthCheckResponse>* writer) {
  std::unique_lock<std::mutex> lock(mu_);
  uint64_t seen = ~uint64_t{0};
  HealthCheckResponse::ServingStatus last = HealthCheckResponse::UNKNOWN;
  while (!ctx->IsCancelled()) {
    if (seen != version_) {
      seen = version_;
      auto it = status_.find(req->service());
      auto st = it == status_.end() ? HealthCheckResponse::SERVICE_UNKNOWN : it->second;
      if (st != last) {
        last = st;
        HealthCheckResponse res;
        res.set_status(st);
        lock.unlock();
        bool ok = writer->Write(res);
        lock.lock();
        if (!ok) break;
      }
      continue;  // the status may have changed again while unlocked
    }
    // Only once the latest status was sent: a shutdown ends the stream.
    if (shutdown_) break;
    // Wakes on a status change; the timeout only re-checks for cancellation.
    changed_.wait_for(lock, std::chrono::milliseconds(250));
  }
  return grpc::Status::OK;
}

}  // namespace jota
