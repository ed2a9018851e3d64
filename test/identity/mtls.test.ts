// Real mutual TLS with node:tls and certificates from the mesh CA: both sides check the peer's SPIFFE ID
// (URI SAN) the way Envoy's match_typed_subject_alt_names does; certificates from another CA are refused;
// rotating the server's certificate does not drop a connection that is already open.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import tls, { type PeerCertificate } from 'node:tls';
import { rmSync } from 'node:fs';
import { CertificateAuthority, type IssuedCert } from '../../control-plane/src/identity/ca.ts';
import { CertificateManager } from '../../control-plane/src/identity/rotation.ts';
import { gatewayId, sidecarId } from '../../control-plane/src/identity/spiffe.ts';
import { OpensslPki } from './pki.ts';
import { INSTALL, skipUnless } from '../helpers/tools.ts';

// The intermediate-CA test makes its CA with the openssl CLI; it skips without it.
const skipOpenssl = skipUnless('openssl', INSTALL.openssl);

const TD = 'mcpmesh.test';
const WEATHER = sidecarId(TD, 'weather');
const GATEWAY = gatewayId(TD, 'edge');

/** URI SANs of a certificate, from Node's `subjectaltname` string ("URI:a, DNS:b"). */
function uris(san: string | undefined): string[] {
  return (san ?? '')
    .split(', ')
    .filter((s) => s.startsWith('URI:'))
    .map((s) => s.slice(4));
}

interface Server {
  port: number;
  server: tls.Server;
  /** Handshakes the server failed (tlsClientError). */
  clientErrors: Error[];
  /** Connections that completed the handshake (whatever the SPIFFE ID). */
  handshakes: number;
  close(): Promise<void>;
}

/**
 * A TLS server with `cert` that requires a client certificate from `bundlePem` and, after the handshake,
 * accepts only the SPIFFE IDs in `allowed`. Echoes lines as "<client id> <serial> <line>".
 */
async function startServer(cert: IssuedCert, bundlePem: string, allowed: readonly string[]): Promise<Server> {
  const clientErrors: Error[] = [];
  const sockets = new Set<import('node:net').Socket>();
  const state = { handshakes: 0 };
  const server = tls.createServer(
    {
      cert: cert.certPem + cert.chainPem,
      key: cert.keyPem,
      ca: bundlePem,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.2',
    },
    (socket) => {
      state.handshakes += 1;
      const peer = socket.getPeerX509Certificate();
      const id = uris(peer?.subjectAltName)[0];
      if (id === undefined || !allowed.includes(id)) {
        socket.end(`denied ${id ?? '(no SPIFFE ID)'}\n`);
        return;
      }
      socket.on('data', (d) => {
        const serial = socket.getX509Certificate()?.serialNumber.toLowerCase();
        for (const line of d.toString().split('\n').filter(Boolean)) socket.write(`${id} ${serial} ${line}\n`);
      });
      socket.on('error', () => undefined);
    },
  );
  server.on('tlsClientError', (e) => clientErrors.push(e));
  server.on('connection', (raw) => {
    sockets.add(raw);
    raw.on('close', () => sockets.delete(raw));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    server,
    clientErrors,
    get handshakes() {
      return state.handshakes;
    },
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        for (const raw of sockets) raw.destroy();
      }),
  };
}

interface Client {
  socket: tls.TLSSocket;
  /** Sends a line, resolves with the reply line (rejects on error or close). */
  ask(line: string): Promise<string>;
}

/** Connects with `cert`, trusting `bundlePem`, and accepting only a server whose SPIFFE ID is `expect`. */
function connect(port: number, cert: IssuedCert, bundlePem: string, expect: string): Promise<Client> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      servername: 'mcp.weather',
      cert: cert.certPem + cert.chainPem,
      key: cert.keyPem,
      ca: bundlePem,
      // Host names are not what identifies a mesh peer: its SPIFFE ID is.
      checkServerIdentity: (_host: string, peer: PeerCertificate) =>
        uris(peer.subjectaltname).includes(expect)
          ? undefined
          : new Error(`server is ${uris(peer.subjectaltname).join(',') || 'unnamed'}, expected ${expect}`),
    });
    let buf = '';
    const waiting: Array<{ resolve: (s: string) => void; reject: (e: Error) => void }> = [];
    socket.on('data', (d) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        waiting.shift()?.resolve(line);
      }
    });
    const fail = (e: Error): void => {
      for (const w of waiting.splice(0)) w.reject(e);
      reject(e);
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('connection closed')));
    socket.on('secureConnect', () =>
      resolve({
        socket,
        ask: (line) =>
          new Promise((res, rej) => {
            waiting.push({ resolve: res, reject: rej });
            socket.write(`${line}\n`);
          }),
      }),
    );
  });
}

/** Connects and asks once; resolves with the reply, or rejects with why the connection failed. */
async function exchange(port: number, cert: IssuedCert, bundlePem: string, expect: string): Promise<string> {
  const c = await connect(port, cert, bundlePem, expect);
  try {
    return await c.ask('ping');
  } finally {
    c.socket.destroy();
  }
}

