#include <gtest/gtest.h>

#include "flags.h"

using jota::Flags;
using jota::IntRange;

namespace {
Flags MakeFlags() {
  Flags f("prog", "test");
  f.add({"model", "JOTA_MODEL", "", "model"});
  f.add({"slots", "JOTA_SLOTS", "4", "slots", false, IntRange{1, 8}});
  f.add({"verbose", "JOTA_VERBOSE", "", "verbose", true});
  return f;
}
}  // namespace

TEST(Flags, DefaultsApplyWhenNothingIsGiven) {
  Flags f = MakeFlags();
  std::string err;
  ASSERT_TRUE(f.parse({}, {}, &err)) << err;
  EXPECT_EQ(f.integer("slots"), 4);
  EXPECT_EQ(f.str("model"), "");
  EXPECT_FALSE(f.boolean("verbose"));
  EXPECT_FALSE(f.given("slots"));
  EXPECT_EQ(f.source("slots"), "default");
}

TEST(Flags, FlagBeatsEnvironmentBeatsDefault) {
  Flags f = MakeFlags();
  std::string err;
  ASSERT_TRUE(f.parse({}, {{"JOTA_SLOTS", "2"}}, &err)) << err;
  EXPECT_EQ(f.integer("slots"), 2);
  EXPECT_EQ(f.source("slots"), "env JOTA_SLOTS");
  ASSERT_TRUE(f.parse({"--slots", "3"}, {{"JOTA_SLOTS", "2"}}, &err)) << err;
  EXPECT_EQ(f.integer("slots"), 3);
  ASSERT_TRUE(f.parse({"--slots=5", "--model=m.gguf", "--verbose"}, {}, &err)) << err;
  EXPECT_EQ(f.integer("slots"), 5);
  EXPECT_EQ(f.str("model"), "m.gguf");
  EXPECT_TRUE(f.boolean("verbose"));
}

TEST(Flags, RejectsUnknownFlagsAndBadValuesWithTheReason) {
  Flags f = MakeFlags();
  std::string err;
  EXPECT_FALSE(f.parse({"--nope"}, {}, &err));
  EXPECT_EQ(err, "unknown flag --nope");
  EXPECT_FALSE(f.parse({"--slots", "many"}, {}, &err));
  EXPECT_NE(err.find("'many' is not an integer"), std::string::npos) << err;
  EXPECT_FALSE(f.parse({"--slots", "9"}, {}, &err));
  EXPECT_NE(err.find("outside [1, 8]"), std::string::npos) << err;
  EXPECT_FALSE(f.parse({}, {{"JOTA_SLOTS", "0"}}, &err));
  EXPECT_NE(err.find("env JOTA_SLOTS"), std::string::npos) << err;
  EXPECT_FALSE(f.parse({"--model"}, {}, &err));
  EXPECT_EQ(err, "flag --model needs a value");
  EXPECT_FALSE(f.parse({"stray"}, {}, &err));
  EXPECT_FALSE(f.parse({"--verbose=maybe"}, {}, &err));
}

TEST(Flags, UsageListsEveryFlagWithItsEnvironmentVariable) {
  Flags f = MakeFlags();
  std::string u = f.usage();
  for (const char* s : {"--model", "[JOTA_MODEL]", "--slots", "(default: 4)", "--verbose", "--help"})
    EXPECT_NE(u.find(s), std::string::npos) << s;
}
