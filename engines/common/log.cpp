#include "log.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace jota {
namespace {
std::string g_component = "engine";
std::mutex g_mu;
}  // namespace

void SetLogComponent(const std::string& component) { g_component = component; }

std::string JsonEscape(const std::string& s) {
  std::string out;
  out.reserve(s.size() + 2);
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

void Log(const char* level, const std::string& msg, const LogFields& fields) {
  auto now = std::chrono::system_clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char ts[32];
  std::snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
  std::string line = std::string("{\"time\":\"") + ts + "\",\"level\":\"" + level + "\",\"component\":\"" +
                     g_component + "\",\"msg\":\"" + JsonEscape(msg) + "\"";
  for (const auto& [k, v] : fields) line += ",\"" + JsonEscape(k) + "\":\"" + JsonEscape(v) + "\"";
  line += "}\n";
  std::lock_guard<std::mutex> lock(g_mu);
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
}

}  // namespace jota
