// Real public keys (generated once with node:crypto) for tests that need a JWKS Envoy can use.
export const EC_P256_JWK = {
  kty: 'EC',
  crv: 'P-256',
  x: 'VoJRCNwtleFlp63UF_nLCBcETNsvOA2ppt3m3jItfyk',
  y: 'UmfHTdwHGUtGjH2r32vH755mqYzCBa2v48bDWNeI8_k',
} as const;
export const RSA_JWK = {
  kty: 'RSA',
  n: '743SguJ5fM_JYfwkEkPsls4Jjd-RhMqDBUWrr-XQI4j-tVSb_vEwN3-GWTJV4A5_kQpZngoBR6U8Df5NyqwwANDCAOGQrKkCgFe2RLZcXnDOaMeWbLhvNY9NsVdICemwiWl9_lmwatE2CqT-K5DWQ-ZEyfa1y0MYvEpOFSAzVkAk2majnV87aGHJsS_szy4-YDGSAW-2--ufcwrI3pJG7X2WOPfJJuBvOzhPCX8KXgNX9GX1Vkbw9hAmAZlPZ1zPp8rsCLIxbwtgSRJ0jw7Ts9IInQsCZAV7heFEvZSd953oMZXZ6EX7mNIU5XZLZylGweAGW0ORfYFSK6Mo5iMgkw',
  e: 'AQAB',
} as const;
export const ED25519_JWK = { kty: 'OKP', crv: 'Ed25519', x: '8aY5m0ItdkenDfbm7pSvLOGQ4CkKJUBd1kd24Op7XaM' } as const;

/** A one-key JWKS as JSON text. */
export function jwksText(...keys: ReadonlyArray<Record<string, string>>): string {
  return JSON.stringify({ keys });
}
