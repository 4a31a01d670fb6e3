#include "build_info.h"

namespace jota {

const char* JotaVersion() { return JOTA_VERSION; }

jota::v1::BuildInfo MakeBuildInfo(const std::string& engine, const std::string& system_info) {
  jota::v1::BuildInfo b;
  b.set_version(JOTA_VERSION);
  b.set_engine(engine);
  b.set_engine_commit(engine == "whisper.cpp" ? JOTA_WHISPER_CPP_COMMIT : JOTA_LLAMA_CPP_COMMIT);
  b.set_ggml_version(JOTA_GGML_VERSION);
  b.set_system_info(system_info);
  return b;
}

}  // namespace jota
