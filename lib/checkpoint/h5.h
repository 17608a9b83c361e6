// A thin layer over HDF5's C API for the checkpoint writer and reader: handles
// that close themselves, attributes in and out as C++ values, and errors as
// text. HDF5 reports failures by printing its error stack and returning a
// negative id; here each call site turns that into a dtrain error naming the
// file and object, with HDF5's own innermost reason appended ("truncated
// file", "bad object header checksum"), and the stack is never printed.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace dtrain::h5 {

// Owns one HDF5 identifier (file, group, dataset, dataspace, type, property
// list or attribute) and closes it with H5Idec_ref.
class Handle {
 public:
  Handle() = default;
  explicit Handle(hid_t id) : id_(id) {}
  ~Handle() { reset(); }
  Handle(Handle&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, H5I_INVALID_HID);
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void reset();
  // Closes now and reports a failure (closing a file flushes it).
  bool close();

 private:
  hid_t id_ = H5I_INVALID_HID;
};

// While alive, HDF5 prints nothing on errors (restores the previous setting).
class Quiet {
 public:
  Quiet();
  ~Quiet();
  Quiet(const Quiet&) = delete;
  Quiet& operator=(const Quiet&) = delete;

 private:
  H5E_auto2_t func_ = nullptr;
  void* data_ = nullptr;
};

// HDF5's innermost error message of the current error stack ("" if none),
// e.g. "truncated file: eof = 1024, ...", and clears the stack.
std::string last_error();

// File access with checksummed metadata (the 1.8+ object formats).
Handle file_access();
Handle create_file(const std::string& path);  // fails if it exists; throws RuntimeError
// Read-only; on failure returns an invalid handle and sets `why` to HDF5's reason.
Handle open_file(const std::string& path, std::string& why);

// Dataspace of `shape` (rank >= 1).
Handle space(const std::vector<int64_t>& shape);
std::vector<int64_t> shape_of(hid_t dataset);
// HDF5 file type of a dtype (little-endian IEEE floats, i32, u8).
hid_t file_type(DType t);
// The native in-memory type of a dtype (what H5Dread/H5Dwrite convert to and
// from); throws InternalError as file_type does for a dtype not stored.
hid_t memory_type(DType t);
// The dtype an HDF5 dataset's type is, or nullopt-like: returns false if none.
bool dtype_of_type(hid_t type, DType& out);

// Attributes on any object. write_* throw RuntimeError; read_* return false if
// the attribute is missing or of another kind.
void write_attr(hid_t obj, const char* name, int64_t v);
void write_attr(hid_t obj, const char* name, uint32_t v);
void write_attr(hid_t obj, const char* name, const std::string& v);  // UTF-8, variable length
void write_attr(hid_t obj, const char* name, const std::vector<int64_t>& v,
                std::vector<int64_t> dims = {});  // dims: shape of the array (default 1-d)
bool read_attr(hid_t obj, const char* name, int64_t& v);
bool read_attr(hid_t obj, const char* name, uint32_t& v);
bool read_attr(hid_t obj, const char* name, std::string& v);
bool read_attr(hid_t obj, const char* name, std::vector<int64_t>& v);

// A link creation list that makes missing intermediate groups ("optim/adamw.m/").
Handle intermediate_groups();

}  // namespace dtrain::h5
