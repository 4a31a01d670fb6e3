// jota-generate-client: streams Generate calls from a running jota-inference
// and prints, per call, one JSON line with the token ids and the rates the
// client saw. For benchmarks (scripts/bench/inference.ts): on a small machine
// a Node gRPC client spends 0.3-0.8 ms of CPU per streamed message (the
// bench reports it as node_client_cpu_ms_per_token), which the engine's
// decoding threads lose (~9 ms a token with 2 threads on 2 cores); this
// client's cost per message (~0.1 ms) is what a native consumer pays.
//
//   jota-generate-client --addr HOST:PORT --prompt-tokens 1,2,3 --max-tokens 128 [--runs N] [--token T]
//
// Greedy sampling (temperature 0). Each line: {"tokens":[...],"ttft_ms":x,
// "decode_tps":x,"engine_decode_tps":x,"finish_reason":n,"client_cpu_ms":x}.
// decode_tps counts the tokens after the first delta over the time from the
// first delta to the last one, as the TypeScript benchmark clients do.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "jota/v1/inference.grpc.pb.h"

namespace {

double CpuMs() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto ms = [](const timeval& t) { return t.tv_sec * 1e3 + t.tv_usec / 1e3; };
  return ms(u.ru_utime) + ms(u.ru_stime);
}

int Usage(const char* why) {
  std::fprintf(stderr, "jota-generate-client: %s\nusage: jota-generate-client --addr HOST:PORT --prompt-tokens 1,2,3 --max-tokens N [--runs N] [--token T]\n", why);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string addr, token;
  std::vector<int32_t> prompt;
  int max_tokens = 128, runs = 1;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) return Usage(("missing value after " + a).c_str());
    std::string v = argv[++i];
    if (a == "--addr") {
      addr = v;
    } else if (a == "--token") {
      token = v;
    } else if (a == "--max-tokens") {
      max_tokens = std::atoi(v.c_str());
    } else if (a == "--runs") {
      runs = std::atoi(v.c_str());
    } else if (a == "--prompt-tokens") {
      std::stringstream ss(v);
      std::string id;
      while (std::getline(ss, id, ',')) prompt.push_back(std::atoi(id.c_str()));
    } else {
      return Usage(("unknown flag " + a).c_str());
    }
  }
  if (addr.empty() || prompt.empty() || max_tokens <= 0 || runs <= 0) return Usage("--addr, --prompt-tokens and a positive --max-tokens are required");

  auto stub = jota::v1::Inference::NewStub(grpc::CreateChannel(addr, grpc::InsecureChannelCredentials()));
  jota::v1::GenerateRequest req;
  for (int32_t id : prompt) req.mutable_prompt_tokens()->add_ids(id);
  req.set_max_tokens(max_tokens);
  req.mutable_sampling()->set_temperature(0);

  for (int r = 0; r < runs; ++r) {
    grpc::ClientContext ctx;
    if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
    using Clock = std::chrono::steady_clock;
    auto t0 = Clock::now();
    double cpu0 = CpuMs();
    Clock::time_point first{}, last{};
    int first_count = 0;
    std::vector<int32_t> ids;
    jota::v1::GenerateEvent ev;
    double engine_tps = 0;
    int finish = 0;
    auto reader = stub->Generate(&ctx, req);
    while (reader->Read(&ev)) {
      if (ev.has_delta()) {
        auto now = Clock::now();
        if (first == Clock::time_point{}) {
          first = now;
          first_count = ev.delta().token_ids_size();
        }
        last = now;
        for (int32_t id : ev.delta().token_ids()) ids.push_back(id);
      } else if (ev.has_done()) {
        engine_tps = ev.done().timings().decode_tokens_per_s();
        finish = ev.done().finish_reason();
      }
    }
    grpc::Status st = reader->Finish();
    if (!st.ok()) {
      std::fprintf(stderr, "jota-generate-client: Generate failed: %d %s\n", static_cast<int>(st.error_code()), st.error_message().c_str());
      return 1;
    }
    double cpu = CpuMs() - cpu0;
    auto ms = [](Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
    double span = ms(first, last);
    double tps = span > 0 ? (static_cast<double>(ids.size()) - first_count) * 1000.0 / span : 0;
    std::string list;
    for (size_t i = 0; i < ids.size(); ++i) list += (i ? "," : "") + std::to_string(ids[i]);
    std::printf("{\"tokens\":[%s],\"ttft_ms\":%.3f,\"decode_tps\":%.3f,\"engine_decode_tps\":%.3f,\"finish_reason\":%d,\"client_cpu_ms\":%.3f}\n",
                list.c_str(), first == Clock::time_point{} ? -1.0 : ms(t0, first), tps, engine_tps, finish, cpu);
    std::fflush(stdout);
  }
  return 0;
}
