// jota-transcription: serves a whisper.cpp model over gRPC (jota.v1.Transcription).
#include <iostream>
#include <thread>

#include "log.h"
#include "model.h"
#include "runtime.h"
#include "service.h"

using namespace jota;

int main(int argc, char** argv) {
  Flags flags("jota-transcription", "Jota's whisper.cpp engine: streaming speech-to-text with partial and final results.");
  AddCommonFlags(flags, "JOTA_TRANSCRIPTION_LISTEN", "127.0.0.1:50052");
  unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  flags.add({"model", "JOTA_WHISPER_MODEL", "", "whisper model (ggml .bin)"});
  flags.add({"threads", "JOTA_WHISPER_THREADS", std::to_string(hw), "CPU threads per decode", false, IntRange{1, 1024}});
  flags.add({"streams", "JOTA_WHISPER_STREAMS", "2", "streams decoded at once (whisper states)", false, IntRange{1, 64}});
  flags.add({"queue-max", "JOTA_WHISPER_QUEUE_MAX", "8", "streams waiting before RESOURCE_EXHAUSTED", false, IntRange{0, 10000}});
  flags.add({"max-audio-s", "JOTA_WHISPER_MAX_AUDIO_S", "3600", "longest stream or file, in seconds (longer: OUT_OF_RANGE)",
             false, IntRange{1, 86400}});
  flags.add({"stream-idle-s", "JOTA_WHISPER_STREAM_IDLE_S", "60",
             "a stream that sends no message for this long ends DEADLINE_EXCEEDED, freeing its decoder (0 = no limit)",
             false, IntRange{0, 86400}});
  flags.add({"no-fallback", "JOTA_WHISPER_NO_FALLBACK", "",
             "decode each utterance once, without whisper's temperature fallback (faster, bounded; whisper-cli -nf)", true});
  flags.add({"vad-model", "JOTA_WHISPER_VAD_MODEL", "",
             "Silero VAD model (ggml .bin) used instead of the built-in energy detector"});

  int code = 0;
  if (!flags.parse(argc, argv, &code)) return code;
  if (flags.given("probe")) return RunProbe(flags.str("probe"), "jota.v1.Transcription");
  if (flags.str("model").empty()) {
    std::cerr << "jota-transcription: give --model (or JOTA_WHISPER_MODEL)\n";
    return 2;
  }
  PrepareProcess(flags);
  SetLogComponent("transcription");

  transcription::EngineConfig config;
  config.threads = flags.integer("threads");
  config.streams_max = flags.integer("streams");
  config.queue_max = flags.integer("queue-max");
  config.max_audio_s = flags.integer("max-audio-s");
  config.temperature_fallback = !flags.boolean("no-fallback");
  config.vad_model = flags.str("vad-model");
  config.stream_idle_s = flags.integer("stream-idle-s");
  transcription::TranscriptionService service(BearerAuth(flags.str("token")), config);

  EngineServer server(flags, {"jota.v1.Transcription"});
  server.AddService(&service);
  std::string error;
  if (!server.Start(&error)) {
    LogError(error);
    return 1;
  }

  transcription::InitBackend();
  // whisper.cpp offers no way to abort a load; shutdown waits for it (seconds).
  std::thread loader([&] {
    std::string err;
    auto model = transcription::LoadModel(flags.str("model"), &err);
    if (!model) {
      LogError("cannot load whisper model: " + err);
      std::_Exit(1);
    }
    // Each stream loads its own Silero context (the LSTM state is per context);
    // this first load only proves the file is usable.
    if (!config.vad_model.empty() && !transcription::MakeSileroClassifier(config.vad_model, 1, &err)) {
      LogError("cannot load VAD model: " + err);
      std::_Exit(1);
    }
    LogInfo("model loaded", {{"model", model->path}, {"type", model->type}});
    service.SetModel(std::move(model));
    server.health().SetServing(true);
  });

  server.WaitForSignalAndShutdown([&] { service.Stop(); });
  loader.join();
  LogInfo("stopped");
  return 0;
}
