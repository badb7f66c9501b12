// Signing in with Keyward from the browser, as a public client (RFC 9700 §2.1.1, OAuth 2.1):
// code + PKCE S256 by full-page redirect, tokens in this page's memory and mirrored into this
// tab's sessionStorage so a reload stays signed in, and one refresh at a time for every tab.
//
// Tabs: the refresh token rotates on every use and Keyward revokes the whole family when a used
// one comes back (RFC 9700 §4.14.2). Two tabs refreshing with the same token would sign the user
// out. So one tab, the leader (whoever holds the Web Lock below), is the only one that ever
// presents the refresh token; the others ask it over a BroadcastChannel and receive every new
// token set, so that whoever becomes leader next holds the latest one.
import * as oauth from '/vendor/oauth4webapi/index.js';
import { createRemoteJWKSet, jwtVerify } from '/vendor/jose/index.js';

const config = await (await fetch('/config.json')).json();
const issuer = new URL(config.issuer);
const client = { client_id: config.clientId };
const clientAuth = oauth.None();
const redirectUri = new URL('/callback', location.origin).href;
// Keyward on http://127.0.0.1 in development; never set for an https issuer.
const options = issuer.protocol === 'http:' ? { [oauth.allowInsecureRequests]: true } : {};
const TRANSACTION = 'keyward-spa:authorization';
// The session as this tab last knew it, for the next load of this tab (a reload). sessionStorage
// is per tab and ends with it: closing the tab signs out of the app (not of Keyward).
const STORED = 'keyward-spa:session';

const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, options));
// Cached by jose, refetched on an unknown `kid` (after a key rotation) at most every 30 s.
const jwks = createRemoteJWKSet(new URL(as.jwks_uri), { cooldownDuration: 30_000 });

/** `{ accessToken, refreshToken, idToken, claims }`, or null when signed out. */
let session = null;
let known = false; // whether this tab has learnt the session (or is the leader)
let ready;
const whenReady = new Promise((resolve) => (ready = resolve));
const listeners = new Set();
let leader = false;
let rotating = null; // the leader's one refresh in flight
let asked = null; // a follower's one request to the leader in flight: { stale, resolve, reject }

const channel = new BroadcastChannel('keyward-spa');

function setSession(next, { broadcast }) {
  session = next;
  // Every tab keeps the latest token set it has seen, its own or one broadcast by the leader, so
  // whichever tab reloads (or leads next) holds the refresh token that is current.
  if (next) sessionStorage.setItem(STORED, JSON.stringify(next));
  else sessionStorage.removeItem(STORED);
  if (broadcast) channel.postMessage(next ? { type: 'session', session: next } : { type: 'signed-out' });
  if (asked && session?.accessToken !== asked.stale) {
    asked.resolve(session);
    asked = null;
  }
  for (const listener of listeners) listener(session);
}

channel.onmessage = async ({ data }) => {
  switch (data.type) {
    case 'hello': // a new tab: the leader tells it where things stand
      if (leader) channel.postMessage({ type: 'welcome', session });
      break;
    case 'welcome': // only news to a tab that does not know yet (it may have just signed in)
      if (!known) setSession(data.session, { broadcast: false });
      known = true;
      ready();
      break;
    case 'session':
      setSession(data.session, { broadcast: false });
      known = true;
      ready();
      break;
    case 'signed-out':
      setSession(null, { broadcast: false });
      break;
    case 'refresh': // a follower got a 401 with `stale`
      if (leader) refreshAsLeader(data.stale).catch(() => {});
      break;
    default:
  }
};

// Held for the life of the page; the next tab in line gets it when this one closes.
navigator.locks.request('keyward-spa-leader', () => {
  leader = true;
  if (!known) {
    // No other tab answered before this one became leader: none is open, so this tab's stored
    // session (kept across its reload) is the latest there is.
    const stored = sessionStorage.getItem(STORED);
    if (stored) setSession(JSON.parse(stored), { broadcast: false });
  }
  known = true;
  ready();
  // A follower that was waiting for the old leader now refreshes by itself.
  if (asked) refreshAsLeader(asked.stale).catch((e) => asked?.reject(e));
  return new Promise(() => {});
});
channel.postMessage({ type: 'hello' });

/** The current session once this tab knows it (from the leader, or as the leader). */
export async function currentSession() {
  await whenReady;
  return session;
}

/** Calls `listener(session)` now and on every change. */
export function onSessionChange(listener) {
  listeners.add(listener);
  listener(session);
}

/** ID tokens are verified against Keyward's JWKS, in the browser (OIDC Core §3.1.3.7). */
async function verifiedClaims(idToken) {
  const { payload } = await jwtVerify(idToken, jwks, {
    issuer: as.issuer,
    audience: client.client_id,
    algorithms: ['RS256'],
  });
  return payload;
}

function sessionFrom(result, previous) {
  return {
    accessToken: result.access_token,
    // Keyward rotates on every use: the response always carries the successor.
    refreshToken: result.refresh_token,
    idToken: result.id_token ?? previous?.idToken,
  };
}

/** Keyward's `acr` of a sign-in with a second factor (its discovery lists it). */
export const ACR_MFA = 'urn:keyward:acr:mfa';

/**
 * Sends the browser to Keyward's sign-in page. With `{ acrValues: ACR_MFA }` the app asks for a
 * second factor for this sign-in (RFC 9470 step-up): someone signed in with a password alone is
 * asked for their authenticator app's code (or sets one up) and comes back with `acr` mfa.
 */
