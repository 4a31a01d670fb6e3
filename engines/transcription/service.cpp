#include "service.h"

#include <filesystem>
#include <mutex>

#include "build_info.h"
#include "log.h"
#include "session.h"
#include "settings.h"

namespace jota::transcription {

namespace {
constexpr int64_t kRate = kWhisperRate;
}  // namespace

TranscriptionService::TranscriptionService(BearerAuth auth, EngineConfig config)
    : auth_(std::move(auth)), config_(std::move(config)) {}

void TranscriptionService::SetModel(std::unique_ptr<LoadedModel> model) {
  model_ = std::move(model);
  const DecoderConfig decoder{config_.threads, config_.temperature_fallback};
  const LoadedModel* m = model_.get();
  pool_ = std::make_unique<DecoderPool>(config_.streams_max, config_.queue_max,
                                        [m, decoder](std::string* error) { return MakeWhisperDecoder(*m, decoder, error); });
  ready_.store(true);
}

void TranscriptionService::Stop() {
  stopping_.store(true);
  if (ready_.load()) pool_->Shutdown();
}

grpc::Status TranscriptionService::Admit(const grpc::ServerContext& ctx) const {
  grpc::Status st = auth_.Check(ctx);
  if (!st.ok()) return st;
  if (!ready_.load()) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "model is still loading");
  return grpc::Status::OK;
}

grpc::Status TranscriptionService::Count(grpc::Status st) {
  if (st.error_code() == grpc::StatusCode::CANCELLED)
    ++counters_.cancellations;
  else if (!st.ok())
    ++counters_.errors;
  return st;
}

grpc::Status TranscriptionService::Info(grpc::ServerContext* ctx, const jota::v1::TranscriptionInfoRequest*,
                                        jota::v1::TranscriptionInfo* res) {
  if (grpc::Status st = auth_.Check(*ctx); !st.ok()) return st;
  res->set_ready(ready_.load());
  if (ready_.load()) {
    res->set_model_path(model_->path);
    res->set_model_name(std::filesystem::path(model_->path).stem().string());
    res->set_model_type(model_->type);
    res->set_multilingual(model_->multilingual);
    for (const auto& l : Languages(*model_)) res->add_languages(l);
    res->set_streams_active(pool_->active());
    res->set_queue_length(pool_->waiting());
  }
  res->set_threads(config_.threads);
  res->set_streams_max(config_.streams_max);
  res->set_queue_max(config_.queue_max);
  res->set_vad_model(!config_.vad_model.empty());
  jota::v1::TranscriptionCounters* c = res->mutable_counters();
  c->set_streams(counters_.streams);
  c->set_files(counters_.files);
  c->set_utterances(counters_.utterances);
  c->set_audio_seconds(counters_.audio_samples / kRate);
  c->set_partials(counters_.partials);
  c->set_partials_skipped(counters_.partials_skipped);
  c->set_errors(counters_.errors);
  c->set_cancellations(counters_.cancellations);
  *res->mutable_build() = MakeBuildInfo("whisper.cpp", SystemInfo());
  return grpc::Status::OK;
}

grpc::Status TranscriptionService::Transcribe(grpc::ServerContext* ctx, const jota::v1::TranscribeRequest* req,
                                              jota::v1::TranscribeResponse* res) {
  std::unique_ptr<DecoderPool::Lease> lease;
  return Count(DoTranscribe(ctx, *req, res, &lease));
}