describe('mutual TLS with mesh certificates (node:tls)', () => {
  let ca: CertificateAuthority;
  let other: CertificateAuthority;
  let serverCert: IssuedCert;
  let srv: Server;
  before(async () => {
    ca = await CertificateAuthority.selfSigned({ trustDomain: TD });
    other = await CertificateAuthority.selfSigned({ trustDomain: TD });
    serverCert = await ca.issue({ spiffeId: WEATHER, ttlMs: 600_000 });
    srv = await startServer(serverCert, ca.bundlePem, [GATEWAY]);
  });
  after(async () => {
    await srv.close();
  });

  it('handshakes with both certificates from the same CA, and the server sees the client SPIFFE ID', async () => {
    const client = await ca.issue({ spiffeId: GATEWAY, ttlMs: 600_000 });
    assert.equal(await exchange(srv.port, client, ca.bundlePem, WEATHER), `${GATEWAY} ${serverCert.serial} ping`);
  });

  it('the server refuses a same-CA client whose SPIFFE ID is not allowed', async () => {
    const client = await ca.issue({ spiffeId: sidecarId(TD, 'intruder'), ttlMs: 600_000 });
    assert.equal(
      await exchange(srv.port, client, ca.bundlePem, WEATHER).catch((e: Error) => e.message),
      `denied ${sidecarId(TD, 'intruder')}`,
    );
  });

  it('the server rejects a client certificate from another CA at the handshake', async () => {
    const errorsBefore = srv.clientErrors.length;
    const handshakesBefore = srv.handshakes;
    const client = await other.issue({ spiffeId: GATEWAY, ttlMs: 600_000 });
    // Same SPIFFE ID, and the client trusts both CAs, so only the server's chain check can fail.
    const err = await exchange(srv.port, client, ca.bundlePem + other.bundlePem, WEATHER).then(
      () => undefined,
      (e: Error) => e,
    );
    assert.ok(err, 'the connection must fail');
    // TLS 1.3: the client's side of the handshake completes first; the server then verifies the client's
    // chain and drops the connection, so the client sees it close without an answer.
    assert.match(err.message, /connection closed|alert|ECONNRESET/i);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(srv.handshakes, handshakesBefore, 'the server never accepted the connection');
    assert.equal(srv.clientErrors.length, errorsBefore + 1, 'the server reports a failed TLS handshake');
  });

  it('the client rejects a server certificate from another CA, or with the wrong SPIFFE ID', async () => {
    const client = await ca.issue({ spiffeId: GATEWAY, ttlMs: 600_000 });
    const foreign = await startServer(await other.issue({ spiffeId: WEATHER, ttlMs: 600_000 }), ca.bundlePem, [GATEWAY]);
    try {
      await assert.rejects(exchange(foreign.port, client, ca.bundlePem, WEATHER), /self[- ]signed|unable to verify|unable to get/i);
    } finally {
      await foreign.close();
    }
    await assert.rejects(
      exchange(srv.port, client, ca.bundlePem, sidecarId(TD, 'search')),
      new RegExp(`server is ${WEATHER}, expected ${sidecarId(TD, 'search')}`),
    );
  });

  it('works through an intermediate CA (leaf + intermediate sent, root trusted)', { skip: skipOpenssl }, async () => {
    const pki = new OpensslPki();
    try {
      pki.root('root');
      const inter = pki.signed('inter', 'root');
      const ica = await CertificateAuthority.fromPem({ ...inter, chainPem: pki.read('root.pem'), trustDomain: TD });
      const s = await startServer(await ica.issue({ spiffeId: WEATHER }), ica.bundlePem, [GATEWAY]);
      try {
        const client = await ica.issue({ spiffeId: GATEWAY });
        assert.equal(new X509Certificate(ica.bundlePem).subject, 'O=Test Org\nCN=root');
        assert.match(await exchange(s.port, client, ica.bundlePem, WEATHER), new RegExp(`^${GATEWAY} [0-9a-f]+ ping$`));
      } finally {
        await s.close();
      }
    } finally {
      rmSync(pki.dir, { recursive: true, force: true });
    }
  });

  it('rotation: an open connection survives the server switching certificates; new ones get the new certificate', async () => {
    const m = new CertificateManager({ ca, ttlMs: 4000, jitter: 0 });
    const first = await m.get(WEATHER);
    const s = await startServer(first, ca.bundlePem, [GATEWAY]);
    // What the control plane does on rotation: push the new secret; here, swap the server's context.
    m.onRotate((_id, cert) => s.server.setSecureContext({ cert: cert.certPem + cert.chainPem, key: cert.keyPem, ca: ca.bundlePem }));
    try {
      const clientCert = await ca.issue({ spiffeId: GATEWAY, ttlMs: 600_000 });
      const open = await connect(s.port, clientCert, ca.bundlePem, WEATHER);
      assert.equal(await open.ask('before'), `${GATEWAY} ${first.serial} before`);
      const rotated = await new Promise<IssuedCert>((r) => m.onRotate((_id, c) => r(c)));
      assert.ok(Date.now() < first.notAfter.getTime(), 'rotated before the old certificate expired');
      // The connection made with the old certificate keeps working...
      assert.equal(await open.ask('after'), `${GATEWAY} ${first.serial} after`);
      // ...and a new connection is served with the new one.
      assert.equal(await exchange(s.port, clientCert, ca.bundlePem, WEATHER), `${GATEWAY} ${rotated.serial} ping`);
      open.socket.destroy();
    } finally {
      m.stop();
      await s.close();
    }
  });
});
