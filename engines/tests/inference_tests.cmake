# Unit tests of the inference engine's pure parts.
jota_engine_test(inference_text jota-inference-core)
