// Who joined which group (internal): the state behind the rendezvous, kept by one named
// detached actor per job (the C++ one below; Python has the same rules in
// mpiray/util/collective/_registry.py).
//
// Rules: a name's current incarnation collects joins until world_size members have joined;
// a join to a name whose incarnation is complete starts the next incarnation (a group destroyed
// and created again, possibly with members that never left because they died). Within an
// incarnation a rank joins once, and every member must give the same world_size.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "mpiray/core/status.h"

namespace mpiray::collective::detail {

class Registry {
 public:
  /// @brief Join `name` as `rank` of `world_size` with round-0 bytes `blob`; the incarnation.
  Result<uint64_t> Join(const std::string& name, int world_size, int rank, const std::string& blob);
  /// @brief Publish round `round` (>= 1) bytes of `rank` in `incarnation`.
  Status Publish(uint64_t incarnation, int rank, int round, const std::string& blob);
  /// @brief Every member's bytes of `round` once all published (else empty, with `joined`
  /// listing the ranks that did).
  Result<std::vector<std::string>> Collect(uint64_t incarnation, int round, std::vector<int>* joined) const;
  /// @brief `rank` leaves; the incarnation is forgotten once every member left.
  void Leave(uint64_t incarnation, int rank);

 private:
  struct Incarnation {
    std::string name;
    int world_size = 0;
    std::map<int, std::map<int, std::string>> rounds;  // round -> rank -> bytes
    std::set<int> left;
    bool Complete(int round) const;
  };
  std::map<uint64_t, Incarnation> incarnations_;
  std::map<std::string, uint64_t> current_;  // name -> its latest incarnation
  uint64_t next_ = 1;
};

}  // namespace mpiray::collective::detail
