// Labelled images in the IDX format of MNIST and Fashion-MNIST, so those
// data sets train as downloaded (after gunzip). An images file has a
// big-endian header -- magic 0x00000803 then n, rows, cols, or 0x00000804 then
// n, channels, rows, cols for colour data -- followed by n*C*H*W uint8 pixels
// in (n, C, H, W) order; a labels file has magic 0x00000801, n, then n uint8
// labels. Every malformation is an InputError that names the file and says
// what was expected.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dtrain {

class ImageDataset {
 public:
  static constexpr uint32_t kImagesMagic = 0x00000803;       // (n, rows, cols)
  static constexpr uint32_t kColorImagesMagic = 0x00000804;  // (n, channels, rows, cols)
  static constexpr uint32_t kLabelsMagic = 0x00000801;       // (n)

  // Reads and validates both files (throws InputError).
  ImageDataset(const std::string& images_path, const std::string& labels_path);

  int64_t n() const { return n_; }
  int64_t channels() const { return c_; }
  int64_t height() const { return h_; }
  int64_t width() const { return w_; }
  const uint8_t* pixels() const { return pixels_.data(); }  // (n, C, H, W)
  const uint8_t* labels() const { return labels_.data(); }  // (n)
  const std::string& images_path() const { return images_path_; }
  const std::string& labels_path() const { return labels_path_; }

  // Throws InputError naming the first label >= num_classes and its index.
  void check_classes(int64_t num_classes) const;
  // Throws InputError unless the images are (channels, size, size), naming
  // model.in_channels and model.image_size.
  void check_shape(int64_t channels, int64_t height, int64_t width) const;

 private:
  std::string images_path_, labels_path_;
  int64_t n_ = 0, c_ = 0, h_ = 0, w_ = 0;
  std::vector<uint8_t> pixels_;
  std::vector<uint8_t> labels_;
};

}  // namespace dtrain
