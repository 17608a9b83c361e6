#include "data/image_dataset.h"

#include <algorithm>

#include "core/error.h"
#include "data/input_file.h"

namespace dtrain {

namespace {

using data_detail::InputFile;
using data_detail::load_be32;

struct IdxHeader {
  uint32_t magic = 0;
  std::vector<int64_t> dims;
};

std::string magic_str(uint32_t m) { return fmt::format("0x{:08x}", m); }

// Reads and checks an IDX header whose magic must be one of `accepted`, and
// checks that the data that follows is exactly as long as the dims say.
// `kind` is "image" or "label"; `expected` describes the accepted magics.
IdxHeader read_idx_header(InputFile& file, const std::string& path, const char* kind,
                          std::initializer_list<uint32_t> accepted, const char* expected) {
  unsigned char head[4 + 4 * 4];
  if (file.size() < 4)
    throw InputError(
        fmt::format("'{}' is truncated: an IDX {} file starts with a 4-byte magic number, the file "
                    "has {} bytes",
                    path, kind, file.size()));
  file.read(head, 4);
  if (head[0] == 0x1f && head[1] == 0x8b)
    throw InputError(fmt::format("'{}' is gzip-compressed: decompress it first (gunzip)", path));

  IdxHeader h;
  h.magic = load_be32(head);
  if (std::find(accepted.begin(), accepted.end(), h.magic) == accepted.end()) {
    const char* hint = "";
    if (h.magic == ImageDataset::kLabelsMagic) hint = " (that is an IDX label file)";
    if (h.magic == ImageDataset::kImagesMagic || h.magic == ImageDataset::kColorImagesMagic)
      hint = " (that is an IDX image file)";
    throw InputError(fmt::format("'{}' is not an IDX {} file: magic {}, expected {}{}", path, kind,
                                 magic_str(h.magic), expected, hint));
  }

  const int ndims = static_cast<int>(h.magic & 0xff);
  const int64_t header_bytes = 4 + 4 * ndims;
  if (file.size() < header_bytes)
    throw InputError(fmt::format(
        "'{}' is truncated: an IDX {} file with magic {} starts with a {}-byte header, the file "
        "has {} bytes",
        path, kind, magic_str(h.magic), header_bytes, file.size()));
  file.read(head + 4, header_bytes - 4);

  std::string dims_str;
  int64_t data_bytes = 1;
  bool overflow = false;
  for (int i = 0; i < ndims; ++i) {
    int64_t d = load_be32(head + 4 + 4 * i);
    h.dims.push_back(d);
    dims_str += (i ? " x " : "") + std::to_string(d);
    overflow |= __builtin_mul_overflow(data_bytes, d, &data_bytes);
  }
  if (std::find(h.dims.begin(), h.dims.end(), 0) != h.dims.end())
    throw InputError(
        fmt::format("'{}' holds no data: its header says {} {}s", path, dims_str, kind));

  const int64_t body = file.size() - header_bytes;
  if (overflow || data_bytes > body)
    throw InputError(fmt::format(
        "'{}' is truncated: its header says {} = {} bytes of {}s, the file has {} bytes after its "
        "{}-byte header",
        path, dims_str, overflow ? std::string("too many") : std::to_string(data_bytes), kind, body,
        header_bytes));
  if (data_bytes < body)
    throw InputError(fmt::format(
        "'{}' has trailing data: its header says {} = {} bytes of {}s, the file has {} bytes after "
        "its {}-byte header",
        path, dims_str, data_bytes, kind, body, header_bytes));
  return h;
}

}  // namespace

ImageDataset::ImageDataset(const std::string& images_path, const std::string& labels_path)
    : images_path_(images_path), labels_path_(labels_path) {
  {
    InputFile file(images_path, "image file");
    IdxHeader h = read_idx_header(
        file, images_path, "image", {kImagesMagic, kColorImagesMagic},
        "0x00000803 (uint8 images: n, rows, cols) or 0x00000804 (n, channels, rows, cols)");
    n_ = h.dims[0];
    c_ = h.dims.size() == 4 ? h.dims[1] : 1;
    h_ = h.dims[h.dims.size() - 2];
    w_ = h.dims[h.dims.size() - 1];
    pixels_.resize(static_cast<size_t>(n_ * c_ * h_ * w_));
    file.read(pixels_.data(), static_cast<int64_t>(pixels_.size()));
  }
  {
    InputFile file(labels_path, "label file");
    IdxHeader h =
        read_idx_header(file, labels_path, "label", {kLabelsMagic}, "0x00000801 (uint8 labels: n)");
    if (h.dims[0] != n_)
      throw InputError(fmt::format("'{}' has {} images but '{}' has {} labels", images_path, n_,
                                   labels_path, h.dims[0]));
    labels_.resize(static_cast<size_t>(n_));
    file.read(labels_.data(), n_);
  }
}

void ImageDataset::check_classes(int64_t num_classes) const {
  uint8_t max = 0;
  for (uint8_t l : labels_) max = std::max(max, l);
  if (max < num_classes) return;
  auto it = std::find_if(labels_.begin(), labels_.end(),
                         [&](uint8_t l) { return int64_t{l} >= num_classes; });
  throw InputError(
      fmt::format("'{}': label {} at index {} is out of range for model.num_classes = {}",
                  labels_path_, *it, it - labels_.begin(), num_classes));
}

void ImageDataset::check_shape(int64_t channels, int64_t height, int64_t width) const {
  if (channels == c_ && height == h_ && width == w_) return;
  std::string model =
      height == width
          ? fmt::format("model.in_channels = {}, model.image_size = {}", channels, height)
          : fmt::format("model.in_channels = {}, image size {}x{}", channels, height, width);
  throw InputError(fmt::format(
      "'{}' holds {}x{}x{} images (channels x height x width) but the model expects {}x{}x{} ({})",
      images_path_, c_, h_, w_, channels, height, width, model));
}

}  // namespace dtrain
