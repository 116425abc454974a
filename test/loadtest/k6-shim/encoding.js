const raw = (s) => s.replace(/=+$/, '');
const url = (s) => s.replace(/\+/g, '-').replace(/\//g, '_');

export default {
  b64encode(input, encoding = 'std') {
    const std = Buffer.from(input).toString('base64');
    return { std, rawstd: raw(std), url: url(std), rawurl: raw(url(std)) }[encoding];
  },
  b64decode(input, encoding = 'std', format) {
    const buf = Buffer.from(input, encoding.endsWith('url') ? 'base64url' : 'base64');
    return format === 's' ? buf.toString('utf8') : buf.buffer;
  },
};
