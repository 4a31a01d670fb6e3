// jota-inference: serves a llama.cpp model over gRPC (jota.v1.Inference).
#include <iostream>
#include <thread>

#include "log.h"
#include "model.h"
#include "runtime.h"
#include "service.h"

using namespace jota;

int main(int argc, char** argv) {
  Flags flags("jota-inference", "Jota's llama.cpp engine: token streaming, embeddings, batching, KV reuse.");
  AddCommonFlags(flags, "JOTA_INFERENCE_LISTEN", "127.0.0.1:50051");
  unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  flags.add({"model", "JOTA_MODEL", "", "chat model (GGUF)"});
  flags.add({"embed-model", "JOTA_EMBED_MODEL", "", "embedding model (GGUF)"});
  flags.add({"ctx-size", "JOTA_CTX_SIZE", "4096", "context tokens per slot (0 = the model's own)", false, IntRange{0, 1 << 20}});
  flags.add({"slots", "JOTA_SLOTS", "4", "concurrent sequences decoded together", false, IntRange{1, 256}});
  flags.add({"threads", "JOTA_THREADS", std::to_string(hw), "CPU threads for decoding", false, IntRange{1, 1024}});
  flags.add({"batch-size", "JOTA_BATCH_SIZE", "512", "tokens per decode step (prefill chunk)", false, IntRange{16, 65536}});
  flags.add({"queue-max", "JOTA_QUEUE_MAX", "64", "requests waiting for a slot before RESOURCE_EXHAUSTED", false, IntRange{0, 100000}});
  flags.add({"state-dir", "JOTA_STATE_DIR", "", "where evicted sessions' KV state is saved (empty: no disk cache)"});

  int code = 0;
  if (!flags.parse(argc, argv, &code)) return code;
  if (flags.given("probe")) return RunProbe(flags.str("probe"), "jota.v1.Inference");
  if (flags.str("model").empty() && flags.str("embed-model").empty()) {
    std::cerr << "jota-inference: give --model and/or --embed-model (or JOTA_MODEL / JOTA_EMBED_MODEL)\n";
    return 2;
  }
  // Every generating slot adds one token to each decode step's batch.
  if (flags.integer("slots") > flags.integer("batch-size")) {
    std::cerr << "jota-inference: --slots (" << flags.integer("slots") << ") cannot exceed --batch-size ("
              << flags.integer("batch-size") << "): each decode step carries one token of every generating slot\n";
    return 2;
  }
  PrepareProcess(flags);
  SetLogComponent("inference");

  inference::EngineConfig config;
  config.threads = flags.integer("threads");
  config.scheduler.ctx_size = flags.integer("ctx-size");
  config.scheduler.slots = flags.integer("slots");
  config.scheduler.threads = config.threads;
  config.scheduler.batch_size = flags.integer("batch-size");
  config.scheduler.queue_max = flags.integer("queue-max");
  config.scheduler.state_dir = flags.str("state-dir");
  inference::InferenceService service(BearerAuth(flags.str("token")), config);

  EngineServer server(flags, {"jota.v1.Inference"});
  server.AddService(&service);
  std::string error;
  if (!server.Start(&error)) {
    LogError(error);
    return 1;
  }

  // The model loads off the main thread: health says NOT_SERVING meanwhile.
  inference::InitBackend();
  std::thread loader([&] {
    // A fatal load error ends the process at once: the supervisor sees the
    // exit code and the log line; nothing is half-served.
    std::unique_ptr<inference::LoadedModel> chat, embed;
    std::string err;
    if (!flags.str("model").empty() &&
        !(chat = inference::LoadModel(flags.str("model"), config.scheduler.ctx_size, &err))) {
      LogError("cannot load chat model: " + err);
      std::_Exit(1);
    }
    if (!flags.str("embed-model").empty() &&
        !(embed = inference::LoadModel(flags.str("embed-model"), 0, &err))) {
      LogError("cannot load embedding model: " + err);
      std::_Exit(1);
    }
    LogInfo("model loaded", {{"chat", chat ? chat->info.name() : ""}, {"embed", embed ? embed->info.name() : ""}});
    if (!service.SetModels(std::move(chat), std::move(embed), &err)) {
      LogError(err);
      std::_Exit(1);
    }
    server.health().SetServing(true);
  });

  server.WaitForSignalAndShutdown([&] {
    inference::CancelLoading();
    service.Shutdown();
  });
  loader.join();
  LogInfo("stopped");
  return 0;
}
