#!/usr/bin/env node
// tsclient.mjs drives an MCP server with the official TypeScript SDK client,
// the reference client the end-to-end tests hold Sallyport against.
//
// Usage:
//   node tsclient.mjs --stdio CMD [ARGS...] -- ACTION...
//   node tsclient.mjs --http URL [--token T] ACTION...
// Actions:
//   list-tools | list-prompts | ping | call TOOL JSONARGS
//
// The SDK is loaded from the node_modules folder named by the environment
// variable SALLYPORT_NODE_MODULES (see .ci/testdeps.sh).
//
// Output: one JSON line per step on stdout. The first is
//   {"action":"connect","ok":true,"protocolVersion":...,"serverInfo":...,"capabilities":...}
// then one per action:
//   {"action":"call","ok":true,"result":{...},"progress":[...]}
//   {"action":"call","ok":false,"error":{"code":-32602,"message":"..."}}
// The exit status is 0 unless the connection itself failed (then 2) or the
// usage was wrong (then 64).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

function usage(msg) {
  process.stderr.write(`tsclient: ${msg}\n` +
    'usage: node tsclient.mjs (--stdio CMD [ARGS...] -- | --http URL [--token T]) ACTION...\n');
  process.exit(64);
}

const nodeModules = process.env.SALLYPORT_NODE_MODULES;
if (!nodeModules) {
  usage('SALLYPORT_NODE_MODULES is not set');
}

// resolveImport maps "pkg/sub/path.js" to a file URL through the package's
// "exports" map, using the "import" condition, as Node's ESM resolver does.
function resolveImport(specifier) {
  const parts = specifier.split('/');
  const pkgName = specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
  const sub = '.' + specifier.slice(pkgName.length);
  const pkgDir = join(nodeModules, pkgName);
  const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
  const pick = (target) => (typeof target === 'string' ? target : target?.import ?? target?.default);
  let target;
  if (pkg.exports && pkg.exports[sub] !== undefined) {
    target = pick(pkg.exports[sub]);
  } else if (pkg.exports) {
    for (const [key, value] of Object.entries(pkg.exports)) {
      const star = key.indexOf('*');
      if (star < 0) continue;
      const prefix = key.slice(0, star);
      const suffix = key.slice(star + 1);
      if (sub.startsWith(prefix) && sub.endsWith(suffix) && sub.length >= key.length - 1) {
        const middle = sub.slice(prefix.length, sub.length - suffix.length);
        target = pick(value)?.replaceAll('*', middle);
        break;
      }
    }
  } else {
    target = sub;
  }
  if (!target) {
    throw new Error(`cannot resolve ${specifier} in ${pkgDir}`);
  }
  return pathToFileURL(join(pkgDir, target)).href;
}

const { Client } = await import(resolveImport('@modelcontextprotocol/sdk/client/index.js'));
const { StdioClientTransport } = await import(resolveImport('@modelcontextprotocol/sdk/client/stdio.js'));
const { StreamableHTTPClientTransport } = await import(resolveImport('@modelcontextprotocol/sdk/client/streamableHttp.js'));

// Parse the command line.
const argv = process.argv.slice(2);
let transport;
let i = 0;
if (argv[i] === '--stdio') {
  const end = argv.indexOf('--', i + 1);
  if (end < 0 || end === i + 1) usage('--stdio needs CMD [ARGS...] --');
  const [command, ...args] = argv.slice(i + 1, end);
  const env = Object.fromEntries(Object.entries(process.env).filter(([, v]) => v !== undefined));
  transport = new StdioClientTransport({ command, args, env, stderr: 'inherit' });
  i = end + 1;
} else if (argv[i] === '--http') {
  const url = argv[i + 1];
  if (!url) usage('--http needs URL');
  i += 2;
  const headers = {};
  if (argv[i] === '--token') {
    if (argv[i + 1] === undefined) usage('--token needs a value');
    headers.Authorization = `Bearer ${argv[i + 1]}`;
    i += 2;
  }
  transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
} else {
  usage('first argument must be --stdio or --http');
}

const actions = [];
while (i < argv.length) {
  const name = argv[i++];
  switch (name) {
    case 'list-tools':
    case 'list-prompts':
    case 'ping':
      actions.push({ name });
      break;
    case 'call': {
      const tool = argv[i++];
      const raw = argv[i++];
      if (tool === undefined || raw === undefined) usage('call needs TOOL JSONARGS');
      let args;
      try {
        args = JSON.parse(raw);
      } catch (err) {
        usage(`call ${tool}: arguments are not JSON: ${err.message}`);
      }
      actions.push({ name, tool, args });
      break;
    }
    default:
      usage(`unknown action ${JSON.stringify(name)}`);
  }
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

// errorOf turns an SDK error into {code, message}; McpError carries the
// JSON-RPC code and prefixes its message with "MCP error CODE: ".
function errorOf(err) {
  const code = typeof err?.code === 'number' ? err.code : null;
  let message = String(err?.message ?? err);
  const prefix = `MCP error ${code}: `;
  if (code !== null && message.startsWith(prefix)) message = message.slice(prefix.length);
  const out = { code, message };
  if (err?.data !== undefined) out.data = err.data;
  return out;
}

const client = new Client({ name: 'sallyport-e2e-tsclient', version: '1.0.0' }, { capabilities: {} });

// The SDK tells HTTP transports the negotiated version through
// setProtocolVersion; wrap it (or add it, for stdio) to learn the version.
let protocolVersion = null;
const setProtocolVersion = transport.setProtocolVersion?.bind(transport);
transport.setProtocolVersion = (v) => {
  protocolVersion = v;
  setProtocolVersion?.(v);
};

try {
  await client.connect(transport);
} catch (err) {
  emit({ action: 'connect', ok: false, error: errorOf(err) });
  await client.close().catch(() => {});
  process.exit(2);
}
emit({
  action: 'connect',
  ok: true,
  protocolVersion,
  serverInfo: client.getServerVersion() ?? null,
  capabilities: client.getServerCapabilities() ?? null,
  sessionId: transport.sessionId ?? null,
});

for (const a of actions) {
  try {
    switch (a.name) {
      case 'list-tools': {
        const tools = [];
        let cursor;
        do {
          const page = await client.listTools(cursor ? { cursor } : undefined);
          tools.push(...page.tools);
          cursor = page.nextCursor;
        } while (cursor);
        emit({ action: a.name, ok: true, result: { tools } });
        break;
      }
      case 'list-prompts': {
        const prompts = [];
        let cursor;
        do {
          const page = await client.listPrompts(cursor ? { cursor } : undefined);
          prompts.push(...page.prompts);
          cursor = page.nextCursor;
        } while (cursor);
        emit({ action: a.name, ok: true, result: { prompts } });
        break;
      }
      case 'ping':
        emit({ action: a.name, ok: true, result: await client.ping() });
        break;
      case 'call': {
        const progress = [];
        const result = await client.callTool({ name: a.tool, arguments: a.args }, undefined, {
          onprogress: (p) => progress.push(p),
          resetTimeoutOnProgress: true,
        });
        emit({ action: a.name, tool: a.tool, ok: true, result, progress });
        break;
      }
    }
  } catch (err) {
    emit({ action: a.name, ...(a.tool ? { tool: a.tool } : {}), ok: false, error: errorOf(err) });
  }
}

// Closing the HTTP transport does not end the session on the server; do it
// explicitly (DELETE) so gateways can release per-session backends.
if (typeof transport.terminateSession === 'function' && transport.sessionId) {
  await transport.terminateSession().catch(() => {});
}
await client.close().catch(() => {});
process.exit(0);
