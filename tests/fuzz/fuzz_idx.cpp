// IDX image and label files: the input's first byte says where the images
// file ends and the labels file begins; any bytes either read as a data set
// or throw InputError.
#include <cstdint>

#include "core/error.h"
#include "data/image_dataset.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const size_t cut = 1 + std::min<size_t>(size - 1, (size - 1) * data[0] / 255);
  fuzz::MemFile images(data + 1, cut - 1), labels(data + cut, size - cut);
  try {
    dtrain::ImageDataset d(images.path(), labels.path());
    d.check_shape(d.channels(), d.height(), d.width());
    d.check_classes(10);
  } catch (const dtrain::InputError&) {
  }
  return 0;
}
