// loopback.cjs is a Node preload (NODE_OPTIONS=--require /path/loopback.cjs)
// that makes every TCP server bind 127.0.0.1 whatever host it asked for. The
// reference MCP servers (server-everything, supergateway, ...) listen on all
// interfaces by default; tests must never expose anything beyond loopback.
//
// It wraps net.Server.prototype.listen, which http.Server, https.Server and
// express all go through, and handles every call signature Node accepts:
//   listen()                       listen(cb)
//   listen(port[, host][, backlog][, cb])   port may be a numeric string
//   listen(options[, cb])          options.port/host/backlog/...
//   listen(path[, backlog][, cb])  a Unix socket or pipe: left alone
//   listen(handle[, backlog][, cb]) / listen({fd}) : an existing handle: left alone
// Set SALLYPORT_LOOPBACK_HOST to bind another loopback address (e.g. ::1).
'use strict';

const net = require('node:net');

const HOST = process.env.SALLYPORT_LOOPBACK_HOST || '127.0.0.1';
const originalListen = net.Server.prototype.listen;

function toNumber(x) {
  const n = Number(x);
  return n >= 0 ? n : false;
}

function isPortLike(v) {
  return v === undefined || v === null || typeof v === 'number' ||
    (typeof v === 'string' && /^\s*\d+\s*$/.test(v));
}

function loopbackListen(...args) {
  const first = args[0];

  // listen(options[, cb]) or listen(handle[, ...]).
  if (first !== null && typeof first === 'object') {
    const isHandle = first._handle !== undefined || first instanceof net.Server ||
      first instanceof net.Socket || first.fd !== undefined;
    const isPath = first.path !== undefined && first.port === undefined;
    if (isHandle || isPath) {
      return originalListen.apply(this, args);
    }
    const rest = args.slice(1);
    return originalListen.call(this, { ...first, host: HOST }, ...rest);
  }

  // listen(path[, backlog][, cb]): a Unix socket or Windows pipe.
  if (typeof first === 'string' && !isPortLike(first)) {
    return originalListen.apply(this, args);
  }

  // listen(), listen(cb), listen(port[, host][, backlog][, cb]).
  const cb = typeof args[args.length - 1] === 'function' ? args[args.length - 1] : undefined;
  const port = typeof first === 'function' ? undefined : first;
  const options = { port: port === null ? undefined : port, host: HOST };
  // Node reads the backlog from the second or third argument, whichever is a number.
  const backlog = (args.length > 1 && typeof args[1] !== 'function' && typeof args[1] !== 'string' && toNumber(args[1])) ||
    (args.length > 2 && typeof args[2] !== 'function' && toNumber(args[2]));
  if (backlog) {
    options.backlog = backlog;
  }
  return cb ? originalListen.call(this, options, cb) : originalListen.call(this, options);
}

net.Server.prototype.listen = loopbackListen;
