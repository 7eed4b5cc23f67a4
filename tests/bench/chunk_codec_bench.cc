// The chunk codec without FUSE in the way: MB/s of sealing and opening per chunk size, beside a
// bare AES-256-GCM pass over the same bytes (what `openssl speed -evp aes-256-gcm` measures).
#include <benchmark/benchmark.h>

#include <vector>

#include "crypto/chunk_codec.h"
#include "crypto/crypto.h"
#include "crypto/keys.h"

namespace cmkfs::crypto {
namespace {

struct Fixture {
  SecretBytes key = std::move(*random_key());
  ChunkBinding binding{1, {1}, {2}, 1};
};

void BM_SealChunk(benchmark::State& state) {
  Fixture f;
  size_t n = static_cast<size_t>(state.range(0));
  std::vector<uint8_t> plain(n, 0x42), phys(n + kChunkOverhead);
  for (auto _ : state) {
    ChunkSealer sealer(f.key.bytes(), f.binding);
    benchmark::DoNotOptimize(sealer.seal(7, plain, phys));
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * n));
}

void BM_OpenChunk(benchmark::State& state) {
  Fixture f;
  size_t n = static_cast<size_t>(state.range(0));
  std::vector<uint8_t> plain(n, 0x42), phys(n + kChunkOverhead);
  { ChunkSealer(f.key.bytes(), f.binding).seal(7, plain, phys).ok(); }
  for (auto _ : state) {
    ChunkOpener opener(f.key.bytes(), f.binding);
    benchmark::DoNotOptimize(opener.open(7, phys, plain));
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * n));
}

// A 1 MiB request as the write path does it: one session, 1 MiB / chunk size chunks.
void BM_SealRequest1MiB(benchmark::State& state) {
  Fixture f;
  const size_t cs = static_cast<size_t>(state.range(0)), chunks = (1 << 20) / cs;
  std::vector<uint8_t> plain(cs * chunks, 0x42), phys((cs + kChunkOverhead) * chunks);
  for (auto _ : state) {
    ChunkSealer sealer(f.key.bytes(), f.binding);
    for (size_t i = 0; i < chunks; ++i) {
      benchmark::DoNotOptimize(sealer.seal(i, {plain.data() + i * cs, cs}, {phys.data() + i * (cs + kChunkOverhead), cs + kChunkOverhead}));
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * cs * chunks));
}

// The floor: AES-256-GCM over the same bytes with a fixed nonce, no AAD building, no RNG.
// A 1 MiB READ as the read path does it: one session opens 1 MiB / chunk size chunks.
void BM_OpenRequest1MiB(benchmark::State& state) {
  Fixture f;
  const size_t cs = static_cast<size_t>(state.range(0)), chunks = (1 << 20) / cs;
  std::vector<uint8_t> plain(cs * chunks, 0x42), phys((cs + kChunkOverhead) * chunks);
  {
    ChunkSealer sealer(f.key.bytes(), f.binding);
    for (size_t i = 0; i < chunks; ++i) {
      if (!sealer.seal(i, {plain.data() + i * cs, cs}, {phys.data() + i * (cs + kChunkOverhead), cs + kChunkOverhead}).ok()) {
        return state.SkipWithError("seal failed");
      }
    }
  }
  for (auto _ : state) {
    ChunkOpener opener(f.key.bytes(), f.binding);
    for (size_t i = 0; i < chunks; ++i) {
      benchmark::DoNotOptimize(opener.open(i, {phys.data() + i * (cs + kChunkOverhead), cs + kChunkOverhead}, {plain.data() + i * cs, cs}));
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * cs * chunks));
}

void BM_BareGcm(benchmark::State& state) {
  Fixture f;
  size_t n = static_cast<size_t>(state.range(0));
  std::vector<uint8_t> plain(n, 0x42), ct(n), nonce(12, 1), tag(16);
  GcmSession session(f.key.bytes(), true);
  for (auto _ : state) benchmark::DoNotOptimize(session.seal(nonce, {}, plain, ct, tag));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * n));
}

// The keyed name hash every lookup, create and unlink computes (parent inode | name).
void BM_NameMac(benchmark::State& state) {
  Fixture f;
  auto key = HmacKey::make(f.key.bytes());
  if (!key.ok()) return state.SkipWithError("HMAC key setup failed");
  std::vector<uint8_t> msg(8 + 32, 0x61);
  for (auto _ : state) benchmark::DoNotOptimize(key->mac(msg));
}

void BM_DeriveFileKey(benchmark::State& state) {
  Fixture f;
  Id128 id{3};
  for (auto _ : state) benchmark::DoNotOptimize(derive_file_key(f.key, id));
}

BENCHMARK(BM_SealChunk)->RangeMultiplier(4)->Range(4 << 10, 1 << 20);
BENCHMARK(BM_OpenChunk)->RangeMultiplier(4)->Range(4 << 10, 1 << 20);
BENCHMARK(BM_BareGcm)->RangeMultiplier(4)->Range(4 << 10, 1 << 20);
BENCHMARK(BM_SealRequest1MiB)->Arg(4 << 10)->Arg(16 << 10)->Arg(64 << 10)->Arg(256 << 10);
BENCHMARK(BM_OpenRequest1MiB)->Arg(4 << 10)->Arg(16 << 10)->Arg(64 << 10)->Arg(256 << 10);
BENCHMARK(BM_NameMac)->Threads(1)->Threads(2);
BENCHMARK(BM_DeriveFileKey);

}  // namespace
}  // namespace cmkfs::crypto

BENCHMARK_MAIN();
