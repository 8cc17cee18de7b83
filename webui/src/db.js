// Conversations in IndexedDB: one object store, one record per conversation.

const DB_NAME = 'ollamapy-ui';
const STORE = 'conversations';
let opened;

function open() {
  opened ??= new Promise((resolve, reject) => {
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => {
      const store = req.result.createObjectStore(STORE, { keyPath: 'id' });
      store.createIndex('updated', 'updated');
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
  return opened;
}

async function run(mode, fn) {
  const db = await open();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(STORE, mode);
    const result = fn(tx.objectStore(STORE));
    tx.oncomplete = () => resolve(result?.result);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

export const db = {
  all: async () => {
    const list = (await run('readonly', (s) => s.getAll())) || [];
    return list.sort((a, b) => b.updated - a.updated);
  },
  get: (id) => run('readonly', (s) => s.get(id)),
  put: (conversation) => run('readwrite', (s) => s.put(conversation)),
  remove: (id) => run('readwrite', (s) => s.delete(id)),
};

export function newId() {
  return `${Date.now().toString(36)}-${crypto.getRandomValues(new Uint32Array(2)).join('')}`;
}

/** A conversation read from an export: only known fields, checked types. */
export function validConversation(c) {
  if (!c || typeof c !== 'object' || !Array.isArray(c.messages)) return null;
  const messages = c.messages
    .filter((m) => m && ['user', 'assistant', 'system'].includes(m.role))
    .map((m) => ({
      role: m.role,
      content: String(m.content ?? ''),
      ...(m.thinking ? { thinking: String(m.thinking) } : {}),
      ...(Array.isArray(m.images) ? { images: m.images.filter((i) => typeof i === 'string') } : {}),
      ...(m.stats && typeof m.stats === 'object' ? { stats: m.stats } : {}),
    }));
  return {
    id: typeof c.id === 'string' ? c.id : newId(),
    title: String(c.title ?? 'Imported chat').slice(0, 200),
    model: typeof c.model === 'string' ? c.model : '',
    system: typeof c.system === 'string' ? c.system : '',
    options: c.options && typeof c.options === 'object' ? c.options : {},
    messages,
    created: Number(c.created) || Date.now(),
    updated: Number(c.updated) || Date.now(),
  };
}
