// The label NIfTI written by `umamba predict` (resampling on: the plans' spacing differs from the
// input's) has the input's header as nibabel reads it (tests/pipeline/nifti_header_check.py):
// affine, qform/sform and codes, pixdim, units, description, intent, orientation.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "pipeline/pipeline_test_util.h"
#include "pipeline/predict_volume_util.h"

namespace umamba::pipeline::test {

TEST(Pipeline_PredictVolumePython, nifti_header_equals_input_nibabel) {
  TempDir t;
  make_volume_model(t / "model", {4.5, 4.0, 4.0}, {0, 1, 2});
  PredictJob job = volume_job(kCt, t / "out", t / "model");
  ASSERT_EQ(run_predict(job).exit_code(), 0);
  const fs::path out = job.output / "example_ct_sm_label.nii.gz";
  const std::string cmd = std::string("\"") + UMAMBA_PYTHON + "\" \"" + UMAMBA_SOURCE_DIR +
                          "/tests/pipeline/nifti_header_check.py\" \"" + kCt.string() + "\" \"" +
                          out.string() + "\"";
  const int rc = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(rc));
  if (WEXITSTATUS(rc) == 77) GTEST_SKIP() << "nibabel is not installed";
  EXPECT_EQ(WEXITSTATUS(rc), 0) << cmd;
}

}  // namespace umamba::pipeline::test
