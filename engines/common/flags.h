// Command-line flags with environment-variable fallbacks, shared by both
// engines. Precedence: --flag, then the environment variable, then the default.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace jota {

// Integer flags are checked at parse time against these (inclusive) bounds.
struct IntRange { long long min, max; };

struct FlagSpec {
  std::string name;       // "model" -> --model / --model=VALUE
  std::string env;        // "JOTA_MODEL" ("" for none)
  std::string def;        // default value ("" = none)
  std::string help;
  bool is_bool = false;   // --name alone means "true"
  std::optional<IntRange> range;  // set: the value must be an integer within it
};

class Flags {
 public:
  Flags(std::string program, std::string summary);
  void add(FlagSpec spec);

  // Parses argv (and the environment). On --help prints usage and returns
  // false with exit_code 0; on an error prints it and returns false with 2.
  bool parse(int argc, char** argv, int* exit_code);
  // For tests: parse with an explicit environment instead of getenv().
  bool parse(const std::vector<std::string>& args,
             const std::map<std::string, std::string>& env, std::string* error);

  std::string str(const std::string& name) const;
  int integer(const std::string& name) const;  // value validated by parse()
  bool boolean(const std::string& name) const;
  bool given(const std::string& name) const;   // set by flag or environment
  std::string usage() const;

  // Which source a value came from, for the start-up log.
  std::string source(const std::string& name) const;

 private:
  const FlagSpec* find(const std::string& name) const;
  std::string program_, summary_;
  std::vector<FlagSpec> specs_;
  std::map<std::string, std::string> values_;
  std::map<std::string, std::string> sources_;
};

}  // namespace jota
