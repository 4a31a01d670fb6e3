// Structured JSON log lines on stderr, one object per line, so the control
// plane (which runs engines as children) can forward them as they are.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace jota {

using LogFields = std::vector<std::pair<std::string, std::string>>;

void SetLogComponent(const std::string& component);  // "inference" | "transcription"
void Log(const char* level, const std::string& msg, const LogFields& fields = {});
inline void LogInfo(const std::string& msg, const LogFields& f = {}) { Log("info", msg, f); }
inline void LogWarn(const std::string& msg, const LogFields& f = {}) { Log("warn", msg, f); }
inline void LogError(const std::string& msg, const LogFields& f = {}) { Log("error", msg, f); }

std::string JsonEscape(const std::string& s);

}  // namespace jota
