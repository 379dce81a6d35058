// libs/hdf5 on real files: round trips of every type class, chunked and compressed storage,
// virtual datasets over per-block files, attributes, and the errors for missing files,
// missing datasets, files that are not HDF5 and truncated files.
#include <catch2/catch.hpp>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <thread>

#include "mpiray/hdf5/file.h"
#include "mpiray/hdf5/write.h"

namespace fs = std::filesystem;
using namespace mpiray::hdf5;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("mpiray-hdf5-test-" + std::to_string(::getpid()) + "-" +
                                        std::to_string(reinterpret_cast<uintptr_t>(this)));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

template <class T>
DatasetData Numbers(const std::string& name, TypeClass cls, const std::vector<T>& v,
                    std::vector<uint64_t> shape, StorageOptions storage = {}) {
  DatasetData d;
  d.name = name;
  d.type = Scalar(cls, sizeof(T));
  d.shape = std::move(shape);
  d.data = v.data();
  d.data_bytes = v.size() * sizeof(T);
  d.storage = std::move(storage);
  return d;
}

}  // namespace

TEST_CASE("numbers round trip through chunked, compressed and contiguous datasets", "[hdf5]") {
  TempDir dir;
  std::vector<double> x(1000 * 3);
  std::iota(x.begin(), x.end(), 0.5);
  std::vector<int32_t> y(1000);
  std::iota(y.begin(), y.end(), -7);
  StorageOptions chunked;
  chunked.chunks = {128, 3};
  chunked.deflate_level = 4;
  chunked.shuffle = true;
  REQUIRE(WriteFile(dir / "a.h5", {Numbers("x", TypeClass::kFloat, x, {1000, 3}, chunked),
                                   Numbers("grp/y", TypeClass::kInt, y, {1000})})
              .ok());
  auto f = File::Open(dir / "a.h5");
  REQUIRE(f.ok());
  auto names = f->ListDatasets();
  REQUIRE(names.ok());
  CHECK(*names == std::vector<std::string>{"grp/y", "x"});
  auto info = f->Describe("x");
  REQUIRE(info.ok());
  CHECK(info->shape == std::vector<uint64_t>{1000, 3});
  CHECK(info->chunks == std::vector<uint64_t>{128, 3});
  CHECK(info->layout == Layout::kChunked);
  CHECK(info->type == Scalar(TypeClass::kFloat, 8));
  REQUIRE(info->filters.size() == 2);
  CHECK(info->filters[0].name == "shuffle");
  CHECK(info->filters[1].name == "deflate");
  CHECK(info->RowBytes() == 24);
  std::vector<double> back(300 * 3);
  REQUIRE(f->ReadRows("x", 100, 300, back.data(), back.size() * 8).ok());
  CHECK(std::equal(back.begin(), back.end(), x.begin() + 300));
  std::vector<int32_t> yb(1000);
  REQUIRE(f->ReadRows("/grp/y", 0, 1000, yb.data(), yb.size() * 4).ok());
  CHECK(yb == y);
  auto yinfo = f->Describe("grp/y");
  REQUIRE(yinfo.ok());
  CHECK(yinfo->layout == Layout::kContiguous);
  CHECK(yinfo->chunks.empty());
}

TEST_CASE("compound, bool, fixed and variable-length strings", "[hdf5]") {
  TempDir dir;
  struct Rec {
    int64_t a;
    float b;
  } __attribute__((packed));
  std::vector<Rec> recs{{1, 1.5f}, {2, 2.5f}, {3, 3.5f}};
  DatasetData comp;
  comp.name = "rec";
  comp.type.cls = TypeClass::kCompound;
  comp.type.size = sizeof(Rec);
  comp.type.members = {{"a", 0, Scalar(TypeClass::kInt, 8)}, {"b", 8, Scalar(TypeClass::kFloat, 4)}};
  comp.shape = {3};
  comp.data = recs.data();
  comp.data_bytes = recs.size() * sizeof(Rec);
  std::vector<uint8_t> flags{1, 0, 1};
  DatasetData b = Numbers("flag", TypeClass::kBool, flags, {3});
  b.type = Scalar(TypeClass::kBool, 1);
  std::vector<std::string> words{"alpha", "", "gamma delta"};
  DatasetData s;
  s.name = "word";
  s.type = Scalar(TypeClass::kVarString, sizeof(char*));
  s.type.utf8 = true;
  s.shape = {3};
  s.strings = &words;
  std::string fixed = "ab\0\0cdefxy";
  DatasetData fs_;
  fs_.name = "code";
  fs_.type = Scalar(TypeClass::kFixedString, 5);
  fs_.shape = {2};
  fs_.data = fixed.data();
  fs_.data_bytes = 10;
  REQUIRE(WriteFile(dir / "c.h5", {comp, b, s, fs_}).ok());

  auto f = File::Open(dir / "c.h5");
  REQUIRE(f.ok());
  auto info = f->Describe("rec");
  REQUIRE(info.ok());
  CHECK(info->type == comp.type);
  CHECK(info->type.ToString() == "compound{a: int64, b: float32}");
  std::vector<Rec> back(3);
  REQUIRE(f->ReadRows("rec", 0, 3, back.data(), sizeof(Rec) * 3).ok());
  CHECK(back[2].a == 3);
  CHECK(back[2].b == 3.5f);
  auto binfo = f->Describe("flag");
  REQUIRE(binfo.ok());
  CHECK(binfo->type.cls == TypeClass::kBool);
  std::vector<uint8_t> fb(3);
  REQUIRE(f->ReadRows("flag", 0, 3, fb.data(), 3).ok());
  CHECK(fb == flags);
  auto strs = f->ReadStrings("word", 1, 2);
  REQUIRE(strs.ok());
  CHECK(*strs == std::vector<std::string>{"", "gamma delta"});
  std::vector<char> tmp(8);
  auto st = f->ReadRows("word", 0, 1, tmp.data(), tmp.size());
  CHECK(st.code() == mpiray::StatusCode::kInvalidArgument);
  char code[10];
  REQUIRE(f->ReadRows("code", 0, 2, code, 10).ok());
  CHECK(std::memcmp(code, fixed.data(), 10) == 0);
}

