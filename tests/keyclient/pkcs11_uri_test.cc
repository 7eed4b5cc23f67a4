// RFC 7512 key URIs: what is accepted, its canonical form, and what is refused.
#include <gtest/gtest.h>

#include "keyclient/keyclient.h"
#include "keyclient/pkcs11_uri.h"

namespace cmkfs::keyclient {
namespace {

const std::string kQuery = "?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/cmkfs/hsm.pin";

TEST(Pkcs11UriTest, ParsesAndPrintsTheCanonicalForm) {
  auto u = Pkcs11Uri::parse("pkcs11:object=my%20key;token=T%3b1;id=%01%FF" + kQuery);
  ASSERT_TRUE(u.ok()) << u.status().message();
  EXPECT_EQ(u->object, "my key");
  EXPECT_EQ(u->token, "T;1");
  EXPECT_EQ(*u->id, (std::vector<uint8_t>{0x01, 0xff}));
  EXPECT_EQ(u->pin_source, "/etc/cmkfs/hsm.pin");
  EXPECT_EQ(u->str(), "pkcs11:token=T%3B1;object=my%20key;id=%01%FF" + kQuery);
  auto again = Pkcs11Uri::parse(u->str());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->str(), u->str());
  EXPECT_TRUE(again->same_key(*u));
  EXPECT_FALSE(u->with_id({2}).str() == u->str());
}

TEST(Pkcs11UriTest, RefusesWhatItCouldNotActOnFaithfully) {
  for (const std::string& bad : std::vector<std::string>{"pkcs11:token=T" + kQuery,                                  // no object
                          "pkcs11:object=k;slot-id=1" + kQuery,                       // unknown attribute
                          "pkcs11:object=k;object=j" + kQuery,                        // twice
                          "pkcs11:object=k;id=%0" + kQuery,                           // bad escape
                          "pkcs11:object=k;type=public" + kQuery,                     // cannot unwrap
                          "pkcs11:object=k?module-path=rel.so&pin-source=file:/p",    // relative module
                          "pkcs11:object=k?module-path=/m.so&pin-value=1234",         // PIN in the URI
                          "pkcs11:object=k?module-path=/m.so",                        // no PIN source
                          "pkcs11:object=k?module-name=softhsm2&pin-source=file:/p",  // module by name
                          "https://vault/keys/k", std::string("pkcs11:object=") + std::string(5000, 'a') + kQuery}) {
    EXPECT_FALSE(Pkcs11Uri::parse(bad).ok()) << bad;
  }
}

TEST(Pkcs11UriTest, KeySettingsAdmitVersionsOfTheConfiguredKeyOnly) {
  KekConfig k;
  k.provider = ProviderKind::kPkcs11;
  k.key_identifier = "pkcs11:token=T;object=cmk" + kQuery;
  EXPECT_TRUE(k.rotation_enabled());
  EXPECT_TRUE(k.admits("pkcs11:token=T;object=cmk;id=%02" + kQuery));
  EXPECT_FALSE(k.admits("pkcs11:token=T;object=cmk" + kQuery));  // no version
  EXPECT_FALSE(k.admits("pkcs11:token=T;object=other;id=%02" + kQuery));
  EXPECT_FALSE(k.admits("pkcs11:token=T;object=cmk;id=%02?module-path=/tmp/evil.so&pin-source=file:/p"));
  k.key_identifier = "pkcs11:token=T;object=cmk;id=%01" + kQuery;
  EXPECT_FALSE(k.rotation_enabled());
  EXPECT_TRUE(k.admits("pkcs11:token=T;object=cmk;id=%01" + kQuery));
  EXPECT_FALSE(k.admits("pkcs11:token=T;object=cmk;id=%02" + kQuery));
  auto back = KekConfig::from_json(k.to_json());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->provider, ProviderKind::kPkcs11);
  EXPECT_TRUE(back->differences(k).empty());
}

}  // namespace
}  // namespace cmkfs::keyclient
