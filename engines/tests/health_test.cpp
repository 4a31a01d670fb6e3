// grpc.health.v1 over a real server on 127.0.0.1.
#include <gtest/gtest.h>

#include <thread>

#include <grpcpp/grpcpp.h>

#include "flags.h"
#include "runtime.h"

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

namespace {
struct Server {
  jota::Flags flags{"test", "test"};
  std::unique_ptr<jota::EngineServer> server;
  std::unique_ptr<grpc::health::v1::Health::Stub> stub;
  Server() {
    jota::AddCommonFlags(flags, "", "127.0.0.1:0");
    std::string err;
    EXPECT_TRUE(flags.parse({}, {}, &err)) << err;
    server = std::make_unique<jota::EngineServer>(flags, std::vector<std::string>{"jota.v1.Test"});
    EXPECT_TRUE(server->Start(&err)) << err;
    auto ch = grpc::CreateChannel("127.0.0.1:" + std::to_string(server->bound_port()),
                                  grpc::InsecureChannelCredentials());
    stub = grpc::health::v1::Health::NewStub(ch);
  }
  grpc::Status Check(const std::string& service, HealthCheckResponse* res) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    HealthCheckRequest req;
    req.set_service(service);
    return stub->Check(&ctx, req, res);
  }
};
}  // namespace

TEST(Health, NotServingUntilTheEngineSaysSo) {
  Server s;
  HealthCheckResponse res;
  ASSERT_TRUE(s.Check("", &res).ok());
  EXPECT_EQ(res.status(), HealthCheckResponse::NOT_SERVING);
  ASSERT_TRUE(s.Check("jota.v1.Test", &res).ok());
  EXPECT_EQ(res.status(), HealthCheckResponse::NOT_SERVING);
  s.server->health().SetServing(true);
  ASSERT_TRUE(s.Check("jota.v1.Test", &res).ok());
  EXPECT_EQ(res.status(), HealthCheckResponse::SERVING);
  EXPECT_EQ(jota::RunProbe("127.0.0.1:" + std::to_string(s.server->bound_port()), "jota.v1.Test"), 0);
}

TEST(Health, UnknownServiceIsNotFound) {
  Server s;
  HealthCheckResponse res;
  grpc::Status st = s.Check("no.such.Service", &res);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST(Health, WatchStreamsEveryChangeAndEndsAtShutdown) {
  Server s;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  HealthCheckRequest req;
  req.set_service("jota.v1.Test");
  auto reader = s.stub->Watch(&ctx, req);
  HealthCheckResponse res;
  ASSERT_TRUE(reader->Read(&res));
  EXPECT_EQ(res.status(), HealthCheckResponse::NOT_SERVING);
  s.server->health().SetServing(true);
  ASSERT_TRUE(reader->Read(&res));
  EXPECT_EQ(res.status(), HealthCheckResponse::SERVING);
  s.server->health().Shutdown();
  ASSERT_TRUE(reader->Read(&res));
  EXPECT_EQ(res.status(), HealthCheckResponse::NOT_SERVING);
  EXPECT_FALSE(reader->Read(&res));  // the stream ends
  EXPECT_TRUE(reader->Finish().ok());
  s.server->health().SetServing(true);  // ignored after shutdown
  ASSERT_TRUE(s.Check("jota.v1.Test", &res).ok());
  EXPECT_EQ(res.status(), HealthCheckResponse::NOT_SERVING);
}

TEST(Health, ProbeFailsAgainstNothing) {
  EXPECT_EQ(jota::RunProbe("127.0.0.1:1", ""), 1);
}
