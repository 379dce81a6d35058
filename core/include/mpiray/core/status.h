// Status and Result<T>: how errors travel inside the runtime. Exceptions are raised only at the
// public API boundary (see errors.h: ThrowIfError is the one place that maps codes to types).
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace mpiray {

/// @brief Error categories used inside the runtime and on the wire (values are stable).
enum class StatusCode : int {
  kOk = 0,
  kInvalidArgument = 1,
  kNotFound = 2,
  kTimeout = 3,
  kIoError = 4,
  kObjectStoreFull = 5,
  kObjectLost = 6,
  kTaskError = 7,
  kCancelled = 8,
  kActorDied = 9,
  kWorkerCrashed = 10,
  kInfeasible = 11,
  kUnavailable = 12,
  kInternal = 13,
  kAlreadyExists = 14,
  kUnauthenticated = 15,
  kFabricError = 16,
  kMpiError = 17,
  kActorUnavailable = 18,  // a call ran out of retries while its actor restarts
};

/// @brief Name of a status code, e.g. "ObjectStoreFull".
const char* StatusCodeName(StatusCode code);

/// @brief An error code plus a human-readable message naming the cause.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status OK() { return Status(); }
  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  /// @brief "Code: message", for logs.
  std::string ToString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
inline Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status IoError(std::string m) { return {StatusCode::kIoError, std::move(m)}; }
inline Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
inline Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }

/// @brief Either a value or a non-OK Status (an `expected`-style result).
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) { assert(!std::get<Status>(v_).ok()); }  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace mpiray

#define MPIRAY_CONCAT_INNER(a, b) a##b
#define MPIRAY_CONCAT(a, b) MPIRAY_CONCAT_INNER(a, b)

/// Return the Status from the enclosing function when `expr` is not OK.
#define MPIRAY_RETURN_IF_ERROR(expr)            \
  do {                                          \
    ::mpiray::Status _st = (expr);              \
    if (!_st.ok()) return _st;                  \
  } while (0)

#define MPIRAY_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return tmp.status();                \
  lhs = std::move(tmp).value()

/// `MPIRAY_ASSIGN_OR_RETURN(auto x, F())`: unwrap a Result or return its Status.
#define MPIRAY_ASSIGN_OR_RETURN(lhs, expr) \
  MPIRAY_ASSIGN_OR_RETURN_IMPL(MPIRAY_CONCAT(_res_, __LINE__), lhs, expr)
