#include "crypto/base/printable.h"

#include <gtest/gtest.h>

namespace cmkfs {
namespace {

TEST(Printable, PlainTextAndUtf8PassUnchanged) {
  EXPECT_EQ(printable("sha256/ab cd-~"), "sha256/ab cd-~");
  EXPECT_EQ(printable("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91"), "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91");
  EXPECT_EQ(printable("\xe2\x80\x8b"), "\xe2\x80\x8b");  // U+200B: invisible, but reorders nothing
}

TEST(Printable, ControlsBadUtf8AndBackslashesAreEscaped) {
  EXPECT_EQ(printable("a\x1b]52;c;eA==\x07z"), "a\\x1b]52;c;eA==\\x07z");
  EXPECT_EQ(printable("\x7f\xc2\x9b"), "\\x7f\\xc2\\x9b");        // DEL, and C1 CSI as UTF-8
  EXPECT_EQ(printable("\xc0\xaf\xed\xa0\x80"), "\\xc0\\xaf\\xed\\xa0\\x80");  // overlong, surrogate
  EXPECT_EQ(printable("\xe2\x82"), "\\xe2\\x82");                 // cut short
  EXPECT_EQ(printable("\\x1b"), "\\x5cx1b");
}

// "Trojan Source": a right-to-left override shows "txt.exe" as "exe.txt", an isolate hides
// what follows, a line separator starts a line that is not there.
TEST(Printable, CharactersThatReorderTheDisplayAreEscaped) {
  EXPECT_EQ(printable("a\xe2\x80\xaeZ"), "a\\xe2\\x80\\xaeZ");       // U+202E RLO
  EXPECT_EQ(printable("\xe2\x80\xaa\xe2\x80\xac"), "\\xe2\\x80\\xaa\\xe2\\x80\\xac");  // LRE, PDF
  EXPECT_EQ(printable("\xe2\x81\xa6x\xe2\x81\xa9"), "\\xe2\\x81\\xa6x\\xe2\\x81\\xa9");  // LRI, PDI
  EXPECT_EQ(printable("\xe2\x80\x8f\xd8\x9c"), "\\xe2\\x80\\x8f\\xd8\\x9c");  // RLM, ALM
  EXPECT_EQ(printable("a\xe2\x80\xa8" "b"), "a\\xe2\\x80\\xa8b");     // U+2028 LINE SEPARATOR
  EXPECT_EQ(printable("\xe2\x80\xa7\xe2\x81\xaa"), "\xe2\x80\xa7\xe2\x81\xaa");  // U+2027, U+206A: neighbours pass
}

}  // namespace
}  // namespace cmkfs
