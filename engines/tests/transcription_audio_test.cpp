// WAV parsing and PCM decoding: every common sample format, downmixing, and
// a precise refusal of everything else.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "audio.h"

using namespace jota::transcription;

namespace {

void Put16(std::string* s, uint16_t v) {
  s->push_back(static_cast<char>(v & 0xff));
  s->push_back(static_cast<char>(v >> 8));
}
void Put32(std::string* s, uint32_t v) {
  Put16(s, static_cast<uint16_t>(v & 0xffff));
  Put16(s, static_cast<uint16_t>(v >> 16));
}

struct WavSpec {
  uint16_t tag = 1;
  uint16_t channels = 1;
  uint32_t rate = 16000;
  uint16_t bits = 16;
  int block_align = -1;  // -1: consistent
  bool extensible = false;
  uint16_t sub_tag = 1;
  std::string extra_chunk;         // inserted between fmt and data
  int64_t data_size_field = -1;    // -1: the real size
};

std::string Wav(const WavSpec& w, const std::string& data) {
  std::string fmt;
  Put16(&fmt, w.extensible ? 0xFFFE : w.tag);
  Put16(&fmt, w.channels);
  Put32(&fmt, w.rate);
  const int align = w.block_align >= 0 ? w.block_align : w.channels * w.bits / 8;
  Put32(&fmt, w.rate * align);
  Put16(&fmt, static_cast<uint16_t>(align));
  Put16(&fmt, w.bits);
  if (w.extensible) {
    Put16(&fmt, 22);
    Put16(&fmt, w.bits);
    Put32(&fmt, 0);
    Put16(&fmt, w.sub_tag);
    fmt += std::string("\x00\x00\x00\x00\x10\x00\x80\x00\x00\xAA\x00\x38\x9B\x71", 14);
  }
  std::string body = "WAVE";
  body += "fmt ";
  Put32(&body, static_cast<uint32_t>(fmt.size()));
  body += fmt;
  body += w.extra_chunk;
  body += "data";
  Put32(&body, w.data_size_field >= 0 ? static_cast<uint32_t>(w.data_size_field) : static_cast<uint32_t>(data.size()));
  body += data;
  std::string out = "RIFF";
  Put32(&out, static_cast<uint32_t>(body.size()));
  return out + body;
}

std::string Pcm16(std::initializer_list<int16_t> v) {
  std::string s;
  for (int16_t x : v) Put16(&s, static_cast<uint16_t>(x));
  return s;
}

std::vector<float> Convert(const std::string& wav) {
  WavAudio a;
  std::string error;
  EXPECT_TRUE(ParseWav(wav, &a, &error)) << error;
  std::vector<float> out;
  EXPECT_TRUE(ConvertAll(a.data, a.format, &out, &error)) << error;
  return out;
}

std::string WavError(const std::string& wav) {
  WavAudio a;
  std::string error;
  EXPECT_FALSE(ParseWav(wav, &a, &error));
  return error;
}

}  // namespace

TEST(TranscriptionAudio, Pcm16MonoScalesLikeWhisperCli) {
  const auto out = Convert(Wav({}, Pcm16({0, 16384, -32768, 32767})));
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[0], 0.0f);
  EXPECT_EQ(out[1], 0.5f);
  EXPECT_EQ(out[2], -1.0f);
  EXPECT_EQ(out[3], 32767.0f / 32768.0f);
}

TEST(TranscriptionAudio, EightBitIsUnsigned) {
  WavSpec w;
  w.bits = 8;
  const auto out = Convert(Wav(w, std::string("\x80\x00\xC0", 3)));
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0], 0.0f);
  EXPECT_EQ(out[1], -1.0f);
  EXPECT_EQ(out[2], 0.5f);
}

TEST(TranscriptionAudio, TwentyFourBitIsSignExtended) {
  WavSpec w;
  w.bits = 24;
  const auto out = Convert(Wav(w, std::string("\x00\x00\x40" "\x00\x00\x80" "\xFF\xFF\xFF", 9)));
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0], 0.5f);
  EXPECT_EQ(out[1], -1.0f);
  EXPECT_FLOAT_EQ(out[2], -1.0f / 8388608.0f);
}

TEST(TranscriptionAudio, ThirtyTwoBitInteger) {
  WavSpec w;
  w.bits = 32;
  std::string d;
  Put32(&d, 0x40000000u);
  Put32(&d, 0x80000000u);
  const auto out = Convert(Wav(w, d));
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0], 0.5f);
  EXPECT_EQ(out[1], -1.0f);
}

TEST(TranscriptionAudio, FloatSamplesPassAndNonFiniteBecomeSilence) {
  WavSpec w;
  w.tag = 3;
  w.bits = 32;
  std::string d;
  for (float f : {0.25f, -0.75f, std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    Put32(&d, bits);
  }
  const auto out = Convert(Wav(w, d));
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[0], 0.25f);
  EXPECT_EQ(out[1], -0.75f);
  EXPECT_EQ(out[2], 0.0f);
  EXPECT_EQ(out[3], 0.0f);
}

