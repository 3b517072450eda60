// A real OpenID provider (oidc-provider, a certified implementation) for the OAuth tests of our
// resource servers: `node oidc.mjs` listens on a free loopback port and prints
// `listening http://127.0.0.1:PORT` once ready.
//
// - Client `mcp-test` / `secret` gets JWT access tokens by client_credentials for the
//   `resource` it names (RFC 8707: the token's audience), with the scopes it asks for among
//   mcp:read and mcp:write.
// - The authorization-code flow for clients that register themselves (RFC 7591), with PKCE,
//   resource indicators, and refresh tokens when `offline_access` is asked for. The person at
//   /interaction/UID is "alice", who approves whatever is asked (a browser that follows the
//   redirects, peers/node/browser.mjs, plays her). Access tokens live OIDC_TOKEN_TTL seconds
//   (300 if unset).
// - `/jwks` is served from a key list the test can grow: POST /test/rotate publishes key-2.
// - GET /test/token signs tokens the provider would never issue, to prove the server refuses
//   them: ?kid=key-1|key-2 &signer=published|stranger (a key the JWKS does not have)
//   &iss= &aud= (required) &exp=SECONDS_FROM_NOW &nbf=SECONDS_FROM_NOW &scope=
import http from 'node:http';
import Provider from 'oidc-provider';
import * as jose from 'jose';

async function key(kid) {
  const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
  return { ...(await jose.exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };
}
const keys = { 'key-1': await key('key-1'), 'key-2': await key('key-2') };
const stranger = await key('stranger');
const published = ['key-1'];
const publicPart = ({ kty, n, e, kid, alg, use }) => ({ kty, n, e, kid, alg, use });

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  clients: [
    {
      client_id: 'mcp-test',
      client_secret: 'secret',
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
    },
  ],
  jwks: { keys: [keys['key-1']] },
  scopes: ['openid', 'offline_access', 'mcp:read', 'mcp:write'],
  // A refresh token whenever the client may refresh and asked for offline_access (OAuth 2, no
  // OpenID consent prompt needed).
  issueRefreshToken: async (_ctx, client, code) =>
    client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access'),
  features: {
    clientCredentials: { enabled: true },
    registration: { enabled: true },
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, resource) => ({
        scope: 'mcp:read mcp:write',
        audience: resource,
        accessTokenFormat: 'jwt',
        accessTokenTTL: Number(process.env.OIDC_TOKEN_TTL ?? 300),
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
});
const callback = provider.callback();

async function testToken(url, res) {
  const q = url.searchParams;
  const now = Math.floor(Date.now() / 1000);
  const kid = q.get('kid') ?? 'key-1';
  const signer = q.get('signer') === 'stranger' ? stranger : keys[kid];
  const claims = {
    iss: q.get('iss') ?? issuer,
    aud: q.get('aud'),
    sub: 'crafted',
    client_id: 'mcp-test',
    scope: q.get('scope') ?? 'mcp:read',
    iat: now,
    exp: now + Number(q.get('exp') ?? 300),
  };
  if (q.has('nbf')) claims.nbf = now + Number(q.get('nbf'));
  const token = await new jose.SignJWT(claims)
    .setProtectedHeader({ alg: 'RS256', kid, typ: 'at+jwt' })
    .sign(await jose.importJWK(signer, 'RS256'));
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end(token);
}

// Alice logs in and approves every scope and resource asked for.
async function approve(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params } = details;
  if (prompt.name === 'login') {
    await provider.interactionFinished(req, res, { login: { accountId: 'alice' } }, { mergeWithLastSubmission: false });
    return;
  }
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: 'alice', clientId: params.client_id });
  const missing = prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

server.on('request', (req, res) => {
  const url = new URL(req.url, issuer);
  if (url.pathname.startsWith('/interaction/')) {
    approve(req, res).catch((error) => {
      res.writeHead(500);
      res.end(String(error));
    });
  } else if (url.pathname === '/jwks') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ keys: published.map((kid) => publicPart(keys[kid])) }));
  } else if (url.pathname === '/test/rotate' && req.method === 'POST') {
    if (!published.includes('key-2')) published.push('key-2');
    res.writeHead(204);
    res.end();
  } else if (url.pathname === '/test/token') {
    testToken(url, res).catch((error) => {
      res.writeHead(500);
      res.end(String(error));
    });
  } else {
    callback(req, res);
  }
});
console.log(`listening ${issuer}`);
