#!/usr/bin/env node
// tsclient.mjs drives an MCP server with the official TypeScript SDK client,
// the reference client the end-to-end tests hold Sallyport against.
//
// Usage:
//   node tsclient.mjs --stdio CMD [ARGS...] -- [OPTION...] ACTION...
//   node tsclient.mjs --http URL [--token T] [OPTION...] ACTION...
//   node tsclient.mjs --sse URL [--token T] [OPTION...] ACTION...   (legacy HTTP+SSE)
// Options (each declares a client capability and answers the server's
// requests for it with the canned JSON given; whatever the options, every
// request and notification from the server is recorded, see the waits):
//   --sampling-reply JSON      declare sampling; answer sampling/createMessage with JSON
//   --elicitation-reply JSON   declare elicitation; answer elicitation/create with JSON
//   --roots JSON               declare roots; answer roots/list with {"roots": JSON}
// Options for calls (the defaults are the SDK's: a 60 s request timeout,
// reset by each progress notification):
//   --timeout SECONDS                the request timeout of each call
//   --no-reset-timeout-on-progress   progress does not reset it (the SDK's own default)
// Actions:
//   list-tools | list-prompts | ping | call TOOL JSONARGS
//   list-resources | list-resource-templates | read URI | get-prompt NAME JSONARGS
//   subscribe URI | unsubscribe URI | complete JSONPARAMS | set-level LEVEL
//   wait-notifications METHOD N SECONDS   wait until N notifications METHOD ("*": any)
//                                         arrived in all; print all of them so far
//   wait-requests METHOD N SECONDS        the same for requests from the server
//
// The SDK is loaded from the node_modules folder named by the environment
// variable SALLYPORT_NODE_MODULES (see .ci/testdeps.sh).
//
// Output: one JSON line per step on stdout. The first is
//   {"action":"connect","ok":true,"protocolVersion":...,"serverInfo":...,"capabilities":...}
// then one per action:
//   {"action":"call","ok":true,"result":{...},"progress":[...]}
//   {"action":"call","ok":false,"error":{"code":-32602,"message":"..."}}
//   {"action":"wait-notifications","ok":true,"result":{"notifications":[{"method":...,"params":...}]}}
//   {"action":"wait-requests","ok":true,"result":{"requests":[{"method":...,"params":...}]}}
// (a wait that times out prints ok false with what arrived in "result").
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
} else if (argv[i] === '--sse') {
  // The legacy HTTP+SSE transport (2024-11-05): GET the stream, POST to the
  // endpoint it names. The token goes on both.
  const url = argv[i + 1];
  if (!url) usage('--sse needs URL');
  i += 2;
  const headers = {};
  if (argv[i] === '--token') {
    if (argv[i + 1] === undefined) usage('--token needs a value');
    headers.Authorization = `Bearer ${argv[i + 1]}`;
    i += 2;
  }
  const { SSEClientTransport } = await import(resolveImport('@modelcontextprotocol/sdk/client/sse.js'));
  transport = new SSEClientTransport(new URL(url), {
    requestInit: { headers },
    eventSourceInit: { fetch: (u, init) => fetch(u, { ...init, headers: { ...(init?.headers ?? {}), ...headers } }) },
  });
} else {
  usage('first argument must be --stdio, --http or --sse');
}

// Client capabilities and canned answers to the server's requests.
const replies = {};
// Request options of each call: every call asks for progress (onprogress
// sends a progressToken) and, unless told otherwise, lets it reset the
// timeout.
const callOptions = { resetTimeoutOnProgress: true };
const parseJSONArg = (flag, raw) => {
  if (raw === undefined) usage(`${flag} needs JSON`);
  try {
    return JSON.parse(raw);
  } catch (err) {
    return usage(`${flag}: not JSON: ${err.message}`);
  }
};
while (argv[i]?.startsWith('--')) {
  const flag = argv[i++];
  switch (flag) {
    case '--sampling-reply':
      replies.sampling = parseJSONArg(flag, argv[i++]);
      break;
    case '--elicitation-reply':
      replies.elicitation = parseJSONArg(flag, argv[i++]);
      break;
    case '--roots':
      replies.roots = parseJSONArg(flag, argv[i++]);
      break;
    case '--timeout': {
      const n = Number(argv[i++]);
      if (!Number.isFinite(n) || n <= 0) usage('--timeout needs a positive number of seconds');
      callOptions.timeout = Math.round(n * 1000);
      break;
    }
    case '--no-reset-timeout-on-progress':
      callOptions.resetTimeoutOnProgress = false;
      break;
    default:
      usage(`unknown option ${JSON.stringify(flag)}`);
  }
}

const parseSeconds = (what, raw) => {
  const n = Number(raw);
  if (raw === undefined || !Number.isFinite(n) || n < 0) usage(`${what} needs a number of seconds`);
  return n;
};

