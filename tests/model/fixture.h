// Reads fixture files written by tools/fixtures/fixture_io.py: named float64
// and int64 arrays produced by PyTorch, the reference for whole-model tests.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace dtrain::testing {

struct FixtureArray {
  bool is_int = false;
  std::vector<int64_t> shape;
  std::vector<double> f;   // float64 data
  std::vector<int64_t> i;  // int64 data
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

class Fixture {
 public:
  explicit Fixture(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open fixture " + path);
    char magic[8];
    in.read(magic, 8);
    if (std::memcmp(magic, "DTFX0001", 8) != 0) throw std::runtime_error("bad fixture " + path);
    uint32_t count = read<uint32_t>(in);
    for (uint32_t k = 0; k < count; ++k) {
      std::string name(read<uint32_t>(in), '\0');
      in.read(name.data(), static_cast<std::streamsize>(name.size()));
      FixtureArray a;
      a.is_int = read<uint8_t>(in) == 1;
      uint8_t rank = read<uint8_t>(in);
      for (int d = 0; d < rank; ++d) a.shape.push_back(read<int64_t>(in));
      if (a.is_int) {
        a.i.resize(static_cast<size_t>(a.numel()));
        in.read(reinterpret_cast<char*>(a.i.data()), static_cast<std::streamsize>(a.i.size() * 8));
      } else {
        a.f.resize(static_cast<size_t>(a.numel()));
        in.read(reinterpret_cast<char*>(a.f.data()), static_cast<std::streamsize>(a.f.size() * 8));
      }
      if (!in) throw std::runtime_error("truncated fixture " + path);
      arrays_[name] = std::move(a);
    }
  }

  bool has(const std::string& name) const { return arrays_.count(name) != 0; }
  const FixtureArray& at(const std::string& name) const {
    auto it = arrays_.find(name);
    if (it == arrays_.end()) throw std::runtime_error("fixture has no array " + name);
    return it->second;
  }
  const std::map<std::string, FixtureArray>& all() const { return arrays_; }

 private:
  template <class T>
  static T read(std::ifstream& in) {
    T v{};
    in.read(reinterpret_cast<char*>(&v), sizeof(T));
    return v;
  }
  std::map<std::string, FixtureArray> arrays_;
};

inline std::string fixture_path(const std::string& name) {
  return std::string(DTRAIN_SOURCE_DIR) + "/tests/fixtures/" + name;
}

}  // namespace dtrain::testing
