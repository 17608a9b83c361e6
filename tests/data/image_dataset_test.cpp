#include "data/image_dataset.h"

#include <doctest/doctest.h>

#include "data/data_files.h"

using namespace dtrain;
using namespace dtrain::testing;

TEST_CASE("a 1-channel IDX pair (0x0803) round-trips") {
  TempDir dir;
  std::string images = dir.file("img"), labels = dir.file("lbl");
  write_images(images, labels, 3, 1, 4, 5, 2);
  ImageDataset d(images, labels);
  CHECK(d.n() == 3);
  CHECK(d.channels() == 1);
  CHECK(d.height() == 4);
  CHECK(d.width() == 5);
  CHECK(d.images_path() == images);
  CHECK(d.labels_path() == labels);
  for (int k = 0; k < 60; ++k) CHECK(d.pixels()[k] == (7 * k + 3) % 256);
  CHECK(d.labels()[0] == 0);
  CHECK(d.labels()[1] == 1);
  CHECK(d.labels()[2] == 0);
  CHECK_NOTHROW(d.check_shape(1, 4, 5));
  CHECK_NOTHROW(d.check_classes(2));
}

TEST_CASE("a 3-channel IDX file (0x0804) keeps (n, C, H, W) order") {
  TempDir dir;
  std::string images = dir.file("img"), labels = dir.file("lbl");
  Bytes px;
  for (int i = 0; i < 2; ++i)
    for (int c = 0; c < 3; ++c)
      for (int p = 0; p < 4; ++p) px.push_back(static_cast<uint8_t>(100 * i + 10 * c + p));
  write_bytes(images, idx_file(0x804, {2, 3, 2, 2}, px));
  write_bytes(labels, idx_file(0x801, {2}, {9, 4}));
  ImageDataset d(images, labels);
  CHECK(d.n() == 2);
  CHECK(d.channels() == 3);
  CHECK(d.height() == 2);
  CHECK(d.width() == 2);
  CHECK(d.pixels()[1 * 12 + 2 * 4 + 3] == 123);  // image 1, channel 2, pixel 3
  CHECK(d.labels()[0] == 9);
  CHECK(d.labels()[1] == 4);
}

TEST_CASE("check_classes and check_shape name the model keys") {
  TempDir dir;
  std::string images = dir.file("img"), labels = dir.file("lbl");
  write_images(images, labels, 30, 1, 28, 28, 12);
  ImageDataset d(images, labels);
  CHECK_NOTHROW(d.check_classes(12));
  CHECK(input_error([&] { d.check_classes(10); }) ==
        "'" + labels + "': label 10 at index 10 is out of range for model.num_classes = 10");
  std::string msg = input_error([&] { d.check_shape(3, 32, 32); });
  CHECK_CONTAINS(msg, "'" + images + "' holds 1x28x28 images");
  CHECK_CONTAINS(msg, "model.in_channels = 3, model.image_size = 32");
  CHECK_CONTAINS(input_error([&] { d.check_shape(1, 32, 32); }), "model.image_size = 32");
  CHECK_CONTAINS(input_error([&] { d.check_shape(3, 28, 28); }), "model.in_channels = 3");
}

TEST_CASE("every malformed IDX file is an InputError naming the file and what was expected") {
  TempDir dir;
  std::string images = dir.file("img"), labels = dir.file("lbl");
  write_images(images, labels, 3, 1, 4, 5);
  Bytes px(60, 1), lb(3, 0);
  // Replaces one of the two files, loads the pair, and checks the message names it.
  auto error_for = [&](const std::string& path, const Bytes& bytes) {
    write_bytes(path, bytes);
    std::string msg = input_error([&] { ImageDataset d(images, labels); });
    CHECK_CONTAINS(msg, "'" + path + "'");
    return msg;
  };

  SUBCASE("missing images") {
    std::string missing = dir.file("nope");
    CHECK(input_error([&] { ImageDataset d(missing, labels); }) ==
          "image file '" + missing + "' not found");
  }
  SUBCASE("missing labels") {
    std::string missing = dir.file("nope");
    CHECK(input_error([&] { ImageDataset d(images, missing); }) ==
          "label file '" + missing + "' not found");
  }
  SUBCASE("gzip-compressed") {
    Bytes gz = {0x1f, 0x8b, 0x08, 0x08, 0, 0, 0, 0, 0, 0};
    CHECK_CONTAINS(error_for(images, gz), "is gzip-compressed: decompress it first (gunzip)");
    write_images(images, labels, 3, 1, 4, 5);
    CHECK_CONTAINS(error_for(labels, gz), "is gzip-compressed: decompress it first (gunzip)");
  }
  SUBCASE("labels given as images, and images as labels") {
    std::string msg = error_for(images, idx_file(0x801, {3}, lb));
    CHECK_CONTAINS(msg, "is not an IDX image file: magic 0x00000801, expected 0x00000803");
    CHECK_CONTAINS(msg, "0x00000804");
    CHECK_CONTAINS(msg, "(that is an IDX label file)");
    write_images(images, labels, 3, 1, 4, 5);
    msg = error_for(labels, idx_file(0x803, {3, 4, 5}, px));
    CHECK_CONTAINS(msg, "is not an IDX label file: magic 0x00000803, expected 0x00000801");
    CHECK_CONTAINS(msg, "(that is an IDX image file)");
  }
  SUBCASE("unknown magic") {
    CHECK_CONTAINS(error_for(images, idx_file(0x0d03, {3, 4, 5}, px)),
                   "magic 0x00000d03, expected 0x00000803");
  }
  SUBCASE("shorter than the magic or the header") {
    CHECK_CONTAINS(error_for(images, {0, 0}), "is truncated");
    CHECK_CONTAINS(error_for(images, idx_file(0x803, {3, 4}, {})),
                   "is truncated: an IDX image file with magic 0x00000803 starts with a 16-byte "
                   "header, the file has 12 bytes");
  }
  SUBCASE("truncated data") {
    CHECK_CONTAINS(error_for(images, idx_file(0x803, {3, 4, 5}, Bytes(50, 1))),
                   "is truncated: its header says 3 x 4 x 5 = 60 bytes of images, the file has 50 "
                   "bytes after its 16-byte header");
    write_images(images, labels, 3, 1, 4, 5);
    CHECK_CONTAINS(error_for(labels, idx_file(0x801, {3}, Bytes(2, 0))),
                   "its header says 3 = 3 bytes of labels, the file has 2 bytes");
  }
  SUBCASE("absurd dims") {
    CHECK_CONTAINS(
        error_for(images, idx_file(0x804, {0xffffffffu, 0xffffffffu, 0xffffffffu, 9}, px)),
        "is truncated");
    CHECK_CONTAINS(error_for(images, idx_file(0x803, {0, 4, 5}, {})), "holds no data");
  }
  SUBCASE("trailing data") {
    CHECK_CONTAINS(error_for(images, idx_file(0x803, {3, 4, 5}, Bytes(61, 1))),
                   "has trailing data: its header says 3 x 4 x 5 = 60 bytes of images");
  }
  SUBCASE("image and label counts differ") {
    std::string msg = error_for(labels, idx_file(0x801, {4}, Bytes(4, 0)));
    CHECK(msg == "'" + images + "' has 3 images but '" + labels + "' has 4 labels");
  }
}
