#include <gtest/gtest.h>

#include "auth.h"

using jota::BearerAuth;

TEST(Auth, DisabledWhenNoTokenIsConfigured) {
  BearerAuth auth("");
  EXPECT_FALSE(auth.enabled());
  EXPECT_TRUE(auth.CheckHeader(nullptr).ok());
}

TEST(Auth, AcceptsOnlyTheExactBearerToken) {
  BearerAuth auth("s3cret");
  std::string good = "Bearer s3cret";
  EXPECT_TRUE(auth.CheckHeader(&good).ok());
  for (std::string bad : {"Bearer s3cre", "Bearer s3cret!", "Bearer S3CRET", "bearer s3cret", "s3cret",
                          "Bearer ", "Basic czNjcmV0", ""}) {
    grpc::Status st = auth.CheckHeader(&bad);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED) << bad;
  }
  grpc::Status missing = auth.CheckHeader(nullptr);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(missing.error_message().find("missing"), std::string::npos);
}

TEST(Auth, ConstantTimeEqualsIsPlainEquality) {
  EXPECT_TRUE(jota::ConstantTimeEquals("", ""));
  EXPECT_TRUE(jota::ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(jota::ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(jota::ConstantTimeEquals("abc", "ab"));
  EXPECT_FALSE(jota::ConstantTimeEquals("ab", "abc"));
  EXPECT_FALSE(jota::ConstantTimeEquals(std::string("a\0b", 3), "a"));
}
