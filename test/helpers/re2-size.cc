// Prints RE2's real program size for regexes read from stdin, one per line, hex-encoded UTF-8 bytes
// (so a regex may hold any byte, newlines included). Used by test/xds/re2-size.test.ts to check
// control-plane/src/xds/re2-size.ts against the real library.
//
// Options: RE2::Quiet, exactly as Envoy's CompiledGoogleReMatcher (source/common/common/regex.cc)
// builds its regex: default RE2::Options (UTF-8, case-sensitive, Perl syntax, max_mem 8 MiB) with
// log_errors off. Envoy then rejects the regex when ProgramSize() exceeds
// re2.max_program_size.error_level (default 100).
//
// Output, one line per input line: "ok <ProgramSize>" or "err <RE2 error text>".
#include <iostream>
#include <string>

#include <re2/re2.h>

static int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int main() {
  std::ios::sync_with_stdio(false);
  std::string line;
  while (std::getline(std::cin, line)) {
    std::string pattern;
    bool bad = line.size() % 2 != 0;
    for (size_t i = 0; !bad && i < line.size(); i += 2) {
      int hi = HexValue(line[i]);
      int lo = HexValue(line[i + 1]);
      if (hi < 0 || lo < 0) bad = true;
      else pattern.push_back(static_cast<char>(hi * 16 + lo));
    }
    if (bad) {
      std::cout << "bad-input\n";
      continue;
    }
    RE2 re(pattern, RE2::Quiet);
    if (re.ok()) {
      std::cout << "ok " << re.ProgramSize() << '\n';
    } else {
      std::cout << "err " << re.error() << '\n';
    }
  }
  return 0;
}
