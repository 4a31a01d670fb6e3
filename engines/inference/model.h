// The model layer: llama.cpp calls only. Loads GGUF files and describes them.
#pragma once

#include <memory>
#include <string>

#include "jota/v1/inference.pb.h"

struct llama_model;

namespace jota::inference {

struct ModelDeleter { void operator()(llama_model* m) const; };
using ModelPtr = std::unique_ptr<llama_model, ModelDeleter>;

// Process-wide llama.cpp set-up (backend, log routing into Jota's JSON log).
void InitBackend();

struct LoadedModel {
  ModelPtr model;
  std::string path;
  jota::v1::ModelInfo info;
};

// Loads `path`; on failure returns nullptr and fills `error`.
std::unique_ptr<LoadedModel> LoadModel(const std::string& path, int ctx_size, std::string* error);

std::string SystemInfo();

// Makes a LoadModel in progress give up (at shutdown during a long load).
void CancelLoading();

}  // namespace jota::inference