grpc::Status TranscriptionService::DoTranscribe(grpc::ServerContext* ctx, const jota::v1::TranscribeRequest& req,
                                                jota::v1::TranscribeResponse* res,
                                                std::unique_ptr<DecoderPool::Lease>* lease) {
  if (grpc::Status st = Admit(*ctx); !st.ok()) return st;
  TranscribeSettings settings;
  if (grpc::Status st = BuildTranscribeSettings(req, model_->multilingual, &settings); !st.ok()) return st;
  // Checked before decoding: the length a format implies is known from its size.
  const int64_t frames = static_cast<int64_t>(settings.audio.size() / settings.format.bytes_per_frame());
  if (frames > static_cast<int64_t>(config_.max_audio_s) * settings.format.sample_rate)
    return grpc::Status(grpc::StatusCode::OUT_OF_RANGE,
                        "the audio is " + std::to_string(frames / settings.format.sample_rate) +
                            " s long; this engine takes at most " + std::to_string(config_.max_audio_s) +
                            " s (--max-audio-s)");
  std::vector<float> pcm;
  std::string error;
  if (!ConvertAll(settings.audio, settings.format, &pcm, &error))
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, error);

  if (grpc::Status st = pool_->Acquire([ctx] { return ctx->IsCancelled(); }, lease); !st.ok()) return st;
  ++counters_.files;
  counters_.audio_samples += pcm.size();
  const DecodeResult r =
      (*lease)->decoder().Decode(pcm, settings.decode, [this, ctx] { return ctx->IsCancelled() || stopping_.load(); });
  if (!r.ok) {
    if (r.aborted) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled while decoding");
    return grpc::Status(grpc::StatusCode::INTERNAL, r.error);
  }
  res->set_text(r.text);
  for (const jota::v1::Segment& s : r.segments) *res->add_segments() = s;
  res->set_language(r.language);
  res->set_duration_s(static_cast<double>(pcm.size()) / kRate);
  res->set_decode_ms(r.decode_ms);
  LogInfo("transcribed", {{"request_id", settings.request_id},
                          {"audio_s", std::to_string(res->duration_s())},
                          {"decode_ms", std::to_string(static_cast<int64_t>(r.decode_ms))}});
  return grpc::Status::OK;
}

grpc::Status TranscriptionService::Stream(
    grpc::ServerContext* ctx, grpc::ServerReaderWriter<jota::v1::TranscriptEvent, jota::v1::AudioIn>* stream) {
  std::unique_ptr<DecoderPool::Lease> lease;
  return Count(DoStream(ctx, stream, &lease));
}

grpc::Status TranscriptionService::DoStream(
    grpc::ServerContext* ctx, grpc::ServerReaderWriter<jota::v1::TranscriptEvent, jota::v1::AudioIn>* stream,
    std::unique_ptr<DecoderPool::Lease>* lease) {
  if (grpc::Status st = Admit(*ctx); !st.ok()) return st;
  jota::v1::AudioIn in;
  if (!stream->Read(&in)) {
    if (ctx->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled before the config");
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the stream ended before its config message");
  }
  if (in.msg_case() != jota::v1::AudioIn::kConfig)
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the first message must be `config`; audio comes after it");
  StreamSettings settings;
  if (grpc::Status st = BuildStreamSettings(in.config(), model_->multilingual, &settings); !st.ok()) return st;

  std::unique_ptr<SpeechClassifier> classifier;
  if (settings.vad) {
    if (config_.vad_model.empty()) {
      classifier = std::make_unique<EnergyClassifier>(settings.vad_settings.threshold_db);
    } else {
      std::string error;
      classifier = MakeSileroClassifier(config_.vad_model, 1, &error);
      if (!classifier) return grpc::Status(grpc::StatusCode::INTERNAL, error);
    }
  }

  if (grpc::Status st = pool_->Acquire([ctx] { return ctx->IsCancelled(); }, lease); !st.ok()) return st;
  ++counters_.streams;

  std::mutex write_mu;  // the session writes from its decode thread too
  StreamSession session(
      std::move(settings), (*lease)->decoder(), std::move(classifier),
      static_cast<int64_t>(config_.max_audio_s) * kRate, counters_,
      [&](const jota::v1::TranscriptEvent& e) {
        std::lock_guard<std::mutex> lock(write_mu);
        return stream->Write(e);
      },
      [this, ctx] { return ctx->IsCancelled() || stopping_.load(); });
  while (stream->Read(&in)) {
    grpc::Status st;
    switch (in.msg_case()) {
      case jota::v1::AudioIn::kAudio: st = session.PushAudio(in.audio()); break;
      case jota::v1::AudioIn::kConfig:
        st = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "config may only be sent once, as the first message");
        break;
      case jota::v1::AudioIn::MSG_NOT_SET:
        st = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "a message with neither config nor audio");
        break;
    }
    if (!st.ok()) {
      session.Cancel();
      return st;
    }
  }
  const grpc::Status cancelled(grpc::StatusCode::CANCELLED, "the client cancelled the stream");
  if (ctx->IsCancelled()) {
    session.Cancel();
    return cancelled;
  }
  // A cancel can end Read() a moment (~0.3 ms) before IsCancelled() says so:
  // the flush's decode polls it (and stops at a failed write).
  grpc::Status st = session.Finish();
  return ctx->IsCancelled() ? cancelled : st;
}

}  // namespace jota::transcription
