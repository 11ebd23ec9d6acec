// A real OpenID provider for Palisade's end-to-end tests: the npm package `oidc-provider`, with
// static `client_credentials` clients whose JWT access tokens carry Keycloak-, Supabase- and
// Auth0-style claims, plus a few test-only routes for key rotation and JWKS fetch counting.
//
//   node tests/oidc/server.mjs --port P      (P = 0 picks a free port)
//
// Binds 127.0.0.1 only. Prints exactly one line on stdout, `READY http://127.0.0.1:<port>`, once
// listening (the issuer is that URL); everything else goes to stderr. Exits when stdin closes or on
// SIGTERM/SIGINT. The Rust wrapper is tests/support/oidc.rs; README.md beside this file lists the
// clients, their claims and the test routes.

import * as crypto from 'node:crypto';
import * as http from 'node:http';

import { Provider, errors } from 'oidc-provider';

// --- stdout carries only the READY line ------------------------------------------------------
// oidc-provider prints notices with console.info; keep them (and any console.log) on stderr.
console.log = console.error;
console.info = console.error;

// --- arguments -------------------------------------------------------------------------------
function parsePort(argv) {
  const i = argv.indexOf('--port');
  const raw = i >= 0 ? argv[i + 1] : undefined;
  const port = Number(raw);
  if (raw === undefined || !Number.isInteger(port) || port < 0 || port > 65535) {
    console.error('usage: node server.mjs --port P   (0 picks a free port)');
    process.exit(2);
  }
  return port;
}

// --- clients ---------------------------------------------------------------------------------
/** Audience of tokens requested with `resource=urn:palisade` (the wrapper's default). */
const AUDIENCE = 'palisade';
/** Every scope a resource server accepts. */
const ALL_SCOPES = 'agents:run tools:list tools:call admin';
/** Default access-token lifetime, seconds. */
const DEFAULT_TTL = 300;

/** Claims a Keycloak realm user, a Supabase user and an Auth0 user would carry, all at once. */
function identity(name, { role, tenant, mfa, clientRoles = [role] }) {
  return {
    preferred_username: name,
    email: `${name}@${tenant}.example`,
    email_verified: true,
    tenant,
    groups: [`/${tenant}`, `/${tenant}/${role}`],
    amr: mfa ? ['pwd', 'mfa'] : ['pwd'],
    // Keycloak
    realm_access: { roles: [role, 'default-roles-palisade', 'offline_access'] },
    resource_access: {
      palisade: { roles: clientRoles },
      account: { roles: ['manage-account', 'view-profile'] },
    },
    // Supabase (top-level `role` is the Postgres role, the app role sits in app_metadata)
    role: 'authenticated',
    app_metadata: { role, tenant, provider: 'email' },
    // Auth0 (namespaced custom claims)
    'https://palisade.example/roles': [role],
    'https://palisade.example/tenant': tenant,
  };
}

const SCOPES = {
  admin: ALL_SCOPES,
  developer: 'agents:run tools:list tools:call',
  agent_operator: 'agents:run tools:list tools:call',
  user: 'agents:run tools:list',
  viewer: 'tools:list',
};

/**
 * The static clients. `alg` signs its access tokens, `ttl` is their lifetime in seconds, `scope`
 * is put on the token when the request names none, `claims` are added to every token it gets.
 * Each secret is `test-secret-<id>`: a test fixture, not a secret.
 */
