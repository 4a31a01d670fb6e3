#include "runtime.h"

#include <csignal>
#include <iostream>
#include <pthread.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <grpcpp/ext/proto_server_reflection_plugin.h>

#include "log.h"

namespace jota {

void AddCommonFlags(Flags& flags, const std::string& listen_env, const std::string& default_listen) {
  flags.add({"listen", listen_env, default_listen, "gRPC listen address (host:port; port 0 picks a free one)"});
  flags.add({"token", "JOTA_ENGINE_TOKEN", "", "require 'authorization: Bearer TOKEN' on every call"});
  flags.add({"probe", "", "", "health-check a running engine at HOST:PORT and exit (0 = SERVING)"});
  flags.add({"exit-with-parent", "JOTA_EXIT_WITH_PARENT", "", "exit when the parent process dies", true});
  flags.add({"max-message-mb", "JOTA_MAX_MESSAGE_MB", "64", "largest request message accepted, in MiB",
             false, IntRange{1, 1024}});
}

void PrepareProcess(const Flags& flags) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  if (flags.boolean("exit-with-parent")) {
    pid_t parent = getppid();
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    // The parent may have died before prctl took effect.
    if (getppid() != parent) raise(SIGTERM);
  }
}

int RunProbe(const std::string& target, const std::string& service) {
  auto channel = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
  grpc::health::v1::HealthCheckRequest req;
  req.set_service(service);
  grpc::health::v1::HealthCheckResponse res;
  grpc::Status st = stub->Check(&ctx, req, &res);
  if (!st.ok()) {
    std::cerr << "probe " << target << ": " << st.error_message() << "\n";
    return 1;
  }
  std::cout << grpc::health::v1::HealthCheckResponse::ServingStatus_Name(res.status()) << "\n";
  return res.status() == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : 1;
}

EngineServer::EngineServer(const Flags& flags, std::vector<std::string> health_services)
    : listen_(flags.str("listen")),
      auth_(!flags.str("token").empty()),
      max_message_bytes_(flags.integer("max-message-mb") * 1024 * 1024),
      health_(std::make_unique<HealthService>(health_services)) {}

void EngineServer::AddService(grpc::Service* service) { services_.push_back(service); }

bool EngineServer::Start(std::string* error) {
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen_, grpc::InsecureServerCredentials(), &bound_port_);
  builder.SetMaxReceiveMessageSize(max_message_bytes_);
  builder.SetMaxSendMessageSize(max_message_bytes_);
  // Dead clients are noticed even on idle streams.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  builder.RegisterService(health_.get());
  for (auto* s : services_) builder.RegisterService(s);
  server_ = builder.BuildAndStart();
  if (!server_ || bound_port_ == 0) {
    *error = "cannot listen on " + listen_ + " (address in use or invalid)";
    return false;
  }
  LogInfo("listening", {{"port", std::to_string(bound_port_)}, {"address", listen_}, {"auth", auth_ ? "bearer" : "off"}});
  return true;
}

void EngineServer::WaitForSignalAndShutdown(const std::function<void()>& on_stop) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  int sig = 0;
  sigwait(&set, &sig);
  LogInfo("shutting down", {{"signal", sig == SIGINT ? "SIGINT" : "SIGTERM"}});
  health_->Shutdown();
  if (on_stop) on_stop();
  server_->Shutdown(std::chrono::system_clock::now() + kShutdownGrace);
  server_->Wait();
}

}  // namespace jota
