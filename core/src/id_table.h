// IdTable<V>: a hash table keyed by ObjectId for the reference-counting paths (the head's object
// directory, a client's local reference counts), where a get of a value holding 10,000 refs makes
// 40,000 lookups. std::unordered_map costs three dependent cache misses per lookup there (bucket
// array, the node before the bucket's first, the node) and a fourth to find a bucket's end; this
// table finds an entry with two: an open-addressing index of 8-byte buckets (cell number and the
// key's hash, linear probing, at most half full) and the cell. Cells live in fixed chunks that
// never move, so a pointer to a value stays valid until that entry is erased, as with
// std::unordered_map; freed cells are reused first (a burst of refs made and dropped allocates
// nothing the second time: entries allocated one by one made a get of 10k refs 1.5x slower).
// Iterating walks the index; a table that held many more entries than it does now is Shrink()ed
// first where that matters (the cells stay allocated at their high-water mark).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
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

  IdTable() = default;
  IdTable(const IdTable&) = delete;
  IdTable& operator=(const IdTable&) = delete;

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  V* Find(const ObjectId& key) {
    if (size_ == 0) return nullptr;
    const Bucket& b = index_[Slot(key, Hash(key))];
    return b.cell == 0 ? nullptr : &Cell(b.cell - 1)->value;
  }
  const V* Find(const ObjectId& key) const { return const_cast<IdTable*>(this)->Find(key); }
  bool Contains(const ObjectId& key) const { return Find(key) != nullptr; }

  /// @brief The value of `key`, default-constructed if absent.
  V& operator[](const ObjectId& key) {
    if ((size_ + 1) * 2 > index_.size()) Rehash(index_.empty() ? 64 : index_.size() * 2);
    const uint32_t h = Hash(key);
    const size_t i = Slot(key, h);
    if (index_[i].cell != 0) return Cell(index_[i].cell - 1)->value;
    uint32_t cell;
    if (!free_.empty()) {
      cell = free_.back();
      free_.pop_back();
    } else {
      if (cells_ % kChunk == 0) chunks_.emplace_back(new std::optional<Entry>[kChunk]);
      cell = cells_++;
    }
    Cell(cell).emplace(Entry{key, V()});
    index_[i] = Bucket{cell + 1, h};
    ++size_;
    return Cell(cell)->value;
  }

  /// @brief Remove `key`; false if absent.
  bool Erase(const ObjectId& key) {
    if (size_ == 0) return false;
    size_t i = Slot(key, Hash(key));
    if (index_[i].cell == 0) return false;
    const uint32_t cell = index_[i].cell - 1;
    Cell(cell).reset();
    free_.push_back(cell);
    --size_;
    // Backward-shift deletion: pull later buckets of the probe run into the hole.
    for (size_t j = (i + 1) & mask_;; j = (j + 1) & mask_) {
      Bucket& b = index_[j];
      if (b.cell == 0) break;
      const size_t ideal = b.hash & mask_;
      if (((j - ideal) & mask_) >= ((j - i) & mask_)) {
        index_[i] = b;
        i = j;
      }
    }
    index_[i] = Bucket{};
    return true;
  }

  /// @brief The index's size (what an iteration walks).
  size_t bucket_count() const { return index_.size(); }

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
    using T = std::conditional_t<kConst, const IdTable, IdTable>;
    using Ref = std::conditional_t<kConst, const Entry&, Entry&>;

   public:
    Iter(T* t, size_t b) : t_(t), b_(b) { Skip(); }
    Ref operator*() const { return *t_->Cell(t_->index_[b_].cell - 1); }
    Iter& operator++() {
      ++b_;
      Skip();
      return *this;
    }
    bool operator!=(const Iter& o) const { return b_ != o.b_; }
    bool operator==(const Iter& o) const { return b_ == o.b_; }

   private:
    void Skip() {
      while (b_ < t_->index_.size() && t_->index_[b_].cell == 0) ++b_;
    }
    T* t_;
    size_t b_;
  };
  using iterator = Iter<false>;
  using const_iterator = Iter<true>;
  iterator begin() { return iterator(this, 0); }
  iterator end() { return iterator(this, index_.size()); }
  const_iterator begin() const { return const_iterator(this, 0); }
  const_iterator end() const { return const_iterator(this, index_.size()); }

 private:
  static constexpr uint32_t kChunk = 1024;
  struct Bucket {
    uint32_t cell = 0;  // 0: empty; else the cell's number + 1
    uint32_t hash = 0;
  };

  static uint32_t Hash(const ObjectId& key) {
    uint64_t h = std::hash<ObjectId>()(key);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return static_cast<uint32_t>(h);
  }
  std::optional<Entry>& Cell(uint32_t c) const { return chunks_[c / kChunk][c % kChunk]; }
  // The bucket holding `key` (hash `h`), or the empty one that ends its probe run.
  size_t Slot(const ObjectId& key, uint32_t h) const {
    size_t i = h & mask_;
    for (; index_[i].cell != 0; i = (i + 1) & mask_) {
      if (index_[i].hash == h && Cell(index_[i].cell - 1)->key == key) break;
    }
    return i;
  }

  void Rehash(size_t buckets) {
    std::vector<Bucket> old = std::move(index_);
    index_.assign(buckets, Bucket{});
    mask_ = index_.size() - 1;
    for (const Bucket& b : old) {
      if (b.cell == 0) continue;
      size_t i = b.hash & mask_;
      while (index_[i].cell != 0) i = (i + 1) & mask_;
      index_[i] = b;
    }
  }

  std::vector<Bucket> index_;
  size_t mask_ = 0;
  std::vector<std::unique_ptr<std::optional<Entry>[]>> chunks_;
  std::vector<uint32_t> free_;
  uint32_t cells_ = 0;
  size_t size_ = 0;
};

}  // namespace mpiray
