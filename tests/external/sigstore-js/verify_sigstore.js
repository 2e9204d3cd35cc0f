#!/usr/bin/env node
// Checks a decant receipt with a third independent DSSE verifier, offline:
//
//     node verify_sigstore.js ARTIFACT RECEIPT PUBKEY
//
// @sigstore/verify (npm, pinned in package.json / package-lock.json; CI runs
// `npm ci` here) verifies the envelope's signature over the DSSE PAE with the
// SPKI public key given as the only trust material: no TUF root, no Rekor, no
// network. A decant receipt is a bare DSSE envelope, so it is wrapped in a
// sigstore bundle v0.3 with a public-key hint (what a key-signed bundle
// carries); a sigstore bundle (model.sig) is read as it is. Then the
// statement's subjects must carry the artifact's sha256. Exit 0 on success,
// 1 with the reason on stderr otherwise.
'use strict';

const fs = require('fs');
const crypto = require('crypto');
const { bundleFromJSON } = require('@sigstore/bundle');
const { Verifier, toSignedEntity, toTrustMaterial } = require('@sigstore/verify');

const IN_TOTO = 'application/vnd.in-toto+json';

function main(artifactPath, receiptPath, keyPath) {
  const lines = fs.readFileSync(receiptPath, 'utf8').split('\n').filter((l) => l.trim());
  if (lines.length !== 1) throw new Error(`expected one envelope line, found ${lines.length}`);
  let json = JSON.parse(lines[0]);
  if (!json.mediaType) {
    json = {
      mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
      verificationMaterial: { publicKey: { hint: 'decant' }, tlogEntries: [] },
      dsseEnvelope: json,
    };
  }
  // Validates the bundle's shape too: exactly one signature, base64 fields.
  const bundle = bundleFromJSON(json);
  const key = crypto.createPublicKey(fs.readFileSync(keyPath, 'utf8'));
  // The only trusted key, whatever the hint says; no logs or authorities.
  const trust = toTrustMaterial(
    { certificateAuthorities: [], timestampAuthorities: [], tlogs: [], ctlogs: [] },
    () => ({ publicKey: key, validFor: () => true }),
  );
  const verifier = new Verifier(trust, { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 });
  const signer = verifier.verify(toSignedEntity(bundle)); // throws VerificationError
  const env = bundle.content.dsseEnvelope;
  if (env.payloadType !== IN_TOTO) throw new Error(`unexpected payloadType ${env.payloadType}`);
  const statement = JSON.parse(Buffer.from(env.payload).toString('utf8'));
  const digest = crypto.createHash('sha256').update(fs.readFileSync(artifactPath)).digest('hex');
  const subjects = (statement.subject || []).map((s) => s.digest && s.digest.sha256);
  if (!subjects.includes(digest)) {
    throw new Error(`artifact sha256 ${digest} is not a subject (${subjects.join(', ')})`);
  }
  console.log(`@sigstore/verify: ${signer.key.asymmetricKeyType} signature verified; subject ${digest} matches`);
}

try {
  const args = process.argv.slice(2);
  if (args.length !== 3) throw new Error('usage: node verify_sigstore.js ARTIFACT RECEIPT PUBKEY');
  main(...args);
} catch (e) {
  console.error(`@sigstore/verify: NOT verified: ${e.name}: ${e.message}`);
  process.exit(1);
}