export async function signIn({ acrValues } = {}) {
  const verifier = oauth.generateRandomCodeVerifier();
  const state = oauth.generateRandomState();
  const nonce = oauth.generateRandomNonce();
  // Per tab and single-use: the transaction survives the redirect and is removed at the callback.
  sessionStorage.setItem(TRANSACTION, JSON.stringify({ verifier, state, nonce }));
  const url = new URL(as.authorization_endpoint);
  url.search = new URLSearchParams({
    client_id: client.client_id,
    redirect_uri: redirectUri,
    response_type: 'code',
    scope: config.scope,
    resource: config.audience,
    code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    ...(acrValues ? { acr_values: acrValues } : {}),
  });
  location.assign(url);
}

/** On `/callback`: checks the response, exchanges the code, and shares the session. */
export async function completeSignIn() {
  const saved = sessionStorage.getItem(TRANSACTION);
  sessionStorage.removeItem(TRANSACTION);
  const here = new URL(location.href);
  history.replaceState(null, '', '/');
  if (!saved) throw new Error('no sign-in was started in this tab');
  const { verifier, state, nonce } = JSON.parse(saved);
  // Checks `state` and RFC 9207 `iss`, and turns `error=` into an exception.
  const params = oauth.validateAuthResponse(as, client, here, state);
  const response = await oauth.authorizationCodeGrantRequest(
    as, client, clientAuth, params, redirectUri, verifier, options,
  );
  const result = await oauth.processAuthorizationCodeResponse(as, client, response, {
    expectedNonce: nonce,
    requireIdToken: true,
  });
  const next = sessionFrom(result, null);
  next.claims = await verifiedClaims(next.idToken);
  known = true;
  setSession(next, { broadcast: true });
  ready();
  return next;
}

/** The leader's refresh: one in flight, whoever asks. */
function refreshAsLeader(stale) {
  if (session?.accessToken !== stale) {
    // Already refreshed (or signed out) since that token was handed out: tell whoever asked.
    channel.postMessage({ type: 'session', session });
    return Promise.resolve(session);
  }
  rotating ??= (async () => {
    try {
      const previous = session;
      if (!previous.refreshToken) {
        // Signed in without offline_access: nothing to refresh with, so sign in again.
        setSession(null, { broadcast: true });
        return null;
      }
      const response = await oauth.refreshTokenGrantRequest(
        as, client, clientAuth, previous.refreshToken, options,
      );
      let next;
      try {
        next = sessionFrom(await oauth.processRefreshTokenResponse(as, client, response), previous);
      } catch (e) {
        // invalid_grant: the family is over (signed out elsewhere, revoked, expired).
        if (e instanceof oauth.ResponseBodyError) {
          setSession(null, { broadcast: true });
          return null;
        }
        throw e;
      }
      next.claims = next.idToken === previous.idToken ? previous.claims : await verifiedClaims(next.idToken);
      setSession(next, { broadcast: true });
      return next;
    } finally {
      rotating = null;
    }
  })();
  return rotating;
}

/** A session whose access token is not `stale`: refreshed once, for every caller and tab. */
export function refreshAfter(stale) {
  if (session?.accessToken !== stale) return Promise.resolve(session);
  if (leader) return refreshAsLeader(stale);
  if (asked?.stale !== stale) {
    asked?.reject(new Error('superseded'));
    let resolve;
    let reject;
    const answer = new Promise((res, rej) => ((resolve = res), (reject = rej)));
    asked = { stale, resolve, reject, answer };
    channel.postMessage({ type: 'refresh', stale });
  }
  return asked.answer;
}

/**
 * Runs `request(accessToken)`; on a 401, refreshes once (shared by all concurrent callers) and
 * retries once. Throws `SignedOut` when there is no session or it has ended.
 */
export async function withAccessToken(request) {
  const current = await currentSession();
  if (!current) throw new SignedOut();
  const response = await request(current.accessToken);
  if (response.status !== 401) return response;
  const fresh = await refreshAfter(current.accessToken);
  if (!fresh) throw new SignedOut();
  return request(fresh.accessToken);
}

/** The signed-in person's claims from /userinfo (cross-origin, with the access token). */
export async function userInfo() {
  const { claims } = (await currentSession()) ?? {};
  const response = await withAccessToken((token) => oauth.userInfoRequest(as, client, token, options));
  return oauth.processUserInfoResponse(as, client, claims.sub, response);
}

/**
 * Signs out: revokes the refresh token (RFC 7009; Keyward ends the whole family and its access
 * tokens), tells the other tabs, then ends the Keyward session (OIDC RP-Initiated Logout).
 */
export async function signOut() {
  const ending = session;
  setSession(null, { broadcast: true });
  if (!ending) return;
  try {
    await oauth.processRevocationResponse(
      await oauth.revocationRequest(as, client, clientAuth, ending.refreshToken, options),
    );
  } catch {
    // Still end the Keyward session: the family dies with its idle timeout at worst.
  }
  const url = new URL(as.end_session_endpoint);
  url.search = new URLSearchParams({
    client_id: client.client_id,
    id_token_hint: ending.idToken,
    post_logout_redirect_uri: new URL('/', location.origin).href,
  });
  location.assign(url);
}

/** There is no session: sign in. */
export class SignedOut extends Error {
  constructor() {
    super('signed out');
    this.name = 'SignedOut';
  }
}

export { config };