TEST(TranscriptionAudio, ExtensibleFormatUsesItsSubFormat) {
  WavSpec w;
  w.extensible = true;
  w.sub_tag = 1;
  EXPECT_EQ(Convert(Wav(w, Pcm16({16384}))), std::vector<float>({0.5f}));
  w.sub_tag = 2;
  EXPECT_NE(WavError(Wav(w, Pcm16({16384}))).find("encoding 2"), std::string::npos);
}

TEST(TranscriptionAudio, ChannelsAreAveraged) {
  WavSpec w;
  w.channels = 2;
  const auto out = Convert(Wav(w, Pcm16({16384, -8192, 32767, 32767})));
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0], 0.125f);
  EXPECT_EQ(out[1], 32767.0f / 32768.0f);
}

TEST(TranscriptionAudio, UnknownChunksAreSkippedWithTheirPadding) {
  WavSpec w;
  w.extra_chunk = std::string("LIST\x03\x00\x00\x00" "abc" "\x00", 12);  // odd size, one pad byte
  EXPECT_EQ(Convert(Wav(w, Pcm16({16384}))), std::vector<float>({0.5f}));
}

TEST(TranscriptionAudio, UnsetDataSizeReadsToTheEndAndDropsAPartialFrame) {
  WavSpec w;
  w.data_size_field = 0xFFFFFFFF;
  const auto out = Convert(Wav(w, Pcm16({16384, 8192}) + "\x01"));
  EXPECT_EQ(out, std::vector<float>({0.5f, 0.25f}));
}

TEST(TranscriptionAudio, RefusesWhatIsNotAUsableWav) {
  EXPECT_EQ(WavError("hello, not audio"), "not a WAV file (no RIFF/WAVE header)");
  EXPECT_EQ(WavError(""), "not a WAV file (no RIFF/WAVE header)");
  EXPECT_EQ(WavError(std::string("RIFF\x04\x00\x00\x00WAVE", 12)), "WAV file has no fmt chunk");

  std::string no_data = Wav({}, "");
  no_data.resize(no_data.size() - 8);  // drop the data chunk header
  EXPECT_EQ(WavError(no_data), "WAV file has no data chunk");

  WavSpec adpcm;
  adpcm.tag = 2;
  adpcm.bits = 4;
  EXPECT_NE(WavError(Wav(adpcm, "xx")).find("WAV encoding 2 is not supported"), std::string::npos);

  WavSpec twelve;
  twelve.bits = 12;
  twelve.block_align = 2;
  EXPECT_NE(WavError(Wav(twelve, "xx")).find("12-bit PCM"), std::string::npos);

  WavSpec slow;
  slow.rate = 4000;
  EXPECT_NE(WavError(Wav(slow, Pcm16({1}))).find("sample rate 4000 Hz is not supported"), std::string::npos);

  WavSpec many;
  many.channels = 9;
  EXPECT_NE(WavError(Wav(many, Pcm16({1, 1, 1, 1, 1, 1, 1, 1, 1}))).find("9 channels"), std::string::npos);

  WavSpec odd_align;
  odd_align.block_align = 3;
  EXPECT_NE(WavError(Wav(odd_align, Pcm16({1}))).find("block align 3"), std::string::npos);

  std::string truncated = Wav({}, Pcm16({1}));
  truncated.resize(24);  // inside the fmt chunk
  EXPECT_EQ(WavError(truncated), "WAV fmt chunk is truncated");
}

TEST(TranscriptionAudio, ChunksMustHoldWholeFrames) {
  AudioConverter mono16({16000, SampleType::kInt16, 1});
  std::vector<float> out;
  std::string error;
  EXPECT_FALSE(mono16.Push("abc", &out, &error));
  EXPECT_EQ(error, "audio chunk of 3 bytes is not a whole number of 2-byte frames (16-bit PCM, 1 channel(s))");
  EXPECT_TRUE(mono16.Push("", &out, &error));
  EXPECT_TRUE(out.empty());

  AudioConverter stereo_float({16000, SampleType::kFloat32, 2});
  EXPECT_FALSE(stereo_float.Push(std::string(12, '\0'), &out, &error));
  EXPECT_NE(error.find("8-byte frames"), std::string::npos);
  EXPECT_TRUE(stereo_float.Push(std::string(16, '\0'), &out, &error));
  EXPECT_EQ(out.size(), 2u);
}

TEST(TranscriptionAudio, FormatLimits) {
  EXPECT_EQ(CheckFormat({16000, SampleType::kInt16, 1}), "");
  EXPECT_EQ(CheckFormat({8000, SampleType::kInt16, 2}), "");
  EXPECT_EQ(CheckFormat({192000, SampleType::kFloat32, 8}), "");
  EXPECT_EQ(CheckFormat({7999, SampleType::kInt16, 1}), "sample rate 7999 Hz is not supported (8000..192000 Hz; 16000 is native)");
  EXPECT_EQ(CheckFormat({16000, SampleType::kInt16, 0}), "0 channels are not supported (1..8)");
}
