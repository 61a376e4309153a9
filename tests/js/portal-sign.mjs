// Test helper: does what the Project Beacon portal does when it signs a JobSpec, so the Python
// tests can check the runner against the real thing (JavaScript's own sort and JSON.stringify,
// @noble/ed25519 and ethers), not against a Python re-implementation.
//
// Protocol: one JSON request per line on stdin, one JSON reply per line on stdout, in order.
//   {"op":"sign","spec":{...},"form":FORM,"seed_hex":"<64 hex>"}
//       -> {"signed":{...spec, signature, public_key},"bytes_b64":"<the exact signed bytes>"}
//   {"op":"stringify","value":V}          -> {"text":"<sorted JSON.stringify>","bytes_b64":"..."}
//   {"op":"stringify_many","values":[V...]} -> {"texts":["..."]}
//   {"op":"wallet","private_key_hex":"0x..","message":"..."} -> {"address":"0x..","signature":"0x.."}
// A failed request gets {"error":"..."}; the process keeps serving until stdin closes.
//
// Python cannot send NaN or +/-Infinity in JSON, so a request may spell a number as
// {"<NONFINITE_KEY>": "NaN" | "Infinity" | "-Infinity"}; the reviver turns it back into the number.
//
// Forms: which fields the portal's signed bytes leave out. `signature` and `public_key` are never
// signed. Named after what they cover; the portal's history (Website/portal/src/lib/crypto.js):
//   full                    signs everything else, wallet_auth included: the crypto.js that attached
//                           wallet_auth before signing and deleted only signature/public_key
//                           (in use in September 2025; its specs had no `id`).
//   full-before-wallet_auth the first crypto.js: signed, *then* attached wallet_auth, so the bytes
//                           cover everything but wallet_auth.
//   no-id                   also leaves out `id` (the fix made once the portal added an id).
//   no-id-no-created_at     also leaves out `created_at`: the current portal (October 2025 on).
// Aliases: portal-2025-10 = no-id-no-created_at, portal-2025-09 = full,
//          portal-early = full-before-wallet_auth.

import { createInterface } from 'node:readline';
import * as ed from '@noble/ed25519';
import { Wallet } from 'ethers';

export const NONFINITE_KEY = '$beacon-test:nonfinite-number';

const FORMS = {
  'full': { omit: ['signature', 'public_key'], walletAfterSigning: false },
  'full-before-wallet_auth': { omit: ['signature', 'public_key'], walletAfterSigning: true },
  'no-id': { omit: ['signature', 'public_key', 'id'], walletAfterSigning: false },
  'no-id-no-created_at': { omit: ['signature', 'public_key', 'id', 'created_at'], walletAfterSigning: false },
};
FORMS['portal-2025-10'] = FORMS['no-id-no-created_at'];
FORMS['portal-2025-09'] = FORMS['full'];
FORMS['portal-early'] = FORMS['full-before-wallet_auth'];

// The portal's recursive sort: rebuild each object by assignment in Object.keys(...).sort() order.
// (Plain assignment, as the portal does, so a "__proto__" key is swallowed by the setter here too.)
function sortKeys(value) {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === 'object') {
    const out = {};
    for (const key of Object.keys(value).sort()) out[key] = sortKeys(value[key]);
    return out;
  }
  return value;
}

const canonicalText = (value) => JSON.stringify(sortKeys(value), null, 0);
const utf8 = (text) => new TextEncoder().encode(text);
const b64 = (bytes) => Buffer.from(bytes).toString('base64');

function hexToBytes(hex) {
  if (typeof hex !== 'string' || !/^[0-9a-fA-F]{64}$/.test(hex)) throw new Error('seed_hex must be 64 hex digits');
  return Uint8Array.from(Buffer.from(hex, 'hex'));
}

async function sign(spec, formName, seedHex) {
  const form = FORMS[formName];
  if (!form || !Object.hasOwn(FORMS, formName)) throw new Error(`unknown form ${formName}`);
  if (spec === null || typeof spec !== 'object' || Array.isArray(spec)) throw new Error('spec must be an object');
  const seed = hexToBytes(seedHex);
  const publicKey = await ed.getPublicKeyAsync(seed);

  // What existed at signing time: the early portal attached wallet_auth only afterwards.
  const target = { ...spec };
  let walletAuth;
  if (form.walletAfterSigning && Object.hasOwn(target, 'wallet_auth')) {
    walletAuth = target.wallet_auth;
    delete target.wallet_auth;
  }
  const signable = { ...target };
  for (const key of form.omit) delete signable[key];
  const bytes = utf8(canonicalText(signable));
  const signature = await ed.signAsync(bytes, seed);

  const signed = { ...target, signature: b64(signature), public_key: b64(publicKey) };
  if (walletAuth !== undefined) Object.assign(signed, { wallet_auth: walletAuth });
  return { signed, bytes_b64: b64(bytes) };
}

async function handle(request) {
  switch (request?.op) {
    case 'sign':
      return sign(request.spec, request.form, request.seed_hex);
    case 'stringify': {
      const text = canonicalText(request.value);
      return { text, bytes_b64: b64(utf8(text)) };
    }
    case 'stringify_many':
      return { texts: request.values.map(canonicalText) };
    case 'wallet': {
      const wallet = new Wallet(request.private_key_hex);
      return { address: wallet.address, signature: await wallet.signMessage(request.message) };
    }
    default:
      throw new Error(`unknown op ${JSON.stringify(request?.op)}`);
  }
}

function revive(_key, value) {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const keys = Object.keys(value);
    if (keys.length === 1 && keys[0] === NONFINITE_KEY) return Number(value[NONFINITE_KEY]);
  }
  return value;
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity, terminal: false });
for await (const line of lines) {
  if (line.trim() === '') continue;
  let reply;
  try {
    reply = await handle(JSON.parse(line, revive));
  } catch (error) {
    reply = { error: String(error?.stack || error) };
  }
  process.stdout.write(JSON.stringify(reply) + '\n');
}
