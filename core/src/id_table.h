// IdTable<V>: a hash table keyed by ObjectId for the reference-counting paths (the head's object
// directory, a client's local reference counts), where a get of a value holding 10,000 refs makes
// 40,000 lookups. std::unordered_map costs three dependent cache misses per lookup there (bucket
// array, the node before the bucket's first, the node) and a fourth to find a bucket's end; this
// table finds an entry with two: an open-addressing index of 8-byte buckets (cell number and the
// key's hash, linear probing, at most half full) and the cell. Cells live in fixed chunks that
// never move, so a pointer to a value stays valid until that entry is erased, as with
// std::unordered_map; freed cells are reused first.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
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
    const uint32_t h = Hash(key);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Bucket& b = index_[i];
      if (b.cell == 0) return nullptr;
      if (b.hash == h) {
        Entry& e = *Cell(b.cell - 1);
        if (e.key == key) return &e.value;
      }
    }
  }
  const V* Find(const ObjectId& key) const { return const_cast<IdTable*>(this)->Find(key); }
  bool Contains(const ObjectId& key) const { return Find(key) != nullptr; }

  /// @brief The value of `key`, default-constructed if absent.
  V& operator[](const ObjectId& key) {
    if ((size_ + 1) * 2 > index_.size()) Grow();
    const uint32_t h = Hash(key);
    size_t i = h & mask_;
    for (;; i = (i + 1) & mask_) {
      Bucket& b = index_[i];
      if (b.cell == 0) break;
      if (b.hash == h) {
        Entry& e = *Cell(b.cell - 1);
        if (e.key == key) return e.value;
      }
    }
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
    const uint32_t h = Hash(key);
    size_t i = h & mask_;
    for (;; i = (i + 1) & mask_) {
      const Bucket& b = index_[i];
      if (b.cell == 0) return false;
      if (b.hash == h && (*Cell(b.cell - 1)).key == key) break;
    }
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

  class iterator {
   public:
    iterator(IdTable* t, uint32_t c) : t_(t), c_(c) { Skip(); }
    Entry& operator*() const { return *t_->Cell(c_); }
    Entry* operator->() const { return &*t_->Cell(c_); }
    iterator& operator++() {
      ++c_;
      Skip();
      return *this;
    }
    bool operator!=(const iterator& o) const { return c_ != o.c_; }
    bool operator==(const iterator& o) const { return c_ == o.c_; }

   private:
    void Skip() {
      while (c_ < t_->cells_ && !t_->Cell(c_).has_value()) ++c_;
    }
    IdTable* t_;
    uint32_t c_;
  };
  class const_iterator {
   public:
    explicit const_iterator(iterator it) : it_(it) {}
    const Entry& operator*() const { return *it_; }
    const Entry* operator->() const { return &*it_; }
    const_iterator& operator++() {
      ++it_;
      return *this;
    }
    bool operator!=(const const_iterator& o) const { return it_ != o.it_; }

   private:
    iterator it_;
  };
  iterator begin() { return iterator(this, 0); }
  iterator end() { return iterator(this, cells_); }
  const_iterator begin() const { return const_iterator(const_cast<IdTable*>(this)->begin()); }
  const_iterator end() const { return const_iterator(const_cast<IdTable*>(this)->end()); }

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

  void Grow() {
    std::vector<Bucket> old = std::move(index_);
    index_.assign(old.empty() ? 64 : old.size() * 2, Bucket{});
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
