import { createHmac } from 'node:crypto';

const ENC = { base64: 'base64', base64url: 'base64url', base64rawurl: 'base64url', hex: 'hex' };

export default {
  hmac(algorithm, secret, data, outputEncoding) {
    const enc = ENC[outputEncoding];
    if (!enc) throw new Error(`k6 shim: hmac encoding ${outputEncoding} not supported`);
    const digest = createHmac(algorithm, secret).update(data).digest(enc);
    return outputEncoding === 'base64url' ? digest + '='.repeat((4 - (digest.length % 4)) % 4) : digest;
  },
};