TEST_CASE("a virtual dataset stitches per-block files into one array", "[hdf5]") {
  TempDir dir;
  fs::create_directories(dir.path / "out.h5.parts");
  std::vector<VirtualSource> sources;
  std::vector<int64_t> expect;
  for (int p = 0; p < 3; ++p) {
    std::vector<int64_t> v(static_cast<size_t>(10 + p) * 2);
    std::iota(v.begin(), v.end(), p * 1000);
    expect.insert(expect.end(), v.begin(), v.end());
    std::string part = "out.h5.parts/part-" + std::to_string(p) + ".h5";
    REQUIRE(WriteFile(dir / part, {Numbers("v", TypeClass::kInt, v, {static_cast<uint64_t>(10 + p), 2})}).ok());
    sources.push_back({part, "v", static_cast<uint64_t>(10 + p)});
  }
  VirtualDataset vd{"v", Scalar(TypeClass::kInt, 8), {2}, sources};
  REQUIRE(WriteVirtualFile(dir / "out.h5", {vd}).ok());
  // Read from another working directory: relative sources resolve against the file's folder.
  auto f = File::Open(dir / "out.h5");
  REQUIRE(f.ok());
  auto info = f->Describe("v");
  REQUIRE(info.ok());
  CHECK(info->layout == Layout::kVirtual);
  CHECK(info->shape == std::vector<uint64_t>{33, 2});
  std::vector<int64_t> back(33 * 2);
  REQUIRE(f->ReadRows("v", 0, 33, back.data(), back.size() * 8).ok());
  CHECK(back == expect);
}

TEST_CASE("attributes of the file and of datasets", "[hdf5]") {
  TempDir dir;
  std::vector<double> x{1, 2, 3};
  double scale = 0.25;
  AttributeData a1{"scale", Scalar(TypeClass::kFloat, 8), {}, &scale, 8, nullptr};
  std::vector<std::string> units{"m", "s"};
  AttributeData a2{"units", Scalar(TypeClass::kVarString, sizeof(char*)), {2}, nullptr, 0, &units};
  a2.type.utf8 = true;
  REQUIRE(WriteFile(dir / "a.h5", {Numbers("x", TypeClass::kFloat, x, {3})}, {a1, a2}).ok());
  auto f = File::Open(dir / "a.h5");
  REQUIRE(f.ok());
  auto attrs = f->ReadAttributes("/");
  REQUIRE(attrs.ok());
  REQUIRE(attrs->size() == 2);
  CHECK((*attrs)[0].name == "scale");
  double got = 0;
  std::memcpy(&got, (*attrs)[0].data.data(), 8);
  CHECK(got == 0.25);
  CHECK((*attrs)[1].strings == units);
  CHECK(f->ReadAttributes("nope").status().code() == mpiray::StatusCode::kNotFound);
}

