'use strict';
// The ZAP handler (RFC 27) of a keyed node (docs/security.md, *CURVE and ZAP at the socket level*): zeromq.js has
// no built-in authenticator, so a Reply socket bound to inproc://zeromq.zap.01 in the node's ZeroMQ context
// answers libzmq's requests: 200 for a client whose long-term key (32 raw bytes) is authorized, else 400.
const zmq = require('zeromq');
const z85 = require('./z85');

/** The reply frames to one request (7 frames), given `trusts(z85Key)`. */
function zapReply(request, trusts) {
  const [version, requestId, , , , mechanism, credentials] = request;
  const ok = mechanism && mechanism.toString() === 'CURVE' && credentials && credentials.length === 32 && trusts(z85.encode(credentials));
  const userId = ok ? z85.encode(credentials) : '';
  return [version || Buffer.from('1.0'), requestId || Buffer.alloc(0), ok ? '200' : '400', ok ? 'OK' : 'Unknown key', userId, Buffer.alloc(0)];
}

class ZapHandler {
  constructor(context, trusts) { this.context = context; this.trusts = trusts; this.socket = null; }
  async start() {
    this.socket = new zmq.Reply({ context: this.context, linger: 0 });
    await this.socket.bind('inproc://zeromq.zap.01');
    (async () => {
      try {
        for await (const request of this.socket) await this.socket.send(zapReply(request, this.trusts));
      } catch (e) { if (!this.socket.closed) throw e; }
    })().catch(() => {});
  }
  close() { if (this.socket && !this.socket.closed) this.socket.close(); }
}

module.exports = { ZapHandler, zapReply };
