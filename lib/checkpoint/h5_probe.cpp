#include "checkpoint/h5_probe.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include <fmt/format.h>

#include "checkpoint/h5.h"

namespace dtrain::h5 {

namespace {

constexpr size_t kMaxAttrBytes = size_t{64} << 20;  // an attribute that claims more is damage the reader reports

// Reads one attribute in its native type. The child exits right after the
// walk, so nothing read is freed (a damaged variable-length value's
// pointers are never handed back to HDF5).
herr_t read_attribute(hid_t loc, const char* name, const H5A_info_t*, void*) {
  Handle a(H5Aopen(loc, name, H5P_DEFAULT));
  if (!a.valid()) return 0;
  Handle file_type(H5Aget_type(a.get())), space(H5Aget_space(a.get()));
  if (!file_type.valid() || !space.valid()) return 0;
  Handle type(H5Tget_native_type(file_type.get(), H5T_DIR_DEFAULT));
  if (!type.valid()) return 0;
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  const size_t size = H5Tget_size(type.get());
  if (n < 0 || size == 0 || static_cast<size_t>(n) > kMaxAttrBytes / size) return 0;
  std::vector<char> buf(std::max<size_t>(1, static_cast<size_t>(n) * size));
  H5Aread(a.get(), type.get(), buf.data());
  return 0;
}

void read_attributes(hid_t obj) {
  hsize_t at = 0;
  H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_NATIVE, &at, read_attribute, nullptr);
}

void walk_dataset(hid_t d) {
  Handle space(H5Dget_space(d)), type(H5Dget_type(d)), dcpl(H5Dget_create_plist(d));
  if (space.valid()) H5Sget_simple_extent_npoints(space.get());
  if (dcpl.valid() && H5Pget_layout(dcpl.get()) == H5D_VIRTUAL) {
    size_t count = 0;
    if (H5Pget_virtual_count(dcpl.get(), &count) >= 0)
      for (size_t i = 0; i < count; ++i) {
        Handle vspace(H5Pget_virtual_vspace(dcpl.get(), i)), sspace(H5Pget_virtual_srcspace(dcpl.get(), i));
        if (vspace.valid()) H5Sget_select_npoints(vspace.get());
        if (sspace.valid()) H5Sget_select_npoints(sspace.get());
        char name[4096];
        H5Pget_virtual_filename(dcpl.get(), i, name, sizeof name);
        H5Pget_virtual_dsetname(dcpl.get(), i, name, sizeof name);
      }
  }
  read_attributes(d);
}

herr_t walk_link(hid_t group, const char* name, const H5L_info_t* info, void*) {
  if (info->type != H5L_TYPE_HARD) return 0;
  if (Handle d(H5Dopen2(group, name, H5P_DEFAULT)); d.valid()) {
    walk_dataset(d.get());
  } else if (Handle g(H5Gopen2(group, name, H5P_DEFAULT)); g.valid()) {
    read_attributes(g.get());  // H5Lvisit goes into it by itself
  }
  return 0;
}

void walk_file(const std::string& path) {
  Quiet q;
  std::string why;
  Handle f = open_file(path, why);
  if (!f.valid()) return;
  read_attributes(f.get());
  H5Lvisit(f.get(), H5_INDEX_NAME, H5_ITER_NATIVE, walk_link, nullptr);
}

std::string death(int status) {
  const int sig = WTERMSIG(status);
  const char* name = sig == SIGSEGV   ? "a segmentation fault"
                     : sig == SIGABRT ? "an abort (glibc's \"buffer overflow detected\" or an assertion)"
                     : sig == SIGBUS  ? "a bus error"
                     : sig == SIGFPE  ? "an arithmetic exception"
                                      : "a signal";
  return fmt::format("{}, signal {} ({})", name, sig, strsignal(sig));
}

}  // namespace

ProbeResult probe_in_child(const std::vector<std::string>& paths, double timeout_s) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return {};  // no probe: read as before
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return {};
  }
  if (pid == 0) {  // the child: names each file before parsing it, then leaves without any cleanup
    close(fds[0]);
    // A crash ends it by its signal (not a sanitizer's or anyone's handler),
    // silently: the parent says what happened, in one line.
    for (int sig : {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL}) signal(sig, SIG_DFL);
    if (const int null = open("/dev/null", O_WRONLY); null >= 0) {
      dup2(null, STDOUT_FILENO);
      dup2(null, STDERR_FILENO);
    }
    for (const std::string& p : paths) {
      const std::string line = p + "\n";
      if (write(fds[1], line.data(), line.size()) < 0) _exit(0);
      walk_file(p);
    }
    _exit(0);
  }
  close(fds[1]);
  std::string progress;
  auto drain = [&](int wait_ms) {
    pollfd p{fds[0], POLLIN, 0};
    if (poll(&p, 1, wait_ms) <= 0) return;
    char buf[4096];
    const ssize_t n = read(fds[0], buf, sizeof buf);
    if (n > 0) progress.append(buf, static_cast<size_t>(n));
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  int status = 0;
  bool timed_out = false;
  for (;;) {
    const pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) {  // not ours to wait for (cannot happen): no verdict
      close(fds[0]);
      return {};
    }
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      timed_out = true;
      break;
    }
    drain(5);
  }
  for (size_t before = SIZE_MAX; before != progress.size();) {
    before = progress.size();
    drain(0);
  }
  close(fds[0]);
  // The file named last is the one being parsed.
  if (!progress.empty() && progress.back() == '\n') progress.pop_back();
  const size_t last = progress.rfind('\n');
  const std::string file = last == std::string::npos ? progress : progress.substr(last + 1);
  if (timed_out) return {file, fmt::format("HDF5 did not finish parsing its metadata within {:g} s", timeout_s)};
  if (WIFSIGNALED(status)) return {file, "HDF5's parser crashed on it (" + death(status) + ")"};
  if (WIFEXITED(status) && WEXITSTATUS(status) != 0)  // only a handler that outlived the reset exits so
    return {file, fmt::format("HDF5's parser crashed on it (the parsing process exited with status {})",
                              WEXITSTATUS(status))};
  return {};
}

}  // namespace dtrain::h5
