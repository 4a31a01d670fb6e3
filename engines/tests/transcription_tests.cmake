# Unit tests of jota-transcription's parts (the gRPC-level suites are the
# transcription-*.test.ts files beside this one).
foreach(name IN ITEMS audio resampler vad session scheduler settings)
  jota_engine_test(transcription_${name} jota-transcription-core)
endforeach()