TEST_CASE("errors name the file and the dataset", "[hdf5]") {
  TempDir dir;
  auto missing = File::Open(dir / "missing.h5");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().code() == mpiray::StatusCode::kNotFound);
  CHECK_THAT(missing.status().message(), Catch::Contains("missing.h5"));

  std::ofstream(dir / "text.h5") << "this is not hdf5\n";
  auto text = File::Open(dir / "text.h5");
  REQUIRE_FALSE(text.ok());
  CHECK(text.status().code() == mpiray::StatusCode::kIoError);
  CHECK_THAT(text.status().message(), Catch::Contains("is not an HDF5 file"));

  std::vector<double> x(100000, 1.0);
  REQUIRE(WriteFile(dir / "big.h5", {Numbers("x", TypeClass::kFloat, x, {100000})}).ok());
  fs::resize_file(dir.path / "big.h5", 4096);  // the header survives, the data does not
  auto cut = File::Open(dir / "big.h5");
  if (cut.ok()) {
    std::vector<double> back(100000);
    auto st = cut->ReadRows("x", 0, 100000, back.data(), back.size() * 8);
    CHECK_FALSE(st.ok());
    CHECK_THAT(st.message(), Catch::Contains("big.h5"));
  } else {
    CHECK_THAT(cut.status().message(), Catch::Contains("big.h5"));
  }

  REQUIRE(WriteFile(dir / "ok.h5", {Numbers("grp/x", TypeClass::kFloat, x, {100000})}).ok());
  auto f = File::Open(dir / "ok.h5");
  REQUIRE(f.ok());
  auto nods = f->Describe("y");
  CHECK(nods.status().code() == mpiray::StatusCode::kNotFound);
  CHECK_THAT(nods.status().message(), Catch::Contains("'y'") && Catch::Contains("ok.h5") &&
                                          Catch::Contains("grp/x"));
  CHECK(f->Describe("nogroup/y").status().code() == mpiray::StatusCode::kNotFound);
  CHECK(f->Describe("grp").status().code() == mpiray::StatusCode::kInvalidArgument);
  std::vector<double> small(10);
  auto st = f->ReadRows("grp/x", 99995, 10, small.data(), 80);
  CHECK(st.code() == mpiray::StatusCode::kInvalidArgument);
  CHECK_THAT(st.message(), Catch::Contains("out of range"));
  CHECK(f->ReadRows("grp/x", 0, 10, small.data(), 40).code() == mpiray::StatusCode::kInvalidArgument);
}

TEST_CASE("reads from several threads at once are serialised safely", "[hdf5]") {
  TempDir dir;
  std::vector<int64_t> v(1 << 16);
  std::iota(v.begin(), v.end(), 0);
  StorageOptions s;
  s.chunks = {4096};
  s.deflate_level = 1;
  REQUIRE(WriteFile(dir / "t.h5", {Numbers("v", TypeClass::kInt, v, {v.size()}, s)}).ok());
  auto f = File::Open(dir / "t.h5");
  REQUIRE(f.ok());
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::vector<int64_t> out(16384);
      bool good = true;
      for (int rep = 0; rep < 20; ++rep) {
        good = good && f->ReadRows("v", static_cast<uint64_t>(t) * 16384, 16384, out.data(), out.size() * 8).ok() &&
               out[0] == t * 16384 && out.back() == t * 16384 + 16383;
      }
      ok[static_cast<size_t>(t)] = good;
    });
  }
  for (auto& th : threads) th.join();
  CHECK(ok == std::vector<int>{1, 1, 1, 1});
}

// ReadRows reads without HDF5's chunk cache (whole chunks go straight into the destination):
// ranges that start or end inside a chunk, plain and compressed, one after another on one open
// file and again after a read that covers whole chunks, must give exactly the written rows.
TEST_CASE("row ranges across chunk boundaries read exactly without a chunk cache", "[hdf5]") {
  TempDir dir;
  const uint64_t rows = 1000, cols = 5;
  std::vector<float> x(rows * cols);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i) * 0.5f - 3.0f;
  StorageOptions plain;
  plain.chunks = {64, cols};
  StorageOptions packed = plain;
  packed.deflate_level = 6;
  packed.shuffle = true;
  REQUIRE(WriteFile(dir / "c.h5", {Numbers("plain", TypeClass::kFloat, x, {rows, cols}, plain),
                                   Numbers("packed", TypeClass::kFloat, x, {rows, cols}, packed)})
              .ok());
  auto f = File::Open(dir / "c.h5");
  REQUIRE(f.ok());
  const std::vector<std::pair<uint64_t, uint64_t>> ranges{
      {0, rows}, {0, 64}, {5, 100}, {63, 2}, {128, 192}, {640, 300}, {993, 7}, {999, 1}, {0, rows}};
  for (const char* name : {"plain", "packed"}) {
    for (auto [start, count] : ranges) {
      INFO(name << " rows " << start << ".." << start + count);
      std::vector<float> back(count * cols, -1.0f);
      REQUIRE(f->ReadRows(name, start, count, back.data(), back.size() * sizeof(float)).ok());
      CHECK(std::memcmp(back.data(), x.data() + start * cols, back.size() * sizeof(float)) == 0);
    }
  }
}
