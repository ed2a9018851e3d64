// @peculiar/x509 (pure-JS X.509 builder on WebCrypto), loaded only after the Reflect metadata shim that
// its tsyringe dependency insists on; `require` makes that ordering explicit rather than relying on the
// order ES module imports are evaluated in.
import { createRequire } from 'node:module';
import './reflect-shim.ts';
import type * as X509 from '@peculiar/x509';

const require = createRequire(import.meta.url);

export const x509: typeof X509 = require('@peculiar/x509') as typeof X509;
export type { X509 };
