// The first Node versions that run this code: TypeScript type stripping on by default came in 22.18.0 on the
// 22 line and in 23.6.0 (Node's changelogs); 22.12 fails with ERR_UNKNOWN_FILE_EXTENSION. Plain JavaScript,
// loadable by any Node, so the launcher can say so. package.json "engines" must say the same (tested).
export const ENGINES = '^22.18.0 || >=23.6.0';

/** Whether Node `version` ("24.1.0" or "v24.1.0") runs the code. */
export function supported(version) {
  const [maj = 0, min = 0, pat = 0] = version.replace(/^v/, '').split('.').map(Number);
  if (maj < 22) return false;
  if (maj === 22) return min > 18 || (min === 18 && pat >= 0);
  if (maj === 23) return min >= 6;
  return true;
}
