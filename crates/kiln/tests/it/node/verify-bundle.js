// Verifies a kiln Sigstore bundle v0.3 with sigstore-js (@sigstore/bundle + @sigstore/verify),
// keyed by kiln's public key, with no transparency log, timestamp or CT log required
// (kiln signs with a key, offline). Used by crates/kiln/tests/it/interop.rs.
//
//   node verify-bundle.js BUNDLE.json KEY.pub
//
// Prints one JSON line {"payloadType", "statement"} and exits 0 when the bundle verifies;
// prints the error and exits 1 when it does not. The modules come from NODE_PATH (installed
// from package-lock.json by scripts/install-deps.sh).
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const { bundleFromJSON } = require('@sigstore/bundle');
const { Verifier, toSignedEntity, toTrustMaterial } = require('@sigstore/verify');

function fail(msg) {
  process.stderr.write(`verify-bundle: ${msg}\n`);
  process.exit(1);
}

const [bundlePath, keyPath] = process.argv.slice(2);
if (!bundlePath || !keyPath) fail('usage: verify-bundle.js BUNDLE.json KEY.pub');

const raw = JSON.parse(fs.readFileSync(bundlePath, 'utf8'));
// protobuf's JSON mapping would accept an absent list; Sigstore clients expect it spelled out.
if (!raw.verificationMaterial || !Array.isArray(raw.verificationMaterial.tlogEntries)) {
  fail('verificationMaterial.tlogEntries is not a list');
}

const key = crypto.createPublicKey(fs.readFileSync(keyPath));
const hint = crypto
  .createHash('sha256')
  .update(key.export({ type: 'spki', format: 'der' }))
  .digest('base64');

let bundle;
try {
  bundle = bundleFromJSON(raw);
} catch (e) {
  fail(`bundle does not parse: ${e.message} ${JSON.stringify(e.fields || [])}`);
}

const trustedRoot = {
  mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
  tlogs: [],
  certificateAuthorities: [],
  ctlogs: [],
  timestampAuthorities: [],
};
const keys = (h) => {
  if (h !== hint) throw new Error(`bundle names key ${h}, expected ${hint}`);
  return { publicKey: key, validFor: () => true };
};
const verifier = new Verifier(toTrustMaterial(trustedRoot, keys), {
  tlogThreshold: 0,
  ctlogThreshold: 0,
  timestampThreshold: 0,
});
try {
  verifier.verify(toSignedEntity(bundle));
} catch (e) {
  fail(`bundle does not verify: ${e.code || ''} ${e.message}`);
}
const env = bundle.content.dsseEnvelope;
process.stdout.write(
  JSON.stringify({
    payloadType: env.payloadType,
    statement: JSON.parse(Buffer.from(env.payload).toString('utf8')),
  }) + '\n',
);
