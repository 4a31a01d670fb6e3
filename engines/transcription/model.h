// The model layer: whisper.cpp calls only.
#pragma once

#include <memory>
#include <string>

#include "jota/v1/transcription.pb.h"

struct whisper_context;

namespace jota::transcription {

struct ContextDeleter { void operator()(whisper_context* c) const; };
using ContextPtr = std::unique_ptr<whisper_context, ContextDeleter>;

void InitBackend();
std::string SystemInfo();

struct LoadedModel {
  // The weights only: each stream gets its own whisper_state (whisper_init_state).
  ContextPtr ctx;
  std::string path;
  std::string type;        // tiny | base | ...
  bool multilingual = false;
};

std::unique_ptr<LoadedModel> LoadModel(const std::string& path, int threads, std::string* error);

// Every language the model can transcribe ("en" only for .en models).
std::vector<std::string> Languages(const LoadedModel& m);

}  // namespace jota::transcription
