// readFileBounded (sources/file-watch.ts): the registry's size limit is enforced on what is read, not only on
// what fstat says, so a file that grows between the check and the read is read whole or refused, never cut.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { FileTooLargeError, parseByteSize, readFileBounded } from '../../control-plane/src/sources/file-watch.ts';

describe('readFileBounded', () => {
  it('reads files up to the limit and refuses larger ones by their size, unread', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mcpmesh-bounded-'));
    try {
      const f = path.join(dir, 'f');
      for (const n of [0, 1, 10]) {
        writeFileSync(f, 'x'.repeat(n));
        assert.equal(readFileBounded(f, 10), 'x'.repeat(n));
      }
      truncateSync(f, 1_073_741_824); // 1 GiB, sparse: reading it would take seconds and the heap
      assert.throws(
        () => readFileBounded(f, 10, 'raise it'),
        (e: unknown) =>
          e instanceof FileTooLargeError &&
          e.size === 1_073_741_824 &&
          e.message === 'is 1073741824 bytes (1024.0 MiB), over the limit of 10 bytes; not read (raise it)',
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a file whose size fstat does not know (procfs: 0) is read whole, and refused once past the limit', () => {
    // /proc files report size 0 and have content: the same path as a file that grew after fstat.
    const whole = readFileBounded('/proc/self/status', 1_000_000);
    assert.match(whole, /^Name:/);
    assert.match(whole, /VmRSS:/);
    assert.throws(
      () => readFileBounded('/proc/self/status', 64),
      (e: unknown) => e instanceof FileTooLargeError && e.size === 65 && e.limit === 64,
    );
  });

  it('parses size limits as flags and the environment give them', () => {
    assert.equal(parseByteSize('8388608'), 8_388_608);
    assert.equal(parseByteSize('8MiB'), 8_388_608);
    assert.equal(parseByteSize('512 KiB'), 524_288);
    assert.equal(parseByteSize('1g'), 1_073_741_824);
    assert.equal(parseByteSize('16M'), 16_777_216);
    for (const bad of ['', '0', 'lots', '-1', '1.5MiB', '8 TiB']) assert.equal(parseByteSize(bad), undefined, bad);
  });
});
