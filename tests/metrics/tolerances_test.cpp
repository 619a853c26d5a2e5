// Tolerance tables: the bundled abdomen table, both entry forms, defaults, and clear errors.
#include <gtest/gtest.h>

#include "core/error.h"
#include "metrics/tolerances.h"

namespace um = umamba::metrics;

TEST(Metrics_Tolerances, abdomen_table_is_flare22) {
  const auto t =
      um::load_tolerances(std::string(UMAMBA_SOURCE_DIR) + "/configs/nsd_tolerances_abdomen.json");
  EXPECT_EQ(t.unit, "mm");
  const double want[13] = {5, 3, 3, 5, 2, 2, 2, 2, 2, 3, 5, 7, 3};
  for (int l = 1; l <= 13; ++l) EXPECT_EQ(t.at(l), want[l - 1]) << l;
  EXPECT_EQ(t.name(1), "liver");
  EXPECT_EQ(t.name(13), "left kidney");
  EXPECT_THROW(t.at(14), umamba::Error);
}

TEST(Metrics_Tolerances, numbers_objects_and_default) {
  const auto t = um::parse_tolerances(
      R"({"default": 1.5, "labels": {"2": 3, "7": {"name": "x", "tolerance": 0.25}}})", "inline");
  EXPECT_EQ(t.at(2), 3);
  EXPECT_EQ(t.at(7), 0.25);
  EXPECT_EQ(t.at(99), 1.5);
  EXPECT_EQ(t.name(7), "x");
}

TEST(Metrics_Tolerances, errors_name_the_entry) {
  auto message = [](const std::string& text) {
    try {
      um::parse_tolerances(text, "t.json");
    } catch (const umamba::FileError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("{").find("not valid JSON"), std::string::npos);
  EXPECT_NE(message(R"({"labels": {"a": 1}})").find("\"a\""), std::string::npos);
  EXPECT_NE(message(R"({"labels": {"3": -1}})").find("label 3"), std::string::npos);
  EXPECT_NE(message(R"({"labels": {"0": 1}})").find("background"), std::string::npos);
  EXPECT_NE(message(R"({"tolerances": {}})").find("\"labels\""), std::string::npos);
}
