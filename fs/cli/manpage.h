// The cmkfs(1) man page, written from the command-line parser itself (as the bash completion
// is), so that its commands and options never drift from --help. Internal to fs/cli.
#pragma once

#include <string>

namespace CLI {
class App;
}

namespace cmkfs::fs {

// roff for man(7): every visible command with its usage, description and options, nested
// commands included, then what the parser does not know: exit status, files, environment.
std::string man_page(const CLI::App& app, const std::string& version);

}  // namespace cmkfs::fs
