// JSON files read whole: the content, and errors that name the file.
#include <gtest/gtest.h>

#include <fstream>

#include "core/error.h"
#include "io/json_file.h"
#include "io_test_util.h"

namespace umamba::io {
namespace {

using test::TempDir;

TEST(Io_JsonFile, reads_in_order_and_names_the_file_on_errors) {
  TempDir dir;
  const auto good = dir.path() / "plans.json";
  std::ofstream(good) << R"({"z": 1, "a": [2, 3]})";
  EXPECT_EQ(read_json_file(good).at("a").at(1).get<int>(), 3);
  const auto ordered = read_ordered_json_file(good);
  EXPECT_EQ(ordered.begin().key(), "z");  // the file's order, not sorted

  const auto missing = dir.path() / "missing.json";
  try {
    (void)read_json_file(missing);
    FAIL() << "a missing file was read";
  } catch (const FileError& e) {
    EXPECT_EQ(e.path(), missing.string());
    EXPECT_NE(std::string(e.what()).find("cannot be opened"), std::string::npos) << e.what();
  }
  const auto bad = dir.path() / "bad.json";
  std::ofstream(bad) << R"({"z": 1,)";
  for (int ordered_too = 0; ordered_too < 2; ++ordered_too) {
    try {
      if (ordered_too) {
        (void)read_ordered_json_file(bad);
      } else {
        (void)read_json_file(bad);
      }
      FAIL() << "invalid JSON was read";
    } catch (const FileError& e) {
      EXPECT_EQ(e.path(), bad.string());
      EXPECT_NE(std::string(e.what()).find("is not valid JSON"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace umamba::io
