// Identifiers of processes, nodes, tasks, actors and objects. All are small PODs so that task
// specs and object metadata stay compact on the head.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace mpiray {

/// @brief A runtime process: 0 is the head (rank 0), workers are 1, 2, ...
using ProcId = uint32_t;
/// @brief A (possibly virtual) node: a group of processes sharing one object store.
using NodeId = uint32_t;

inline constexpr ProcId kHeadProc = 0;
inline constexpr ProcId kNoProc = 0xffffffffu;

/// @brief A task id: the submitting process in the top 24 bits, a per-process counter below.
struct TaskId {
  uint64_t value = 0;

  static TaskId Make(ProcId proc, uint64_t seq) {
    return TaskId{(static_cast<uint64_t>(proc) << 40) | (seq & ((1ull << 40) - 1))};
  }
  ProcId submitter() const { return static_cast<ProcId>(value >> 40); }
  bool nil() const { return value == 0; }
  friend bool operator==(TaskId a, TaskId b) { return a.value == b.value; }
  friend bool operator!=(TaskId a, TaskId b) { return a.value != b.value; }
  friend bool operator<(TaskId a, TaskId b) { return a.value < b.value; }
  std::string ToString() const;
};

/// @brief An actor id is the id of the task that created it.
using ActorId = TaskId;

/// @brief What produced an object.
enum class ObjectKind : uint8_t { kTaskReturn = 0, kPut = 1 };

/// @brief An object id: the producing task (or put) plus the return index.
struct ObjectId {
  uint64_t task = 0;
  uint32_t index = 0;
  uint32_t kind = 0;  // ObjectKind

  static ObjectId ForReturn(TaskId t, uint32_t i) {
    return {t.value, i, static_cast<uint32_t>(ObjectKind::kTaskReturn)};
  }
  static ObjectId ForPut(TaskId t) { return {t.value, 0, static_cast<uint32_t>(ObjectKind::kPut)}; }
  TaskId task_id() const { return TaskId{task}; }
  bool is_put() const { return kind == static_cast<uint32_t>(ObjectKind::kPut); }
  bool nil() const { return task == 0; }
  friend bool operator==(const ObjectId& a, const ObjectId& b) {
    return a.task == b.task && a.index == b.index && a.kind == b.kind;
  }
  friend bool operator!=(const ObjectId& a, const ObjectId& b) { return !(a == b); }
  friend bool operator<(const ObjectId& a, const ObjectId& b) {
    if (a.task != b.task) return a.task < b.task;
    if (a.index != b.index) return a.index < b.index;
    return a.kind < b.kind;
  }
  /// @brief The 16 bytes (task, index, kind) in memory order as 32 hex digits, as Python's
  /// ObjectRef.hex() and binary().hex(); also the object's file name in the store.
  std::string Hex() const;
  /// @brief Inverse of Hex(); returns false on malformed input.
  static bool FromHex(const std::string& hex, ObjectId* out);
};

}  // namespace mpiray

template <>
struct std::hash<mpiray::ObjectId> {
  size_t operator()(const mpiray::ObjectId& id) const noexcept {
    uint64_t h = id.task * 0x9E3779B97F4A7C15ull;
    h ^= (static_cast<uint64_t>(id.index) << 8 | id.kind) + 0x632BE59BD9B4E019ull + (h << 6) + (h >> 2);
    return static_cast<size_t>(h);
  }
};
template <>
struct std::hash<mpiray::TaskId> {
  size_t operator()(mpiray::TaskId id) const noexcept {
    return static_cast<size_t>(id.value * 0x9E3779B97F4A7C15ull);
  }
};
