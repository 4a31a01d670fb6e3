// Stream settings from the wire: the VAD's values are checked against each
// other, not only one by one.
#include <gtest/gtest.h>

#include "settings.h"

using namespace jota::transcription;

namespace {

// 0 = the default, as on the wire.
grpc::Status Build(int hangover_ms, int max_utterance_ms, int pre_roll_ms = 0) {
  jota::v1::StreamConfig c;
  c.mutable_format()->set_sample_rate(16000);
  c.mutable_format()->set_encoding(jota::v1::AUDIO_ENCODING_PCM16LE);
  jota::v1::VadConfig* v = c.mutable_vad();
  v->set_enabled(true);
  v->set_hangover_ms(hangover_ms);
  v->set_max_utterance_ms(max_utterance_ms);
  v->set_pre_roll_ms(pre_roll_ms);
  StreamSettings s;
  return BuildStreamSettings(c, false, &s);
}

}  // namespace

TEST(TranscriptionSettings, AHangoverLongerThanHalfTheMaximumUtteranceIsRefused) {
  grpc::Status st = Build(3000, 5000);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message(), "config.vad.hangover_ms (3000) must be at most half of config.vad.max_utterance_ms (5000)");
  EXPECT_EQ(Build(501, 1000).error_message(),
            "config.vad.hangover_ms (501) must be at most half of config.vad.max_utterance_ms (1000)");
  EXPECT_TRUE(Build(500, 1000).ok());    // exactly half
  EXPECT_TRUE(Build(0, 1000).ok());      // the default 500 against the smallest maximum
  EXPECT_TRUE(Build(10000, 0).ok());     // the largest hangover against the default 25000
  EXPECT_TRUE(Build(0, 0).ok());
}

TEST(TranscriptionSettings, APreRollLongerThanTheHangoverIsAllowed) {
  // The session keeps the pre-roll out of the previous utterance, so this
  // only shortens it where utterances follow each other closely.
  EXPECT_TRUE(Build(50, 0, 1000).ok());
}
