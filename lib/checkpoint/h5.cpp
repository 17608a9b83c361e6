#include "checkpoint/h5.h"

#include <fmt/format.h>

namespace dtrain::h5 {

namespace {
// Once per process, before HDF5's first use: no clean-up at exit (after a
// failed write, e.g. a full disk, HDF5's atexit flush of the half-closed
// file failed again, printed ~100 lines and crashed) and no error stack
// printed, ever (each call site reports its error in one line).
void init_once() {
  static const bool done = [] {
    H5dont_atexit();
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)done;
}
}  // namespace

void Handle::reset() {
  if (id_ >= 0) {
    Quiet q;
    H5Idec_ref(id_);
  }
  id_ = H5I_INVALID_HID;
}

bool Handle::close() {
  if (id_ < 0) return true;
  Quiet q;
  const bool ok = H5Idec_ref(id_) >= 0;
  id_ = H5I_INVALID_HID;
  return ok;
}

Quiet::Quiet() {
  init_once();
  H5Eget_auto2(H5E_DEFAULT, &func_, &data_);
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

Quiet::~Quiet() { H5Eset_auto2(H5E_DEFAULT, func_, data_); }

namespace {
herr_t innermost(unsigned n, const H5E_error2_t* err, void* out) {
  // H5E_WALK_UPWARD starts at the innermost (first pushed) error: keep that one.
  if (n == 0 && err->desc) *static_cast<std::string*>(out) = err->desc;
  return 0;
}
}  // namespace

std::string last_error() {
  std::string msg;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost, &msg);
  H5Eclear2(H5E_DEFAULT);
  // A failed system call: HDF5's several lines of buffer addresses and offsets
  // come down to the system's reason ("No space left on device").
  const std::string tag = "error message = '";
  if (const size_t at = msg.find(tag); at != std::string::npos) {
    const size_t end = msg.find('\'', at + tag.size());
    const std::string what = msg.substr(0, msg.find(':'));
    msg = fmt::format("{}: {}", what, msg.substr(at + tag.size(), end == std::string::npos ? end : end - at - tag.size()));
  }
  for (char& c : msg)
    if (c == '\n') c = ' ';
  return msg;
}

Handle file_access() {
  init_once();
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS));
  H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V18, H5F_LIBVER_LATEST);
  return fapl;
}

Handle create_file(const std::string& path) {
  Quiet q;
  Handle fapl = file_access();
  Handle f(H5Fcreate(path.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, fapl.get()));
  if (!f.valid())
    throw RuntimeError(fmt::format("cannot create '{}': {}", path, last_error()));
  return f;
}

Handle open_file(const std::string& path, std::string& why) {
  Quiet q;
  Handle fapl = file_access();
  Handle f(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()));
  if (!f.valid()) why = last_error();  // before any other call clears the error stack
  return f;
}

Handle space(const std::vector<int64_t>& shape) {
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  return Handle(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr));
}

std::vector<int64_t> shape_of(hid_t dataset) {
  Handle sp(H5Dget_space(dataset));
  const int rank = sp.valid() ? H5Sget_simple_extent_ndims(sp.get()) : -1;
  if (rank < 0) return {};
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(sp.get(), dims.data(), nullptr);
  return {dims.begin(), dims.end()};
}

hid_t file_type(DType t) {
  switch (t) {
    case DType::f32: return H5T_IEEE_F32LE;
    case DType::f64: return H5T_IEEE_F64LE;
    case DType::i32: return H5T_STD_I32LE;
    case DType::u8: return H5T_STD_U8LE;
    default: throw InternalError(fmt::format("checkpoints cannot store {} tensors yet", dtype_name(t)));
  }
}

hid_t memory_type(DType t) {
  switch (t) {
    case DType::f32: return H5T_NATIVE_FLOAT;
    case DType::f64: return H5T_NATIVE_DOUBLE;
    case DType::i32: return H5T_NATIVE_INT32;
    case DType::u8: return H5T_NATIVE_UINT8;
    default: return file_type(t);  // throws
  }
}

bool dtype_of_type(hid_t type, DType& out) {
  for (DType t : {DType::f32, DType::f64, DType::i32, DType::u8}) {
    if (H5Tequal(type, file_type(t)) > 0) {
      out = t;
      return true;
    }
  }
  return false;
}