const CLIENTS = {
  // One per signing algorithm, each a plain `user` of tenant acme.
  rs256: { alg: 'RS256', scope: SCOPES.user, claims: identity('rs256', { role: 'user', tenant: 'acme' }) },
  ps256: { alg: 'PS256', scope: SCOPES.user, claims: identity('ps256', { role: 'user', tenant: 'acme' }) },
  es256: { alg: 'ES256', scope: SCOPES.user, claims: identity('es256', { role: 'user', tenant: 'acme' }) },
  eddsa: { alg: 'EdDSA', scope: SCOPES.user, claims: identity('eddsa', { role: 'user', tenant: 'acme' }) },
  // One per seed role (policies/), RS256.
  admin: {
    alg: 'RS256',
    scope: SCOPES.admin,
    claims: identity('admin', {
      role: 'admin', tenant: 'acme', mfa: true, clientRoles: ['admin', 'agent_operator'],
    }),
  },
  developer: { alg: 'RS256', scope: SCOPES.developer, claims: identity('developer', { role: 'developer', tenant: 'acme' }) },
  agent_operator: {
    alg: 'RS256',
    scope: SCOPES.agent_operator,
    claims: identity('agent_operator', { role: 'agent_operator', tenant: 'acme', mfa: true }),
  },
  user: { alg: 'RS256', scope: SCOPES.user, claims: identity('user', { role: 'user', tenant: 'globex' }) },
  viewer: { alg: 'RS256', scope: SCOPES.viewer, claims: identity('viewer', { role: 'viewer', tenant: 'globex' }) },
  // An admin of the other tenant, for cross-tenant denials.
  'globex-admin': {
    alg: 'RS256',
    scope: SCOPES.admin,
    claims: identity('globex-admin', { role: 'admin', tenant: 'globex', mfa: true }),
  },
  // Expiry tests: a 2-second token.
  'short-lived': { alg: 'RS256', ttl: 2, scope: SCOPES.user, claims: identity('short-lived', { role: 'user', tenant: 'acme' }) },
  // Only the registered claims (iss, sub, aud, exp, iat, jti, client_id): required-claim tests.
  bare: { alg: 'RS256', claims: {} },
};

/**
 * Browser sign-in clients (authorization code + PKCE + refresh tokens) for the proxy's session
 * mode: the proxy is the confidential client. `native` with loopback redirect URIs, so the
 * proxy's free port matches (RFC 8252 §7.3: a loopback redirect's port is not compared). The
 * person who signs in is the login typed into the login form: a login named like a client above
 * (`admin`, `developer`…) gets that client's claims and scope. `ttl` is the access-token lifetime.
 */
const WEB_CLIENTS = {
  web: { alg: 'RS256' },
  // Refresh tests: 3-second access tokens.
  'web-short-lived': { alg: 'RS256', ttl: 3 },
};

const clientMetadata = [
  ...Object.entries(CLIENTS).map(([id]) => ({
    client_id: id,
    client_secret: `test-secret-${id}`,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: ALL_SCOPES,
  })),
  ...Object.keys(WEB_CLIENTS).map((id) => ({
    client_id: id,
    client_secret: `test-secret-${id}`,
    application_type: 'native',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: ['http://127.0.0.1/.palisade/callback', 'http://localhost/.palisade/callback'],
    post_logout_redirect_uris: ['http://127.0.0.1/', 'http://localhost/'],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: `openid email profile offline_access ${ALL_SCOPES}`,
  })),
];

/** What a token is about: the signed-in account (browser clients), else the client itself. */
function subjectSpec(token) {
  return token.accountId !== undefined ? CLIENTS[token.accountId] : CLIENTS[token.clientId];
}

// --- signing keys ----------------------------------------------------------------------------
/** Key generation, one key per algorithm family; `kid` = `<generation>-<alg>-<random>`. */
const KEY_SPECS = [
  { alg: 'RS256', type: 'rsa', options: { modulusLength: 2048 } },
  { alg: 'PS256', type: 'rsa', options: { modulusLength: 2048 } },
  { alg: 'ES256', type: 'ec', options: { namedCurve: 'P-256' } },
  { alg: 'EdDSA', type: 'ed25519', options: {} },
];

let generation = 0;

function newKeySet() {
  generation += 1;
  return KEY_SPECS.map(({ alg, type, options }) => {
    const { privateKey } = crypto.generateKeyPairSync(type, options);
    const jwk = privateKey.export({ format: 'jwk' });
    const kid = `${generation}-${alg.toLowerCase()}-${crypto.randomBytes(4).toString('hex')}`;
    return { ...jwk, kid, alg, use: 'sig' };
  });
}

