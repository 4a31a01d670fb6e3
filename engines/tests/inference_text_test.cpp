#include <gtest/gtest.h>

#include "text.h"

using jota::inference::CompleteUtf8Prefix;
using jota::inference::SanitizeUtf8;
using jota::inference::StopMatcher;

TEST(Utf8, IncompleteTrailingCharactersAreHeldBack) {
  std::string e_acute = "\xC3\xA9";       // é
  std::string euro = "\xE2\x82\xAC";      // €
  std::string emoji = "\xF0\x9F\x98\x80"; // 😀
  EXPECT_EQ(CompleteUtf8Prefix("abc"), 3u);
  EXPECT_EQ(CompleteUtf8Prefix("a" + e_acute), 3u);
  EXPECT_EQ(CompleteUtf8Prefix("a" + e_acute.substr(0, 1)), 1u);
  EXPECT_EQ(CompleteUtf8Prefix("x" + euro.substr(0, 2)), 1u);
  EXPECT_EQ(CompleteUtf8Prefix("x" + emoji.substr(0, 3)), 1u);
  EXPECT_EQ(CompleteUtf8Prefix("x" + emoji), 5u);
  EXPECT_EQ(CompleteUtf8Prefix(""), 0u);
  // A stray continuation byte is invalid, not incomplete: it must not block.
  EXPECT_EQ(CompleteUtf8Prefix("a\x80"), 2u);
}

TEST(Utf8, SanitizeReplacesInvalidSequences) {
  EXPECT_EQ(SanitizeUtf8("ok \xC3\xA9"), "ok \xC3\xA9");
  EXPECT_EQ(SanitizeUtf8("a\xFF" "b"), "a\xEF\xBF\xBD" "b");
  EXPECT_EQ(SanitizeUtf8("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // overlong '/'
  EXPECT_EQ(SanitizeUtf8("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  EXPECT_EQ(SanitizeUtf8("\xE2\x82"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // truncated at the end
}

TEST(StopMatcher, StreamsFreelyWithoutStops) {
  StopMatcher m({});
  auto r = m.Push("hello ");
  EXPECT_EQ(r.emit, "hello ");
  EXPECT_FALSE(r.stopped);
}

TEST(StopMatcher, CatchesAStopSplitAcrossPiecesAndNeverStreamsIt) {
  StopMatcher m({"</end>"});
  std::string streamed;
  for (const char* piece : {"The answer", " is 4</", "en", "d> trailing"}) {
    auto r = m.Push(piece);
    streamed += r.emit;
    if (r.stopped) {
      EXPECT_EQ(r.stop, "</end>");
      break;
    }
  }
  EXPECT_EQ(streamed, "The answer is 4");
}

TEST(StopMatcher, HeldBackTextIsReleasedWhenItTurnsOutNotToBeAStop) {
  StopMatcher m({"STOP"});
  auto r1 = m.Push("go ST");
  EXPECT_EQ(r1.emit, "go ");
  auto r2 = m.Push("ART");
  EXPECT_EQ(r2.emit, "START");
  EXPECT_FALSE(r2.stopped);
}

TEST(StopMatcher, EarliestOfSeveralStopsWins) {
  StopMatcher m({"bb", "a"});
  auto r = m.Push("xxabb");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.stop, "a");
  EXPECT_EQ(r.emit, "xx");
}

TEST(StopMatcher, HoldsIncompleteUtf8AndFlushesTheRest) {
  StopMatcher m({});
  auto r = m.Push("caf\xC3");
  EXPECT_EQ(r.emit, "caf");
  auto r2 = m.Push("\xA9!");
  EXPECT_EQ(r2.emit, "\xC3\xA9!");
  m.Push("x\xE2\x82");
  EXPECT_EQ(m.Flush(), "\xEF\xBF\xBD\xEF\xBF\xBD");  // 'x' was already emitted
}
