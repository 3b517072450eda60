// A person's browser, for tests of the OAuth login: `node browser.mjs URL` follows the
// redirects from an authorization URL (keeping cookies, as a browser does) until a page answers
// without sending it on: the client's loopback redirect, once the authorization server (with
// oidc.mjs, its person approves at once) sends it back. Prints each address it visits.
let url = process.argv[2];
const jar = new Map();
for (let hop = 0; hop < 20; hop++) {
  console.log(url);
  const cookie = [...jar].map(([name, value]) => `${name}=${value}`).join('; ');
  const response = await fetch(url, { redirect: 'manual', headers: cookie ? { cookie } : {} });
  for (const line of response.headers.getSetCookie()) {
    const [pair] = line.split(';');
    const at = pair.indexOf('=');
    jar.set(pair.slice(0, at).trim(), pair.slice(at + 1));
  }
  const location = response.headers.get('location');
  if (!location) {
    console.log(`${response.status} ${(await response.text()).slice(0, 200)}`);
    process.exit(response.ok ? 0 : 1);
  }
  url = new URL(location, url).toString();
}
console.log('more than 20 redirects');
process.exit(1);