// --- the provider ----------------------------------------------------------------------------
function parseJsonParam(ctx, name) {
  const raw = ctx.oidc.body?.[name];
  if (raw === undefined) return undefined;
  let value;
  try {
    value = JSON.parse(raw);
  } catch {
    throw new errors.InvalidRequest(`${name} must be a JSON object`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new errors.InvalidRequest(`${name} must be a JSON object`);
  }
  return value;
}

/**
 * Builds a provider signing with `current` (newest keys, used for new tokens) and publishing
 * `current` followed by `retired` in its JWKS.
 */
function buildProvider(issuer, current, retired) {
  const kidFor = Object.fromEntries(current.map((k) => [k.alg, k.kid]));

  const provider = new Provider(issuer, {
    clients: clientMetadata,
    jwks: { keys: [...current, ...retired] },
    scopes: ['openid', 'offline_access', ...ALL_SCOPES.split(' ')],
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['preferred_username'] },
    cookies: { keys: ['palisade-test-cookie-key'] },
    // The login form takes any login (the account id) and any password.
    async findAccount(ctx, sub) {
      return {
        accountId: sub,
        async claims() {
          const claims = CLIENTS[sub]?.claims ?? {};
          return {
            sub,
            email: claims.email,
            email_verified: claims.email_verified,
            preferred_username: claims.preferred_username,
          };
        },
      };
    },
    // Browser clients always get a refresh token (Keycloak's behaviour; no offline_access dance).
    issueRefreshToken: (ctx, client) => client.grantTypeAllowed('refresh_token'),
    // Lifetimes come from getResourceServerInfo; this is the fallback oidc-provider asks for.
    ttl: { ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL ?? DEFAULT_TTL },
    enabledJWA: {
      idTokenSigningAlgValues: ['RS256', 'PS256', 'ES256', 'EdDSA'],
    },
    features: {
      // The built-in login and consent forms (`/interaction/<uid>`), driven by the browser tests.
      devInteractions: { enabled: true },
      revocation: { enabled: true },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // `resource=urn:<name>` → audience `<name>`; the wrapper asks for urn:palisade.
        defaultResource: () => `urn:${AUDIENCE}`,
        useGrantedResource: () => true,
        getResourceServerInfo(ctx, resource, client) {
          const match = /^urn:([A-Za-z0-9._:-]+)$/.exec(resource);
          if (!match) throw new errors.InvalidTarget('resource must be urn:<audience>');
          const spec = CLIENTS[client.clientId] ?? WEB_CLIENTS[client.clientId];
          // Test-only overrides in the token request body: `alg` and `ttl` (seconds).
          const alg = ctx.oidc.body?.alg ?? spec.alg;
          if (!(alg in kidFor)) throw new errors.InvalidRequest(`alg must be one of ${Object.keys(kidFor).join(', ')}`);
          const ttl = ctx.oidc.body?.ttl !== undefined ? Number(ctx.oidc.body.ttl) : (spec.ttl ?? DEFAULT_TTL);
          if (!Number.isSafeInteger(ttl) || ttl <= 0) throw new errors.InvalidRequest('ttl must be a positive integer');
          return {
            audience: match[1],
            scope: ALL_SCOPES,
            accessTokenFormat: 'jwt',
            accessTokenTTL: ttl,
            jwt: { sign: { alg, kid: kidFor[alg] } },
          };
        },
      },
    },
    // The per-client claims, stored with the token and spread into the JWT payload.
    extraTokenClaims(ctx, token) {
      return structuredClone(subjectSpec(token)?.claims ?? {});
    },
    formats: {
      customizers: {
        // Runs after the payload is assembled: default scope, then the test's own overrides
        // (`extra_claims`: set or, with null, remove any claim; `extra_header`: add header fields).
        jwt(ctx, token, jwt) {
          const spec = subjectSpec(token);
          if (!jwt.payload.scope && spec?.scope) jwt.payload.scope = spec.scope;
          const claims = parseJsonParam(ctx, 'extra_claims');
          for (const [name, value] of Object.entries(claims ?? {})) {
            if (value === null) delete jwt.payload[name];
            else jwt.payload[name] = value;
          }
          const header = parseJsonParam(ctx, 'extra_header');
          if (header) {
            if ('alg' in header) throw new errors.InvalidRequest('extra_header may not set alg; use the alg parameter');
            jwt.header = { ...jwt.header, ...header };
          }
        },
      },
    },
  });
  provider.on('server_error', (ctx, err) => console.error('oidc-provider server_error:', err));
  // Token endpoint grants by type, and the last tokens issued (what a browser never sees when
  // the proxy holds its session): GET /test/grants.
  provider.on('grant.success', (ctx) => {
    const type = ctx.oidc.params?.grant_type ?? 'unknown';
    grants.counts[type] = (grants.counts[type] ?? 0) + 1;
    if (ctx.body?.access_token) grants.last.access_token = ctx.body.access_token;
    if (ctx.body?.refresh_token) grants.last.refresh_token = ctx.body.refresh_token;
  });
  return provider;
}

