// The portal's calls to rescued's API.  The session cookie is HttpOnly: the
// page never sees it, nor the token it was made from.  What the page keeps
// (in memory only) is the CSRF token, sent on every request that changes
// something.
let csrf = null;

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function setCsrf(token) {
  csrf = token;
}

export async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET' && method !== 'HEAD' && csrf) headers['X-CSRF-Token'] = csrf;
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'rescued does not answer: ' + e.message, 'network');
  }
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!resp.ok) {
    const msg = (data && data.error) || resp.statusText || 'error ' + resp.status;
    throw new ApiError(resp.status, msg, data && data.code);
  }
  return data;
}

export const sid = (id) => encodeURIComponent(id);
