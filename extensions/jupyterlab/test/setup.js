// jsdom has no fetch: give the tests Node's (ServerConnection.makeSettings reads them).
const { TextEncoder, TextDecoder } = require('util');
globalThis.TextEncoder = globalThis.TextEncoder || TextEncoder;
globalThis.TextDecoder = globalThis.TextDecoder || TextDecoder;
for (const name of ['fetch', 'Headers', 'Request', 'Response']) {
  if (typeof globalThis[name] === 'undefined') {
    globalThis[name] = function unavailable() {
      throw new Error(
        `${name} is not available in the tests: fake the request.`
      );
    };
  }
}
if (typeof globalThis.DragEvent === 'undefined') {
  globalThis.DragEvent = class DragEvent extends Event {};
}
