// The fault-injection plan (core/fault_injection.h) and its hooks in io: which calls fail, the
// subject filters, malformed plans, and what a failed write or rename leaves on disk (nothing
// under the final name, no temporary, an existing file untouched).
#include "core/fault_injection.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/image_io.h"

namespace umamba {
namespace {

namespace fs = std::filesystem;

// Restores an inert plan after each test (the plan is process-wide).
struct Plan {
  explicit Plan(const std::string& spec) { fault::configure(spec); }
  ~Plan() { fault::configure(""); }
};

std::vector<int> failing_calls(fault::Kind kind, int n, std::string_view subject = {}) {
  std::vector<int> out;
  for (int i = 1; i <= n; ++i) {
    if (fault::should_fail(kind, subject)) out.push_back(i);
  }
  return out;
}

fs::path scratch(const std::string& name) {
  const fs::path d = fs::path(UMAMBA_BINARY_DIR) / "test_output" / "reliability" /
                     (name + "-" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> v;
  for (const auto& e : fs::directory_iterator(dir)) v.push_back(e.path().filename().string());
  std::sort(v.begin(), v.end());
  return v;
}

TEST(Reliability_FaultInjection, inert_without_a_plan) {
  Plan p("");
  EXPECT_TRUE(failing_calls(fault::Kind::Write, 50).empty());
  EXPECT_EQ(fault::calls(fault::Kind::Write), 0);
}

TEST(Reliability_FaultInjection, nth_ranges_and_open_ends) {
  Plan p("write:2, rename:1-3,read:4+,alloc:2,alloc:5");
  EXPECT_EQ(failing_calls(fault::Kind::Write, 6), (std::vector<int>{2}));
  EXPECT_EQ(failing_calls(fault::Kind::Rename, 6), (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(failing_calls(fault::Kind::Read, 7), (std::vector<int>{4, 5, 6, 7}));
  EXPECT_EQ(failing_calls(fault::Kind::Alloc, 6), (std::vector<int>{2, 5}));
  EXPECT_EQ(fault::calls(fault::Kind::Read), 7);
}

TEST(Reliability_FaultInjection, subject_filters_count_their_own_calls) {
  Plan p("write:2@b_label,write:1");
  // The unfiltered entry counts every call; the filtered one only calls naming b_label.
  EXPECT_TRUE(fault::should_fail(fault::Kind::Write, "out/a_label.tiff"));   // call 1
  EXPECT_FALSE(fault::should_fail(fault::Kind::Write, "out/b_label.tiff"));  // b #1
  EXPECT_FALSE(fault::should_fail(fault::Kind::Write, "out/c_label.tiff"));
  EXPECT_TRUE(fault::should_fail(fault::Kind::Write, "out/b_label.tiff"));  // b #2
  EXPECT_FALSE(fault::should_fail(fault::Kind::Write, "out/b_label.tiff"));
  EXPECT_FALSE(fault::should_fail(fault::Kind::Alloc));  // no filter matches an empty subject
}

TEST(Reliability_FaultInjection, malformed_plans_name_the_entry) {
  for (const char* bad : {"write", "write:0", "write:x", "disk:1", "write:3-1", "read:1@",
                          "write:-2", "rename:99999999999999999999"}) {
    try {
      fault::configure(bad);
      ADD_FAILURE() << bad << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("UMAMBA_FAULT_INJECT"), std::string::npos) << e.what();
    }
  }
  fault::configure("");
  EXPECT_FALSE(fault::should_fail(fault::Kind::Write));
}

TEST(Reliability_AtomicOutput, failed_write_or_rename_leaves_nothing_and_keeps_the_old_file) {
  const fs::path d = scratch("atomic");
  const fs::path target = d / "result.txt";
  { std::ofstream(target) << "old"; }
  for (const char* spec : {"write:1", "rename:1"}) {
    Plan p(spec);
    {
      io::AtomicOutput out(target, /*overwrite=*/true);
      std::ofstream(out.temporary_path()) << "new content";
      try {
        out.commit();
        ADD_FAILURE() << spec << ": commit succeeded";
      } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("result.txt"), std::string::npos) << msg;
        EXPECT_NE(msg.find(std::string(spec).substr(0, std::string(spec).find(':'))),
                  std::string::npos)
            << msg;
      }
    }
    EXPECT_EQ(slurp(target), "old") << spec;
    EXPECT_EQ(names_in(d), (std::vector<std::string>{"result.txt"})) << spec;  // no temporary
  }
  // Without a plan the same sequence replaces the file.
  {
    io::AtomicOutput out(target, true);
    std::ofstream(out.temporary_path()) << "new";
    out.commit();
  }
  EXPECT_EQ(slurp(target), "new");
  fs::remove_all(d);
}

TEST(Reliability_AtomicOutput, image_writers_leave_no_partial_file) {
  const fs::path d = scratch("writers");
  Image img = Image::zeros(DType::U16, {1, 1, 20, 30});
  for (int64_t i = 0; i < 600; ++i) img.data_as<uint16_t>()[i] = static_cast<uint16_t>(i);
  for (const char* name : {"a.tiff", "a.nii.gz"}) {
    for (const char* spec : {"write:1", "rename:1"}) {
      Plan p(spec);
      EXPECT_THROW(io::write_image(d / name, img), Error) << name << " " << spec;
      EXPECT_TRUE(names_in(d).empty()) << name << " " << spec;
    }
    io::write_image(d / name, img);
    EXPECT_TRUE(io::read_image(d / name).same_pixels(img)) << name;
    fs::remove(d / name);
  }
  fs::remove_all(d);
}

TEST(Reliability_FaultInjection, read_fault_is_a_file_error_naming_the_file) {
  const fs::path d = scratch("read");
  io::write_image(d / "x.tif", Image::zeros(DType::U8, {1, 1, 4, 4}));
  Plan p("read:2@x.tif");
  EXPECT_NO_THROW(io::open_image(d / "x.tif"));
  try {
    io::open_image(d / "x.tif");
    ADD_FAILURE() << "second open succeeded";
  } catch (const FileError& e) {
    EXPECT_EQ(e.path(), (d / "x.tif").string());
    EXPECT_NE(std::string(e.what()).find("injected"), std::string::npos);
  }
  EXPECT_NO_THROW(io::open_image(d / "x.tif"));
  fs::remove_all(d);
}

}  // namespace
}  // namespace umamba
