// IdTable<V>: a hash table keyed by ObjectId for the reference-counting paths (the head's object
// directory, a client's local reference counts), where a get of a value holding 10,000 refs makes
// 40,000 lookups. std::unordered_map costs three dependent cache misses per lookup there (bucket
// array, the node before the bucket's first, the node) and a fourth to find a bucket's end; this
// table finds an entry with two: an open-addressing index of 16-byte buckets (the entry's address
// and the key's hash; linear probing, at most half full) and the entry. Entries are allocated one
// by one, so a pointer to a value stays valid until that entry is erased, as with
// std::unordered_map. Iterating walks the index: a table that held many more entries than it
// does now is Shrink()ed first where that matters.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <type_traits>
#include <vector>

#include "mpiray/core/ids.h"

namespace mpiray {

template <class V>
class IdTable {
 public:
  struct Entry {
    ObjectId key;
    V value;
  };

 private:
  struct Bucket {
    Entry* entry = nullptr;
    uint64_t hash = 0;
  };

 public:
  IdTable() = default;
  IdTable(const IdTable&) = delete;
  IdTable& operator=(const IdTable&) = delete;
  ~IdTable() {
    for (Bucket& b : index_) delete b.entry;
  }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  /// @brief The index's size (what an iteration walks).
  size_t bucket_count() const { return index_.size(); }

  V* Find(const ObjectId& key) {
    if (size_ == 0) return nullptr;
    const uint64_t h = Hash(key);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Bucket& b = index_[i];
      if (!b.entry) return nullptr;
      if (b.hash == h && b.entry->key == key) return &b.entry->value;
    }
  }
  const V* Find(const ObjectId& key) const { return const_cast<IdTable*>(this)->Find(key); }
  bool Contains(const ObjectId& key) const { return Find(key) != nullptr; }

  /// @brief The value of `key`, default-constructed if absent.
  V& operator[](const ObjectId& key) {
    if ((size_ + 1) * 2 > index_.size()) Rehash(index_.empty() ? 64 : index_.size() * 2);
    const uint64_t h = Hash(key);
    size_t i = h & mask_;
    for (; index_[i].entry; i = (i + 1) & mask_) {
      const Bucket& b = index_[i];
      if (b.hash == h && b.entry->key == key) return b.entry->value;
    }
    index_[i] = Bucket{new Entry{key, V()}, h};
    ++size_;
    return index_[i].entry->value;
  }

  /// @brief Remove `key`; false if absent. Do not call while iterating.
  bool Erase(const ObjectId& key) {
    if (size_ == 0) return false;
    const uint64_t h = Hash(key);
    size_t i = h & mask_;
    for (;; i = (i + 1) & mask_) {
      const Bucket& b = index_[i];
      if (!b.entry) return false;
      if (b.hash == h && b.entry->key == key) break;
    }
    delete index_[i].entry;
    --size_;
    // Backward-shift deletion: pull later buckets of the probe run into the hole.
    for (size_t j = (i + 1) & mask_; index_[j].entry; j = (j + 1) & mask_) {
      const size_t ideal = index_[j].hash & mask_;
      if (((j - ideal) & mask_) >= ((j - i) & mask_)) {
        index_[i] = index_[j];
        i = j;
      }
    }
    index_[i] = Bucket{};
    return true;
  }

  /// @brief Shrink the index to what the entries alive need, when less than 1/8 of it is used:
  /// an iteration walks the whole index, which otherwise stays as large as the most entries
  /// there ever were. Not done by Erase, whose hot paths (a burst of refs made and dropped) would
  /// shrink and grow the index again each time, on fresh pages.
  void Shrink() {
    if (index_.size() <= 64 || size_ * 8 >= index_.size()) return;
    size_t buckets = 64;
    while (buckets < size_ * 4) buckets *= 2;
    Rehash(buckets);
  }

  template <bool kConst>
  class Iter {
    using BucketPtr = std::conditional_t<kConst, const Bucket*, Bucket*>;
    using Ref = std::conditional_t<kConst, const Entry&, Entry&>;

   public:
    Iter(BucketPtr b, BucketPtr end) : b_(b), end_(end) { Skip(); }
    Ref operator*() const { return *b_->entry; }
    Iter& operator++() {
      ++b_;
      Skip();
      return *this;
    }
    bool operator!=(const Iter& o) const { return b_ != o.b_; }
    bool operator==(const Iter& o) const { return b_ == o.b_; }

   private:
    void Skip() {
      while (b_ != end_ && !b_->entry) ++b_;
    }
    BucketPtr b_;
    BucketPtr end_;
  };
  using iterator = Iter<false>;
  using const_iterator = Iter<true>;
  iterator begin() { return iterator(index_.data(), index_.data() + index_.size()); }
  iterator end() { return iterator(index_.data() + index_.size(), index_.data() + index_.size()); }
  const_iterator begin() const { return const_iterator(index_.data(), index_.data() + index_.size()); }
  const_iterator end() const {
    return const_iterator(index_.data() + index_.size(), index_.data() + index_.size());
  }

 private:
  static uint64_t Hash(const ObjectId& key) {
    uint64_t h = std::hash<ObjectId>()(key);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
  }

  void Rehash(size_t buckets) {
    std::vector<Bucket> old = std::move(index_);
    index_.assign(buckets, Bucket{});
    mask_ = buckets - 1;
    for (const Bucket& b : old) {
      if (!b.entry) continue;
      size_t i = b.hash & mask_;
      while (index_[i].entry) i = (i + 1) & mask_;
      index_[i] = b;
    }
  }

  std::vector<Bucket> index_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

}  // namespace mpiray
