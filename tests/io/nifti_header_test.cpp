// Labels written with a reference NIfTI keep the reference's header: every field except the ones a
// label image must change (dimensions, datatype, bitpix, scaling, display range, offset) is
// byte-identical, read back with nifticlib (nifti_read_header, nifti_image_read), for a crafted
// reference whose sform differs from its qform and which carries an intent, a description, an
// auxiliary file name, time units and a time offset.
#include <gtest/gtest.h>
#include <nifti1_io.h>

#include <cstring>
#include <fstream>
#include <random>
#include <vector>

#include "io/image_io.h"
#include "io/io_test_util.h"

namespace umamba::io::test {
namespace {

nifti_1_header read_raw(const fs::path& p) {
  int swapped = 0;
  nifti_1_header* h = nifti_read_header(p.c_str(), &swapped, 1);
  EXPECT_NE(h, nullptr) << p;
  nifti_1_header out{};
  if (h != nullptr) {
    out = *h;
    free(h);
  }
  return out;
}

// The fields a label image legitimately changes, zeroed, so the rest compares byte for byte.
nifti_1_header without_data_fields(nifti_1_header h) {
  std::memset(h.dim, 0, sizeof h.dim);
  h.datatype = 0;
  h.bitpix = 0;
  h.scl_slope = 0;
  h.scl_inter = 0;
  h.cal_max = 0;
  h.cal_min = 0;
  h.vox_offset = 0;
  h.glmax = 0;
  h.glmin = 0;
  return h;
}

}  // namespace

TEST(Io_NiftiHeader, labels_keep_every_reference_field) {
  TempDir dir;
  const fs::path ct = source_path("examples/data/totalsegmentator/example_ct_sm.nii.gz");
  nifti_1_header h = read_raw(ct);
  // Craft: sform rotated and shifted away from the qform, intent, texts, time units and offset.
  h.sform_code = NIFTI_XFORM_ALIGNED_ANAT;
  h.qform_code = NIFTI_XFORM_SCANNER_ANAT;
  const float c = 0.8f, s = 0.6f;
  const float srow_x[4] = {3 * c, -3 * s, 0, -12.5f};
  const float srow_y[4] = {3 * s, 3 * c, 0, 40.25f};
  const float srow_z[4] = {0, 0, 3, -7.0f};
  std::memcpy(h.srow_x, srow_x, sizeof srow_x);
  std::memcpy(h.srow_y, srow_y, sizeof srow_y);
  std::memcpy(h.srow_z, srow_z, sizeof srow_z);
  h.intent_code = NIFTI_INTENT_LABEL;
  h.intent_p1 = 2.5f;
  std::strncpy(h.intent_name, "organs", sizeof h.intent_name);
  std::strncpy(h.descrip, "umamba header test: sform != qform", sizeof h.descrip);
  std::strncpy(h.aux_file, "aux.txt", sizeof h.aux_file);
  h.xyzt_units = NIFTI_UNITS_MM | NIFTI_UNITS_SEC;
  h.pixdim[4] = 1.5f;
  h.toffset = 0.25f;
  h.slice_code = NIFTI_SLICE_SEQ_INC;
  h.slice_duration = 0.05f;
  h.scl_slope = 1;
  h.scl_inter = 0;
  h.vox_offset = 352;
  const int64_t nx = h.dim[1], ny = h.dim[2], nz = h.dim[3];
  const fs::path ref = dir / "reference.nii";
  {
    std::ofstream f(ref, std::ios::binary);
    f.write(reinterpret_cast<const char*>(&h), sizeof h);
    const char ext[4] = {0, 0, 0, 0};
    f.write(ext, 4);
    const std::vector<char> zeros(static_cast<size_t>(nx * ny * nz * (h.bitpix / 8)), 0);
    f.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
  }
  Image labels = Image::zeros(DType::I32, Shape{1, nz, ny, nx});
  std::mt19937 rng(5);
  for (int64_t i = 0; i < labels.element_count(); i += 7)
    labels.data_as<int32_t>()[i] = static_cast<int32_t>(rng() % 118);
  WriteOptions opt;
  opt.reference = ref;
  for (const char* name : {"labels.nii.gz", "labels.nii"}) {
    SCOPED_TRACE(name);
    write_labels(dir / name, labels, opt);
    const nifti_1_header a = without_data_fields(read_raw(ref));
    const nifti_1_header b = without_data_fields(read_raw(dir / name));
    EXPECT_EQ(std::memcmp(&a, &b, sizeof a), 0);
    const nifti_1_header out = read_raw(dir / name);
    EXPECT_EQ(out.datatype, DT_UINT8);  // labels up to 117
    EXPECT_EQ(out.dim[1], nx);
    EXPECT_EQ(out.dim[3], nz);
    // nifticlib's own interpretation of both files.
    nifti_image* x = nifti_image_read(ref.c_str(), 0);
    nifti_image* y = nifti_image_read((dir / name).c_str(), 0);
    ASSERT_NE(x, nullptr);
    ASSERT_NE(y, nullptr);
    for (int r = 0; r < 4; ++r)
      for (int k = 0; k < 4; ++k) {
        EXPECT_EQ(x->qto_xyz.m[r][k], y->qto_xyz.m[r][k]);
        EXPECT_EQ(x->sto_xyz.m[r][k], y->sto_xyz.m[r][k]);
      }
    EXPECT_EQ(y->intent_code, NIFTI_INTENT_LABEL);
    EXPECT_STREQ(y->intent_name, "organs");
    EXPECT_STREQ(y->descrip, x->descrip);
    EXPECT_STREQ(y->aux_file, "aux.txt");
    EXPECT_EQ(y->time_units, NIFTI_UNITS_SEC);
    EXPECT_EQ(y->toffset, 0.25f);
    EXPECT_EQ(y->sform_code, NIFTI_XFORM_ALIGNED_ANAT);
    nifti_image_free(x);
    nifti_image_free(y);
    // And our reader takes the sform (code > 0) as the geometry.
    const Image back = read_image(dir / name);
    EXPECT_EQ(back.metadata().at("nifti.affine_source"), "sform");
    EXPECT_TRUE(back.same_pixels(labels.cast(DType::U8)));
  }
}

}  // namespace umamba::io::test
