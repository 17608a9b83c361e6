// Error types thrown by every dtrain library. Library code never exits: it
// throws one of these and apps/ decides the exit status from the kind.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>

namespace dtrain {

enum class ErrorKind {
  kConfig,    // a bad config file or --set override (exit 2)
  kInput,     // a bad data file or other user input (exit 2)
  kRuntime,   // something failed while running (exit 1)
  kInternal,  // a broken invariant: a dtrain bug (exit 1)
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& what) : std::runtime_error(what), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

// A config that failed validation. Holds every problem found, one line each,
// so the user sees all of them at once; what() joins them with newlines.
class ConfigError : public Error {
 public:
  explicit ConfigError(std::vector<std::string> problems);
  explicit ConfigError(const std::string& problem) : ConfigError(std::vector<std::string>{problem}) {}
  const std::vector<std::string>& problems() const { return problems_; }

 private:
  std::vector<std::string> problems_;
};

// A data file (or other input) that is missing, truncated or malformed.
class InputError : public Error {
 public:
  explicit InputError(const std::string& what) : Error(ErrorKind::kInput, what) {}
};

class RuntimeError : public Error {
 public:
  explicit RuntimeError(const std::string& what) : Error(ErrorKind::kRuntime, what) {}
};

// A runtime failure every rank detects at the same point from values they
// agreed on (a non-finite loss after its all-reduce): the app has one rank
// say it and every rank leave together, instead of ending the job from the
// first rank to fail.
class AgreedRuntimeError : public RuntimeError {
 public:
  explicit AgreedRuntimeError(const std::string& what) : RuntimeError(what) {}
};

class InternalError : public Error {
 public:
  explicit InternalError(const std::string& what) : Error(ErrorKind::kInternal, what) {}
};

}  // namespace dtrain

// Checks an internal invariant (active in release builds too: cheap checks only).
#define DTRAIN_CHECK(cond, ...)                                                          \
  do {                                                                                   \
    if (!(cond))                                                                         \
      throw ::dtrain::InternalError(fmt::format("{}:{}: check failed: {}: {}", __FILE__, \
                                                __LINE__, #cond, fmt::format(__VA_ARGS__))); \
  } while (0)
