// Files dtrain reads or appends to must be regular files: opening a FIFO
// waits for another process to open its other end (maybe never) and a device
// such as /dev/zero reads without end. Looked at with stat(2), before any
// open, so the check itself cannot block.
#pragma once

#include <string>

namespace dtrain {

// "" if `path` is a regular file (symbolic links followed) or does not exist;
// else what it is: "a FIFO", "a directory", "a device", "a socket".
std::string special_file_kind(const std::string& path);

// Throws InputError "'PATH': not a regular file (a FIFO); expected WHAT, a
// regular file" when `path` exists and is not a regular file.
void require_regular_file(const std::string& path, const std::string& what);

// Writes `text` to `path` (created 0644 less the umask, or truncated), never
// through a symbolic link planted there (O_NOFOLLOW: InputError naming the
// link and its target) nor into a FIFO or device (InputError); RuntimeError
// when the write fails. `what` says what the file is ("the run's resolved
// config").
void write_regular_file(const std::string& path, const std::string& text, const std::string& what);

}  // namespace dtrain
