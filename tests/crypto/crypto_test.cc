#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "crypto/chunk_codec.h"
#include "crypto/crypto.h"
#include "crypto/keys.h"
#include "tests/support/test_util.h"

namespace cmkfs::crypto {
namespace {

using cmkfs::testing::pattern;
using cmkfs::testing::unhex;

struct GcmVector {
  const char *key, *iv, *pt, *aad, *ct, *tag;
};

// "The Galois/Counter Mode of Operation", McGrew & Viega, test cases 13-16 (AES-256).
const GcmVector kGcmVectors[] = {
    {"0000000000000000000000000000000000000000000000000000000000000000", "000000000000000000000000", "", "", "",
     "530f8afbc74536b9a963b4f1c4cb738b"},
    {"0000000000000000000000000000000000000000000000000000000000000000", "000000000000000000000000",
     "00000000000000000000000000000000", "", "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919"},
    {"feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
     "",
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
     "b094dac5d93471bdec1a502270e3cc6c"},
    {"feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
     "feedfacedeadbeeffeedfacedeadbeefabaddad2",
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
     "76fc6ece0f4e1768cddf8853bb2d551b"},
};

TEST(Gcm, MatchesPublishedVectors) {
  for (const auto& v : kGcmVectors) {
    auto key = unhex(v.key), iv = unhex(v.iv), pt = unhex(v.pt), aad = unhex(v.aad);
    std::vector<uint8_t> ct(pt.size()), tag(kTagSize);
    ASSERT_TRUE(gcm_seal(key, iv, aad, pt, ct, tag).ok());
    EXPECT_EQ(to_hex(ct), v.ct);
    EXPECT_EQ(to_hex(tag), v.tag);
    std::vector<uint8_t> back(ct.size());
    ASSERT_TRUE(gcm_open(key, iv, aad, ct, tag, back).ok());
    EXPECT_EQ(back, pt);
  }
}

TEST(Gcm, TamperedCiphertextTagOrAadIsRejected) {
  const auto& v = kGcmVectors[3];
  auto key = unhex(v.key), iv = unhex(v.iv), aad = unhex(v.aad), ct = unhex(v.ct), tag = unhex(v.tag);
  std::vector<uint8_t> out(ct.size());
  ct[5] ^= 1;
  EXPECT_EQ(gcm_open(key, iv, aad, ct, tag, out).code(), EBADMSG);
  ct[5] ^= 1;
  tag[0] ^= 0x80;
  EXPECT_EQ(gcm_open(key, iv, aad, ct, tag, out).code(), EBADMSG);
  tag[0] ^= 0x80;
  aad[0] ^= 1;
  EXPECT_EQ(gcm_open(key, iv, aad, ct, tag, out).code(), EBADMSG);
  aad[0] ^= 1;
  EXPECT_TRUE(gcm_open(key, iv, aad, ct, tag, out).ok());
}

TEST(Gcm, WrongKeySizeIsAnError) {
  std::vector<uint8_t> key(16), iv(12), pt(4), ct(4), tag(16);
  EXPECT_EQ(gcm_seal(key, iv, {}, pt, ct, tag).code(), EINVAL);
}

// RFC 5869 appendix A, test cases 1 and 3 (SHA-256).
TEST(Hkdf, MatchesRfc5869) {
  auto ikm = unhex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b");
  auto okm1 = hkdf_sha256(ikm, unhex("000102030405060708090a0b0c"), unhex("f0f1f2f3f4f5f6f7f8f9"), 42);
  ASSERT_TRUE(okm1.ok());
  EXPECT_EQ(to_hex(okm1->bytes()),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
  auto okm3 = hkdf_sha256(ikm, {}, {}, 42);
  ASSERT_TRUE(okm3.ok());
  EXPECT_EQ(to_hex(okm3->bytes()),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8");
}

// Files' keys come from a deriver keyed once per data key: the same keys HKDF gives one call at a
// time (stores written before it read the same), on many threads at once, and different for
// different files and data keys.
TEST(Hkdf, FileKeysKeyedOnceAreHkdfsOnManyThreads) {
  for (int round = 0; round < 8; ++round) {
    SecretBytes dek = std::move(random_key().value());
    auto deriver = FileKeyDeriver::make(dek);
    ASSERT_TRUE(deriver.ok());
    std::vector<std::thread> threads;
    std::atomic<int> differing{0};
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < 64; ++i) {
          Id128 id{};
          id[0] = static_cast<uint8_t>(t), id[15] = static_cast<uint8_t>(i), id[7] = static_cast<uint8_t>(round);
          auto once = derive_file_key(dek, id);
          SecretBytes kept = deriver->derive(id);
          if (!once.ok() || kept.size() != 32 || !equal_constant_time(once->bytes(), kept.bytes())) ++differing;
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(differing.load(), 0);
  }
  SecretBytes a = std::move(random_key().value()), b = std::move(random_key().value());
  Id128 one{}, two{};
  two[0] = 1;
  auto da = FileKeyDeriver::make(a), db = FileKeyDeriver::make(b);
  EXPECT_FALSE(equal_constant_time(da->derive(one).bytes(), da->derive(two).bytes()));
  EXPECT_FALSE(equal_constant_time(da->derive(one).bytes(), db->derive(one).bytes()));
}

// RFC 4231 test case 1.
TEST(Hmac, MatchesRfc4231) {
  auto mac = hmac_sha256(unhex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"), as_bytes("Hi There"));
  EXPECT_EQ(to_hex(mac), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
}

// The keyed form gives the one-shot answers (dirent slots on disk depend on it), every time, on
// any number of threads; wiped, it holds no key.
TEST(Hmac, KeyedOnceMatchesOneShotOnManyThreads) {
  auto key = unhex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b");
  auto keyed = HmacKey::make(key);
  ASSERT_TRUE(keyed.ok());
  EXPECT_EQ(to_hex(keyed->mac(as_bytes("Hi There"))), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        std::string msg = "name-" + std::to_string(t) + "-" + std::to_string(i);
        if (keyed->mac(as_bytes(msg)) != hmac_sha256(key, as_bytes(msg))) ++mismatches;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
  keyed->wipe();
  EXPECT_TRUE(keyed->empty());
}

TEST(SecretBytes, MoveTransfersAndWipeEmpties) {
  auto k = random_key();
  ASSERT_TRUE(k.ok());
  SecretBytes a = std::move(k.value());
  EXPECT_EQ(a.size(), kKeySize);
  SecretBytes b = std::move(a);
  EXPECT_TRUE(a.empty());
  EXPECT_EQ(b.size(), kKeySize);
  SecretBytes c = b.clone();
  EXPECT_TRUE(equal_constant_time(b.bytes(), c.bytes()));
  b.wipe();
  EXPECT_TRUE(b.empty());
}

class ChunkCodecTest : public ::testing::Test {
 protected:
  SecretBytes key = std::move(random_key().value());
  ChunkBinding binding{1, Id128{1, 2, 3}, Id128{9, 8, 7}, 1};

  std::vector<uint8_t> seal(uint64_t index, const std::vector<uint8_t>& plain) {
    std::vector<uint8_t> phys(plain.size() + kChunkOverhead);
    ChunkSealer sealer(key.bytes(), binding);
    EXPECT_TRUE(sealer.seal(index, plain, phys).ok());
    return phys;
  }
  Status open(uint64_t index, const std::vector<uint8_t>& phys, const ChunkBinding& b, std::vector<uint8_t>* out) {
    out->assign(phys.size() - kChunkOverhead, 0);
    ChunkOpener opener(key.bytes(), b);
    return opener.open(index, phys, *out);
  }
};

TEST_F(ChunkCodecTest, RoundTripsEveryLength) {
  for (size_t n : {0, 1, 15, 16, 17, 4095, 4096, 65536}) {
    auto plain = pattern(n, static_cast<uint32_t>(n));
    auto phys = seal(3, plain);
    std::vector<uint8_t> back;
    ASSERT_TRUE(open(3, phys, binding, &back).ok()) << n;
    EXPECT_EQ(back, plain);
  }
}

TEST_F(ChunkCodecTest, SameChunkSealedTwiceDiffers) {
  auto plain = pattern(100, 1);
  EXPECT_NE(seal(0, plain), seal(0, plain));  // fresh random nonce per write
}

TEST_F(ChunkCodecTest, ChunkMovedToAnotherIndexFileStoreOrGenerationFails) {
  auto phys = seal(5, pattern(4096, 2));
  std::vector<uint8_t> out;
  EXPECT_EQ(open(6, phys, binding, &out).code(), EBADMSG);
  ChunkBinding other = binding;
  other.file_id[0] ^= 1;
  EXPECT_EQ(open(5, phys, other, &out).code(), EBADMSG);
  other = binding;
  other.store_id[15] ^= 1;
  EXPECT_EQ(open(5, phys, other, &out).code(), EBADMSG);
  other = binding;
  other.dek_generation = 2;
  EXPECT_EQ(open(5, phys, other, &out).code(), EBADMSG);
  other = binding;
  other.format_version = 2;
  EXPECT_EQ(open(5, phys, other, &out).code(), EBADMSG);
}

TEST_F(ChunkCodecTest, EveryFlippedBitFails) {
  auto phys = seal(0, pattern(64, 3));
  std::vector<uint8_t> out;
  for (size_t bit = 0; bit < phys.size() * 8; ++bit) {
    auto bad = phys;
    bad[bit / 8] ^= static_cast<uint8_t>(1 << (bit % 8));
    ASSERT_EQ(open(0, bad, binding, &out).code(), EBADMSG) << "bit " << bit;
  }
}

TEST_F(ChunkCodecTest, TruncatedChunkFails) {
  auto phys = seal(0, pattern(4096, 4));
  phys.resize(phys.size() - 1);
  std::vector<uint8_t> out;
  EXPECT_EQ(open(0, phys, binding, &out).code(), EBADMSG);
}

TEST(ChunkAad, EncodesEveryFieldInOrder) {
  ChunkBinding b{0x01020304, Id128{0xaa}, Id128{0xbb}, 0x0a0b0c0d};
  auto aad = chunk_aad(b, 0x1122334455667788ull);
  EXPECT_EQ(to_hex(aad),
            "01020304"
            "aa000000000000000000000000000000"
            "bb000000000000000000000000000000"
            "1122334455667788"
            "0a0b0c0d");
}

}  // namespace
}  // namespace cmkfs::crypto
