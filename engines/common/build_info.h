// Versions compiled in by CMake (engines/common/CMakeLists.txt).
#pragma once

#include "jota/v1/common.pb.h"

namespace jota {
// engine: "llama.cpp" or "whisper.cpp"; system_info: the upstream's CPU feature line.
jota::v1::BuildInfo MakeBuildInfo(const std::string& engine, const std::string& system_info);
const char* JotaVersion();
}  // namespace jota