namespace {
void put(hid_t obj, const char* name, hid_t type, hid_t sp, const void* buf) {
  Quiet q;
  if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
  Handle a(H5Acreate2(obj, name, type, sp, H5P_DEFAULT, H5P_DEFAULT));
  if (!a.valid() || H5Awrite(a.get(), type, buf) < 0)
    throw RuntimeError(fmt::format("cannot write attribute '{}': {}", name, last_error()));
}

Handle get(hid_t obj, const char* name) {
  Quiet q;
  if (H5Aexists(obj, name) <= 0) return Handle();
  return Handle(H5Aopen(obj, name, H5P_DEFAULT));
}

Handle vl_string_type() {
  Handle t(H5Tcopy(H5T_C_S1));
  H5Tset_size(t.get(), H5T_VARIABLE);
  H5Tset_cset(t.get(), H5T_CSET_UTF8);
  return t;
}
}  // namespace

void write_attr(hid_t obj, const char* name, int64_t v) {
  Handle sp(H5Screate(H5S_SCALAR));
  put(obj, name, H5T_STD_I64LE, sp.get(), &v);
}

void write_attr(hid_t obj, const char* name, uint32_t v) {
  Handle sp(H5Screate(H5S_SCALAR));
  put(obj, name, H5T_STD_U32LE, sp.get(), &v);
}

void write_attr(hid_t obj, const char* name, const std::string& v) {
  Handle sp(H5Screate(H5S_SCALAR));
  Handle t = vl_string_type();
  const char* p = v.c_str();
  put(obj, name, t.get(), sp.get(), &p);
}

void write_attr(hid_t obj, const char* name, const std::vector<int64_t>& v,
                std::vector<int64_t> dims) {
  if (dims.empty()) dims = {static_cast<int64_t>(v.size())};
  // HDF5 has no zero-sized simple dataspace for attributes: store an empty array as (0) null space.
  Handle sp = v.empty() ? Handle(H5Screate(H5S_NULL)) : space(dims);
  put(obj, name, H5T_STD_I64LE, sp.get(), v.data());
}

namespace {
bool read_scalar(hid_t obj, const char* name, hid_t mem_type, void* out) {
  Handle a = get(obj, name);
  if (!a.valid()) return false;
  Handle sp(H5Aget_space(a.get()));
  if (H5Sget_simple_extent_npoints(sp.get()) != 1) return false;
  Quiet q;
  return H5Aread(a.get(), mem_type, out) >= 0;
}
}  // namespace

bool read_attr(hid_t obj, const char* name, int64_t& v) {
  return read_scalar(obj, name, H5T_NATIVE_INT64, &v);
}

bool read_attr(hid_t obj, const char* name, uint32_t& v) {
  return read_scalar(obj, name, H5T_NATIVE_UINT32, &v);
}

bool read_attr(hid_t obj, const char* name, std::string& v) {
  Handle a = get(obj, name);
  if (!a.valid()) return false;
  Handle ft(H5Aget_type(a.get()));
  if (H5Tget_class(ft.get()) != H5T_STRING || H5Tis_variable_str(ft.get()) <= 0) return false;
  Handle t = vl_string_type();
  char* p = nullptr;
  Quiet q;
  if (H5Aread(a.get(), t.get(), &p) < 0 || !p) return false;
  v = p;
  H5free_memory(p);
  return true;
}

bool read_attr(hid_t obj, const char* name, std::vector<int64_t>& v) {
  Handle a = get(obj, name);
  if (!a.valid()) return false;
  Handle sp(H5Aget_space(a.get()));
  if (H5Sget_simple_extent_type(sp.get()) == H5S_NULL) {
    v.clear();
    return true;
  }
  const hssize_t n = H5Sget_simple_extent_npoints(sp.get());
  if (n < 0) return false;
  v.resize(static_cast<size_t>(n));
  Quiet q;
  return H5Aread(a.get(), H5T_NATIVE_INT64, v.data()) >= 0;
}

Handle intermediate_groups() {
  Handle lcpl(H5Pcreate(H5P_LINK_CREATE));
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  return lcpl;
}

}  // namespace dtrain::h5
