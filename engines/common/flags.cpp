#include "flags.h"

#include <cerrno>
#include <cstdlib>
#include <iostream>
#include <sstream>

namespace jota {
namespace {
bool ParseInt(const std::string& s, long long* out) {
  if (s.empty()) return false;
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (errno != 0 || end == s.c_str() || *end != '\0') return false;
  *out = v;
  return true;
}

bool ParseBool(const std::string& s, bool* out) {
  if (s == "1" || s == "true" || s == "yes" || s == "on") { *out = true; return true; }
  if (s == "0" || s == "false" || s == "no" || s == "off" || s.empty()) { *out = false; return true; }
  return false;
}
}  // namespace

Flags::Flags(std::string program, std::string summary)
    : program_(std::move(program)), summary_(std::move(summary)) {
  add({"help", "", "", "print this help and exit", true});
}

void Flags::add(FlagSpec spec) { specs_.push_back(std::move(spec)); }

const FlagSpec* Flags::find(const std::string& name) const {
  for (const auto& s : specs_)
    if (s.name == name) return &s;
  return nullptr;
}

bool Flags::parse(int argc, char** argv, int* exit_code) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::map<std::string, std::string> env;
  for (const auto& s : specs_)
    if (!s.env.empty())
      if (const char* v = std::getenv(s.env.c_str())) env[s.env] = v;
  std::string error;
  if (!parse(args, env, &error)) {
    std::cerr << program_ << ": " << error << "\n(see " << program_ << " --help)\n";
    *exit_code = 2;
    return false;
  }
  if (boolean("help")) {
    std::cout << usage();
    *exit_code = 0;
    return false;
  }
  return true;
}

bool Flags::parse(const std::vector<std::string>& args,
                  const std::map<std::string, std::string>& env, std::string* error) {
  values_.clear();
  sources_.clear();
  for (const auto& s : specs_) {
    if (!s.def.empty()) { values_[s.name] = s.def; sources_[s.name] = "default"; }
    auto it = s.env.empty() ? env.end() : env.find(s.env);
    if (it != env.end()) { values_[s.name] = it->second; sources_[s.name] = "env " + s.env; }
  }
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.rfind("--", 0) != 0) { *error = "unexpected argument '" + a + "'"; return false; }
    std::string name = a.substr(2), value;
    bool has_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    const FlagSpec* spec = find(name);
    if (!spec) { *error = "unknown flag --" + name; return false; }
    if (!has_value) {
      if (spec->is_bool) {
        value = "true";
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        *error = "flag --" + name + " needs a value";
        return false;
      }
    }
    values_[name] = value;
    sources_[name] = "flag";
  }
  for (const auto& s : specs_) {
    auto it = values_.find(s.name);
    if (it == values_.end()) continue;
    if (s.is_bool) {
      bool b;
      if (!ParseBool(it->second, &b)) {
        *error = "--" + s.name + " (" + sources_[s.name] + "): '" + it->second + "' is not a boolean";
        return false;
      }
    }
    if (s.range) {
      const IntRange& r = *s.range;
      long long v;
      if (!ParseInt(it->second, &v)) {
        *error = "--" + s.name + " (" + sources_[s.name] + "): '" + it->second + "' is not an integer";
        return false;
      }
      if (v < r.min || v > r.max) {
        *error = "--" + s.name + " (" + sources_[s.name] + "): " + it->second + " is outside [" +
                 std::to_string(r.min) + ", " + std::to_string(r.max) + "]";
        return false;
      }
    }
  }
  return true;
}

std::string Flags::str(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? std::string() : it->second;
}

int Flags::integer(const std::string& name) const {
  long long v = 0;
  ParseInt(str(name), &v);
  return static_cast<int>(v);
}

bool Flags::boolean(const std::string& name) const {
  bool b = false;
  ParseBool(str(name), &b);
  return b;
}

bool Flags::given(const std::string& name) const {
  auto it = sources_.find(name);
  return it != sources_.end() && it->second != "default";
}

std::string Flags::source(const std::string& name) const {
  auto it = sources_.find(name);
  return it == sources_.end() ? "unset" : it->second;
}

std::string Flags::usage() const {
  std::ostringstream o;
  o << "Usage: " << program_ << " [flags]\n" << summary_ << "\n\nFlags (environment fallback in brackets):\n";
  for (const auto& s : specs_) {
    std::string left = "  --" + s.name + (s.is_bool ? "" : " VALUE");
    o << left;
    if (left.size() < 28) o << std::string(28 - left.size(), ' ');
    else o << "\n" << std::string(28, ' ');
    o << s.help;
    if (!s.env.empty()) o << " [" << s.env << "]";
    if (!s.def.empty()) o << " (default: " << s.def << ")";
    o << "\n";
  }
  return o.str();
}

}  // namespace jota
