// The native API, from the same origin. A 401 (API keys on) asks for a key once per
// browser session (sessionStorage only) and retries; NDJSON streams are read line by line.

const KEY = 'ollamapy.apiKey';
let askForKey = async () => null;

/** Install the function that asks the person for a key (returns it, or null if cancelled). */
export function onKeyNeeded(fn) {
  askForKey = fn;
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function headers(extra = {}) {
  const h = { ...extra };
  const key = sessionStorage.getItem(KEY);
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

async function errorOf(response) {
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    const e = body.error;
    return typeof e === 'string' ? e : e?.message || text;
  } catch {
    return text || response.statusText;
  }
}

/** fetch() with the key; on 401 asks for a key and tries again until it works or is cancelled. */
export async function request(method, path, body, { signal } = {}) {
  for (;;) {
    const init = { method, headers: headers(), signal };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    if (response.status === 401) {
      const message = await errorOf(response);
      const key = await askForKey(message);
      if (!key) throw new ApiError(401, message);
      sessionStorage.setItem(KEY, key);
      continue;
    }
    if (!response.ok) throw new ApiError(response.status, await errorOf(response));
    return response;
  }
}

export async function json(method, path, body, opts) {
  const response = await request(method, path, body, opts);
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

/** POST and yield each NDJSON object as it arrives; an `error` line throws. */
export async function* stream(path, body, { signal } = {}) {
  const response = await request('POST', path, body, { signal });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffered = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffered += decoder.decode(value, { stream: true });
    let newline;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, newline).trim();
      buffered = buffered.slice(newline + 1);
      if (!line) continue;
      const event = JSON.parse(line);
      if (event.error) throw new ApiError(500, event.error);
      yield event;
    }
  }
  const rest = (buffered + decoder.decode()).trim();
  if (rest) {
    const event = JSON.parse(rest);
    if (event.error) throw new ApiError(500, event.error);
    yield event;
  }
}

export const api = {
  tags: () => json('GET', '/api/tags'),
  show: (model) => json('POST', '/api/show', { model }),
  ps: () => json('GET', '/api/ps'),
  remove: (model) => json('DELETE', '/api/delete', { model }),
  copy: (source, destination) => json('POST', '/api/copy', { source, destination }),
  unload: (model) => json('POST', '/api/generate', { model, keep_alive: 0 }),
  chat: (body, signal) => stream('/api/chat', { ...body, stream: true }, { signal }),
  pull: (model, insecure, signal) => stream('/api/pull', { model, insecure, stream: true }, { signal }),
};
