// `umamba predict` outputs checked by independent readers and labellers (label `python`): the
// GoogleTest case writes the tiny model folder and runs predict_crosscheck.py on the bundled DSB
// 2018 nuclei image (tifffile, scikit-image, SciPy; see the script's docstring).
#include <gtest/gtest.h>

#include <cstdlib>

#include "pipeline_test_util.h"
#include "predict_model_util.h"

namespace umamba::pipeline {
namespace {

using namespace test;

TEST(Pipeline_PredictPython, outputs_match_tifffile_and_skimage) {
  TempDir t;
  make_tiny_model(t / "model");
  const fs::path image = fs::path(UMAMBA_SOURCE_DIR) / "examples/data/dsb2018/img2d.tif";
  ASSERT_TRUE(fs::exists(image));
  const std::string cmd = std::string("'") + UMAMBA_PYTHON + "' '" + UMAMBA_SOURCE_DIR +
                          "/tests/pipeline/predict_crosscheck.py' --umamba '" +
                          umamba_binary().string() + "' --model '" + (t / "model").string() +
                          "' --image '" + image.string() + "' --work '" + (t / "work").string() +
                          "' > '" + (t / "log").string() + "' 2>&1";
  const int status = std::system(cmd.c_str());
  const std::string log = read_text(t / "log");
  if (WIFEXITED(status) && WEXITSTATUS(status) == 77) GTEST_SKIP() << log;
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << log;
  EXPECT_NE(log.find("checks passed"), std::string::npos) << log;
  std::cerr << log;
}

}  // namespace
}  // namespace umamba::pipeline
