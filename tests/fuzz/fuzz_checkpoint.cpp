// The checkpoint reader against damaged and edited files, starting from the
// small checkpoint in tests/corpus/checkpoint_seed/step_00000001. The input's
// first byte picks what the rest is:
//   0  the manifest's text: read, then the checkpoint verified;
//   1  checkpoint.h5's bytes, under the pristine manifest: any change must be
//      refused before HDF5 opens the file (a reader that accepts it aborts);
//   2  an edit of one stored tensor of rank_00000.h5 (another shape, rank or
//      element type, with its CRC-32 and the manifest recomputed as one who
//      edits with h5py would): verified, listed and loaded into tensors of
//      the seed's shapes, where any mismatch must be refused before a byte
//      is read (ASan reports an overflow).
#include <hdf5.h>
#include <zlib.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "checkpoint/manifest.h"
#include "fuzz_util.h"

namespace fs = std::filesystem;
using namespace dtrain;

namespace {

struct Seed {
  std::string master, rank, manifest;
  std::vector<TensorInfo> tensors;
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void put(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << bytes;
}

const fs::path kDir = fs::path(fuzz::scratch("ck")) / "step_00000001";
Seed* seed = nullptr;

void write_pristine() {
  put(kDir / "checkpoint.h5", seed->master);
  put(kDir / "rank_00000.h5", seed->rank);
  put(kDir / "manifest", seed->manifest);
}

void remanifest() {
  auto m = ckpt_manifest::read(kDir.string());
  if (!m) std::abort();
  for (auto& [name, sum] : m->files) sum = ckpt_manifest::sum_file(kDir / name);
  put(kDir / "manifest", ckpt_manifest::to_text(*m));
}

// Replaces tensor `key` of the rank file by one of `dims` and `type`, its
// bytes taken from `fill` (repeated), its attributes kept, its crc32 recomputed.
void edit(const std::string& key, const std::vector<hsize_t>& dims, hid_t type, const uint8_t* fill, size_t n) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  hid_t f = H5Fopen((kDir / "rank_00000.h5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  hid_t d = H5Dopen2(f, key.c_str(), H5P_DEFAULT);
  std::vector<int64_t> full, runs;
  int64_t split = -1;
  auto read_ints = [&](const char* name, std::vector<int64_t>& out) {
    hid_t a = H5Aopen(d, name, H5P_DEFAULT);
    hid_t s = H5Aget_space(a);
    out.resize(static_cast<size_t>(H5Sget_simple_extent_npoints(s)));
    H5Aread(a, H5T_NATIVE_INT64, out.data());
    H5Sclose(s);
    H5Aclose(a);
  };
  read_ints("full_shape", full);
  read_ints("runs", runs);
  {
    hid_t a = H5Aopen(d, "split_dim", H5P_DEFAULT);
    H5Aread(a, H5T_NATIVE_INT64, &split);
    H5Aclose(a);
  }
  H5Dclose(d);
  H5Ldelete(f, key.c_str(), H5P_DEFAULT);
  hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
  d = H5Dcreate2(f, key.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  size_t bytes = H5Tget_size(type);
  for (hsize_t x : dims) bytes *= x;
  std::vector<uint8_t> buf(bytes);
  for (size_t i = 0; i < bytes; ++i) buf[i] = n ? fill[i % n] : 0;
  H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data());
  auto write_ints = [&](const char* name, const std::vector<int64_t>& v) {
    hsize_t len = v.size();
    hid_t s = H5Screate_simple(1, &len, nullptr);
    hid_t a = H5Acreate2(d, name, H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, v.data());
    H5Aclose(a);
    H5Sclose(s);
  };
  write_ints("full_shape", full);
  write_ints("runs", runs);
  write_ints("split_dim", {split});
  const uint32_t crc = static_cast<uint32_t>(crc32(0, buf.data(), static_cast<uInt>(bytes)));
  hid_t s = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(d, "crc32", H5T_STD_U32LE, s, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_UINT32, &crc);
  H5Aclose(a);
  H5Sclose(s);
  H5Sclose(space);
  H5Dclose(d);
  H5Fclose(f);
}

void load_all() {
  std::vector<Piece> pieces;
  for (const TensorInfo& t : seed->tensors) {
    Shard shard;
    for (int64_t d : t.shape) shard.full.push_back(d);
    pieces.push_back({t.key, Tensor::zeros(shard.full, DType::f32), shard, true});
  }
  load_pieces(kDir.string(), pieces);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const fs::path src = fs::path(DTRAIN_SOURCE_DIR) / "tests/corpus/checkpoint_seed/step_00000001";
  seed = new Seed{slurp(src / "checkpoint.h5"), slurp(src / "rank_00000.h5"), slurp(src / "manifest"), {}};
  fs::create_directories(kDir);
  write_pristine();
  seed->tensors = list_tensors(kDir.string());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  write_pristine();
  const uint8_t* rest = data + 1;
  const size_t n = size - 1;
  try {
    switch (data[0] % 3) {
      case 0:
        put(kDir / "manifest", std::string(reinterpret_cast<const char*>(rest), n));
        verify_checkpoint(kDir.string());
        break;
      case 1: {
        const std::string bytes(reinterpret_cast<const char*>(rest), n);
        put(kDir / "checkpoint.h5", bytes);
        read_meta(kDir.string());
        verify_checkpoint(kDir.string());
        if (bytes != seed->master) std::abort();  // a changed master file got past the manifest
        break;
      }
      default: {
        if (n < 6) return 0;
        const TensorInfo& t = seed->tensors[rest[0] % seed->tensors.size()];
        const int rank = 1 + rest[1] % 3;
        std::vector<hsize_t> dims;
        for (int d = 0; d < rank; ++d) {
          const hsize_t orig = d < static_cast<int>(t.shape.size()) ? static_cast<hsize_t>(t.shape[d]) : 1;
          dims.push_back(rest[2 + d] % (2 * orig + 2));
        }
        const hid_t types[] = {H5T_IEEE_F32LE, H5T_IEEE_F64LE, H5T_STD_I32LE, H5T_STD_U8LE};
        edit(t.key, dims, types[rest[5] % 4], rest + 6, n - 6);
        remanifest();
        try {
          verify_checkpoint(kDir.string());
        } catch (const CheckpointError&) {
        }
        try {
          list_tensors(kDir.string());
        } catch (const CheckpointError&) {
        }
        load_all();
      }
    }
  } catch (const Error&) {
  }
  return 0;
}
