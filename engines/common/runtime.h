// What both engine binaries share around their services: the gRPC server
// (health, reflection, limits), signal handling, exiting with the parent
// process, and the `--probe` health client used by container healthchecks.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "flags.h"
#include "health.h"

namespace jota {

// Flags every engine has: --listen, --token, --probe, --exit-with-parent,
// --max-message-mb.
void AddCommonFlags(Flags& flags, const std::string& listen_env, const std::string& default_listen);

// Blocks SIGINT/SIGTERM in the calling thread (call first in main, before any
// thread starts, so every thread inherits the mask) and, with
// --exit-with-parent, asks the kernel for SIGTERM when the parent dies.
void PrepareProcess(const Flags& flags);

// `--probe HOST:PORT`: one grpc.health.v1 Check; prints the status; exit code
// 0 when SERVING, 1 otherwise.
int RunProbe(const std::string& target, const std::string& service);

class EngineServer {
 public:
  // How long calls still running at shutdown get before they are cancelled.
  // An engine that lets its own work run on after SIGTERM keeps that work
  // shorter than this (transcription/service.cpp asserts it).
  static constexpr std::chrono::seconds kShutdownGrace{5};

  EngineServer(const Flags& flags, std::vector<std::string> health_services);
  void AddService(grpc::Service* service);  // not owned
  HealthService& health() { return *health_; }

  // Binds (fails with a clear message when the address is taken), starts, and
  // logs the "listening" line that supervisors read to learn a port picked with :0.
  bool Start(std::string* error);
  int bound_port() const { return bound_port_; }
  // Waits for SIGINT/SIGTERM, then: health NOT_SERVING, `on_stop` (the engine
  // cancels its work), and a graceful shutdown with a deadline.
  void WaitForSignalAndShutdown(const std::function<void()>& on_stop);

 private:
  std::string listen_;
  bool auth_;
  int max_message_bytes_;
  std::unique_ptr<HealthService> health_;
  std::vector<grpc::Service*> services_;
  std::unique_ptr<grpc::Server> server_;
  int bound_port_ = 0;
};

}  // namespace jota