const actions = [];
while (i < argv.length) {
  const name = argv[i++];
  switch (name) {
    case 'list-tools':
    case 'list-prompts':
    case 'list-resources':
    case 'list-resource-templates':
    case 'ping':
      actions.push({ name });
      break;
    case 'read':
    case 'subscribe':
    case 'unsubscribe': {
      const uri = argv[i++];
      if (uri === undefined) usage(`${name} needs URI`);
      actions.push({ name, uri });
      break;
    }
    case 'set-level': {
      const level = argv[i++];
      if (level === undefined) usage('set-level needs LEVEL');
      actions.push({ name, level });
      break;
    }
    case 'complete':
      actions.push({ name, params: parseJSONArg('complete', argv[i++]) });
      break;
    case 'get-prompt': {
      const prompt = argv[i++];
      if (prompt === undefined) usage('get-prompt needs NAME JSONARGS');
      actions.push({ name, prompt, args: parseJSONArg('get-prompt', argv[i++]) });
      break;
    }
    case 'wait-notifications':
    case 'wait-requests': {
      const method = argv[i++];
      const count = Number(argv[i++]);
      if (method === undefined || !Number.isInteger(count) || count < 0) usage(`${name} needs METHOD N SECONDS`);
      actions.push({ name, method, count, seconds: parseSeconds(name, argv[i++]) });
      break;
    }
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

const capabilities = {};
if (replies.sampling !== undefined) capabilities.sampling = {};
if (replies.elicitation !== undefined) capabilities.elicitation = {};
if (replies.roots !== undefined) capabilities.roots = { listChanged: true };
const client = new Client({ name: 'sallyport-e2e-tsclient', version: '1.0.0' }, { capabilities });

// What the server sent besides answers: its requests and its notifications
// (progress included), in order of arrival, without their ids. They are
// taken from the transport before the SDK sees them: the SDK hands
// notifications to their handlers a microtask late, after an answer read in
// the same chunk, and so drops a call's last progress now and then (the
// "progress" member of call lines shows what the SDK passed on). Waiters
// are woken on every arrival.
const received = { requests: [], notifications: [] };
let wake = () => {};
transport.onmessage = (msg) => {
  if (typeof msg?.method !== 'string') return;
  const list = msg.id === undefined ? received.notifications : received.requests;
  list.push(msg.params === undefined ? { method: msg.method } : { method: msg.method, params: msg.params });
  wake();
};
if (replies.sampling !== undefined || replies.elicitation !== undefined || replies.roots !== undefined) {
  const { CreateMessageRequestSchema, ElicitRequestSchema, ListRootsRequestSchema } =
    await import(resolveImport('@modelcontextprotocol/sdk/types.js'));
  if (replies.sampling !== undefined) {
    client.setRequestHandler(CreateMessageRequestSchema, async () => replies.sampling);
  }
  if (replies.elicitation !== undefined) {
    client.setRequestHandler(ElicitRequestSchema, async () => replies.elicitation);
  }
  if (replies.roots !== undefined) {
    client.setRequestHandler(ListRootsRequestSchema, async () => ({ roots: replies.roots }));
  }
}

// waitFor resolves with the entries of list matching method once there
// are at least count of them, or after seconds with ok false.
async function waitFor(list, method, count, seconds) {
  const matching = () => list.filter((m) => method === '*' || m.method === method);
  const deadline = Date.now() + seconds * 1000;
  while (matching().length < count) {
    const left = deadline - Date.now();
    if (left <= 0) return { ok: false, found: matching() };
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, left);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
  return { ok: true, found: matching() };
}

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
      case 'list-resources': {
        const resources = [];
        let cursor;
        do {
          const page = await client.listResources(cursor ? { cursor } : undefined);
          resources.push(...page.resources);
          cursor = page.nextCursor;
        } while (cursor);
        emit({ action: a.name, ok: true, result: { resources } });
        break;
      }
      case 'list-resource-templates': {
        const resourceTemplates = [];
        let cursor;
        do {
          const page = await client.listResourceTemplates(cursor ? { cursor } : undefined);
          resourceTemplates.push(...page.resourceTemplates);
          cursor = page.nextCursor;
        } while (cursor);
        emit({ action: a.name, ok: true, result: { resourceTemplates } });
        break;
      }
      case 'read':
        emit({ action: a.name, ok: true, result: await client.readResource({ uri: a.uri }) });
        break;
      case 'subscribe':
        emit({ action: a.name, ok: true, result: await client.subscribeResource({ uri: a.uri }) });
        break;
      case 'unsubscribe':
        emit({ action: a.name, ok: true, result: await client.unsubscribeResource({ uri: a.uri }) });
        break;
      case 'set-level':
        emit({ action: a.name, ok: true, result: await client.setLoggingLevel(a.level) });
        break;
      case 'complete':
        emit({ action: a.name, ok: true, result: await client.complete(a.params) });
        break;
      case 'get-prompt':
        emit({ action: a.name, ok: true, result: await client.getPrompt({ name: a.prompt, arguments: a.args }) });
        break;
      case 'wait-notifications':
      case 'wait-requests': {
        const key = a.name === 'wait-requests' ? 'requests' : 'notifications';
        const { ok, found } = await waitFor(received[key], a.method, a.count, a.seconds);
        const out = { action: a.name, ok, result: { [key]: found } };
        if (!ok) out.error = { code: null, message: `${found.length} of ${a.count} ${a.method} within ${a.seconds}s` };
        emit(out);
        break;
      }
      case 'call': {
        const progress = [];
        const result = await client.callTool({ name: a.tool, arguments: a.args }, undefined, {
          ...callOptions,
          onprogress: (p) => progress.push(p),
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