/** Shared by every provider generation (key rotation rebuilds the provider). */
const grants = { counts: {}, last: {} };

// --- HTTP: test routes in front of the provider ----------------------------------------------
function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function main() {
  const port = parsePort(process.argv.slice(2));
  const state = {
    keys: newKeySet(),
    retired: [],
    jwksHits: 0,
    jwksStatus: 200,
    refuseTokens: false,
    handler: undefined,
  };

  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    const route = `${req.method} ${url.pathname}`;
    switch (route) {
      case 'POST /test/rotate': {
        // New keys with new kids sign from now on. `?keep=previous` (the default) keeps the
        // previous generation published so tokens it signed still verify; `?keep=none` drops it.
        const keep = url.searchParams.get('keep') ?? 'previous';
        if (keep !== 'previous' && keep !== 'none') {
          sendJson(res, 400, { error: 'keep must be previous or none' });
          return;
        }
        state.retired = keep === 'previous' ? state.keys : [];
        state.keys = newKeySet();
        state.handler = buildProvider(state.issuer, state.keys, state.retired).callback();
        sendJson(res, 200, { kids: Object.fromEntries(state.keys.map((k) => [k.alg, k.kid])) });
        return;
      }
      case 'GET /test/grants':
        sendJson(res, 200, grants);
        return;
      case 'POST /test/token-refusal': {
        // `?on=1`: every POST /token answers 400 invalid_grant (a refresh the IdP refuses)
        // until `?on=0`.
        state.refuseTokens = url.searchParams.get('on') === '1';
        sendJson(res, 200, { refuse: state.refuseTokens });
        return;
      }
      case 'GET /test/kids':
        sendJson(res, 200, { kids: Object.fromEntries(state.keys.map((k) => [k.alg, k.kid])) });
        return;
      case 'GET /test/jwks-hits':
        sendJson(res, 200, { hits: state.jwksHits });
        return;
      case 'POST /test/jwks-status': {
        // `?status=503` makes /jwks answer 503 (an IdP outage) until `?status=200`.
        const status = Number(url.searchParams.get('status'));
        if (!Number.isInteger(status) || status < 200 || status > 599) {
          sendJson(res, 400, { error: 'status must be an HTTP status code' });
          return;
        }
        state.jwksStatus = status;
        sendJson(res, 200, { status });
        return;
      }
      default:
    }
    if (state.refuseTokens && route === 'POST /token') {
      req.resume();
      sendJson(res, 400, { error: 'invalid_grant', error_description: 'refused (test)' });
      return;
    }
    if (url.pathname === '/jwks') {
      state.jwksHits += 1;
      if (state.jwksStatus !== 200) {
        sendJson(res, state.jwksStatus, { error: 'jwks unavailable (test)' });
        return;
      }
    }
    state.handler(req, res);
  });

  server.on('error', (err) => {
    console.error(`oidc test server: ${err.message}`);
    process.exit(1);
  });
  server.listen(port, '127.0.0.1', () => {
    const actual = server.address().port;
    state.issuer = `http://127.0.0.1:${actual}`;
    state.handler = buildProvider(state.issuer, state.keys, state.retired).callback();
    process.stdout.write(`READY ${state.issuer}\n`);
  });

  const stop = () => {
    server.close();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdin.on('end', stop);
  process.stdin.on('error', stop);
  process.stdin.resume();
}

main();
