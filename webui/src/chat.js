// The chat view: model picker, conversation list (IndexedDB), streaming answers with their
// thinking trace, stop / regenerate / edit-and-branch, settings, images for vision models.

import { api, ApiError } from './api.js';
import { db, newId, validConversation } from './db.js';
import { copyText, fillMarkdown } from './markdown.js';
import { $, ask, capsBadges, h, icon, toast } from './ui.js';

const LAST_MODEL = 'ollamapy.lastModel';

const state = {
  models: [], // [{name, size, details, capabilities}]
  conversation: null,
  conversations: [],
  pending: [], // images attached to the next message: [{name, data}] (data: base64)
  controller: null, // AbortController of the answer being streamed
};

// ---------------------------------------------------------------- models

/** /api/tags, then /api/show for each model's capabilities (shown in the picker). */
export async function loadModels() {
  const tags = (await api.tags()).models || [];
  const shown = await Promise.all(
    tags.map((m) => api.show(m.name).catch(() => ({ capabilities: [] }))),
  );
  state.models = tags.map((m, i) => ({ ...m, capabilities: shown[i].capabilities || [] }));
  fillModelSelect();
  return state.models;
}

function fillModelSelect() {
  const select = $('#model-select');
  const wanted = state.conversation?.model || select.value || localStorage.getItem(LAST_MODEL);
  select.replaceChildren(
    ...state.models.map((m) =>
      h('option', { value: m.name }, `${m.name}${m.capabilities.length ? ` (${m.capabilities.join(', ')})` : ''}`),
    ),
  );
  if (!state.models.length) select.append(h('option', { value: '' }, 'No models: pull one in Models'));
  const names = state.models.map((m) => m.name);
  const chosen = names.includes(wanted) ? wanted : names[0];
  if (chosen) select.value = chosen;
  showCapabilities();
}

function currentModel() {
  return state.models.find((m) => m.name === $('#model-select').value);
}

function canSee() {
  return Boolean(currentModel()?.capabilities.includes('vision'));
}

function showCapabilities() {
  const model = currentModel();
  $('#model-caps').replaceChildren(...capsBadges(model?.capabilities));
  const vision = canSee();
  const attach = $('#attach');
  attach.disabled = !vision;
  attach.title = vision ? 'Attach images' : 'This model does not take images';
  $('#opt-think').disabled = !model?.capabilities.includes('thinking');
}

// ---------------------------------------------------------------- conversations

function blankConversation() {
  return {
    id: newId(),
    title: 'New chat',
    model: $('#model-select').value,
    system: $('#opt-system').value,
    options: readOptions(),
    messages: [],
    created: Date.now(),
    updated: Date.now(),
  };
}

async function save(conversation) {
  conversation.updated = Date.now();
  await db.put(structuredClone(conversation));
  await refreshList();
}

export async function refreshList() {
  state.conversations = await db.all();
  renderList();
}

function matches(conversation, query) {
  if (!query) return true;
  const q = query.toLowerCase();
  return (
    conversation.title.toLowerCase().includes(q) ||
    conversation.messages.some((m) => m.content.toLowerCase().includes(q))
  );
}

function renderList() {
  const query = $('#search').value.trim();
  const list = $('#conversations');
  const shown = state.conversations.filter((c) => matches(c, query));
  list.replaceChildren(
    ...shown.map((c) => {
      const current = c.id === state.conversation?.id;
      return h(
        'li',
        { class: `conv${current ? ' current' : ''}` },
        h(
          'button',
          {
            type: 'button',
            class: 'conv-open',
            'aria-current': current ? 'true' : null,
            onclick: () => openConversation(c.id),
          },
          c.title,
        ),
        h('button', { type: 'button', class: 'icon-btn', 'aria-label': `Rename ${c.title}`, title: 'Rename', onclick: () => rename(c) }, icon('pencil')),
        h('button', { type: 'button', class: 'icon-btn', 'aria-label': `Delete ${c.title}`, title: 'Delete', onclick: () => removeConversation(c) }, icon('trash')),
      );
    }),
  );
  if (!shown.length) list.append(h('li', { class: 'empty' }, query ? 'No match' : 'No conversations yet'));
}

export async function openConversation(id) {
  if (state.controller) return toast('Stop the answer first');
  const conversation = await db.get(id);
  if (!conversation) return;
  state.conversation = conversation;
  $('#opt-system').value = conversation.system || '';
  writeOptions(conversation.options || {});
  if (conversation.model && state.models.some((m) => m.name === conversation.model)) {
    $('#model-select').value = conversation.model;
  }
  showCapabilities();
  renderMessages();
  renderList();
  closeSidebar();
}

export function newConversation() {
  if (state.controller) return toast('Stop the answer first');
  state.conversation = null;
  renderMessages();
  renderList();
  closeSidebar();
  $('#composer-input').focus();
}

async function rename(conversation) {
  const title = await ask({ title: 'Rename conversation', input: { label: 'Title', value: conversation.title }, ok: 'Rename' });
  if (!title) return;
  conversation.title = title;
  if (state.conversation?.id === conversation.id) state.conversation.title = title;
  await db.put(conversation);
  await refreshList();
}

async function removeConversation(conversation) {
  const ok = await ask({ title: 'Delete conversation', body: `Delete “${conversation.title}”? This cannot be undone.`, ok: 'Delete', danger: true });
  if (!ok) return;
  await db.remove(conversation.id);
  if (state.conversation?.id === conversation.id) {
    state.conversation = null;
    renderMessages();
  }
  await refreshList();
}

async function exportAll() {
  const data = JSON.stringify({ format: 'ollamapy-conversations', version: 1, conversations: await db.all() }, null, 2);
  const url = URL.createObjectURL(new Blob([data], { type: 'application/json' }));
  const link = h('a', { href: url, download: `conversations-${new Date().toISOString().slice(0, 10)}.json` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

async function importFile(file) {
  try {
    const parsed = JSON.parse(await file.text());
    const list = Array.isArray(parsed) ? parsed : parsed.conversations;
    if (!Array.isArray(list)) throw new Error('no conversations in this file');
    let count = 0;
    for (const item of list) {
      const conversation = validConversation(item);
      if (conversation) {
        await db.put(conversation);
        count += 1;
      }
    }
    await refreshList();
    toast(`Imported ${count} conversation${count === 1 ? '' : 's'}`);
  } catch (error) {
    toast(`Import failed: ${error.message}`);
  }
}

// ---------------------------------------------------------------- settings

function readOptions() {
  const options = {};
  const temperature = $('#opt-temperature').value;
  const numCtx = $('#opt-num-ctx').value;
  if (temperature !== '') options.temperature = Number(temperature);
  if (numCtx !== '') options.num_ctx = Number.parseInt(numCtx, 10);
  const think = $('#opt-think').value;
  return { options, think };
}

function writeOptions({ options = {}, think = '' }) {
  $('#opt-temperature').value = options.temperature ?? '';
  $('#opt-num-ctx').value = options.num_ctx ?? '';
  $('#opt-think').value = think;
}

function thinkValue(think) {
  if (think === 'true') return true;
  if (think === 'false') return false;
  return think || undefined;
}

// ---------------------------------------------------------------- messages

const MAGIC = { iVBOR: 'png', '/9j/': 'jpeg', R0lG: 'gif', UklG: 'webp', Qk: 'bmp' };

/** A data: URL for base64 image bytes, its type told by the first bytes. */
function imageURL(data) {
  const found = Object.entries(MAGIC).find(([prefix]) => data.startsWith(prefix));
  return `data:image/${found ? found[1] : 'png'};base64,${data}`;
}

function statsLine(stats) {
  if (!stats) return null;
  const parts = [];
  if (stats.tps) parts.push(`${stats.tps.toFixed(1)} tokens/s`);
  if (stats.ttft !== undefined) parts.push(`TTFT ${(stats.ttft / 1000).toFixed(2)} s`);
  if (stats.eval_count) parts.push(`${stats.eval_count} tokens`);
  if (stats.stopped) parts.push('stopped');
  return h('p', { class: 'stats', 'aria-label': 'Answer statistics' }, parts.join(' · '));
}

function thinkingBlock(message, streaming) {
  const details = h(
    'details',
    { class: 'thinking', open: streaming && !message.content ? true : null },
    h('summary', {}, streaming && !message.content ? 'Thinking…' : 'Thinking'),
    h('div', { class: 'thinking-text' }, message.thinking),
  );
  return details;
}

function messageElement(message, index, { streaming = false } = {}) {
  const isUser = message.role === 'user';
  const body = h('div', { class: 'bubble' });
  if (message.thinking) body.append(thinkingBlock(message, streaming));
  const content = h('div', { class: isUser ? 'content plain' : 'content markdown' });
  if (isUser) content.textContent = message.content;
  else fillMarkdown(content, message.content);
  body.append(content);
  if (message.images?.length) {
    body.append(
      h('div', { class: 'msg-images' }, ...message.images.map((data, i) => h('img', { src: imageURL(data), alt: `Attached image ${i + 1}` }))),
    );
  }
  if (message.error) body.append(h('p', { class: 'msg-error', role: 'alert' }, message.error));
  const actions = h('div', { class: 'msg-actions' });
  if (!streaming) {
    if (isUser) {
      actions.append(h('button', { type: 'button', class: 'link-btn', onclick: () => editMessage(index) }, 'Edit'));
    } else {
      actions.append(h('button', { type: 'button', class: 'link-btn', onclick: () => copyText(message.content).then(() => toast('Copied')) }, 'Copy'));
      if (index === state.conversation.messages.length - 1) {
        actions.append(h('button', { type: 'button', class: 'link-btn regenerate', onclick: regenerate }, 'Regenerate'));
      }
    }
  }
  const stats = isUser ? null : statsLine(message.stats);
  return h(
    'article',
    { class: `msg ${message.role}`, 'aria-label': isUser ? 'You' : 'Assistant', dataset: { index: String(index) } },
    body,
    stats,
    actions,
  );
}

function renderMessages() {
  const box = $('#messages');
  const messages = state.conversation?.messages || [];
  box.replaceChildren(...messages.map((m, i) => messageElement(m, i)));
  if (!messages.length) {
    box.append(h('div', { class: 'welcome' }, h('h2', {}, 'Start a conversation'), h('p', {}, 'Pick a model and send a message. Answers stream as they are written.')));
  }
  box.scrollTop = box.scrollHeight;
}

function nearBottom(box) {
  return box.scrollHeight - box.scrollTop - box.clientHeight < 80;
}

// ---------------------------------------------------------------- sending

function setBusy(busy) {
  $('#send').hidden = busy;
  $('#stop').hidden = !busy;
  $('#model-select').disabled = busy;
  if (!busy) $('#composer-input').focus();
}

async function send() {
  if (state.controller) return;
  const input = $('#composer-input');
  const text = input.value.trim();
  if (!text && !state.pending.length) return;
  const model = $('#model-select').value;
  if (!model) return toast('Pull a model first (Models)');
  if (!state.conversation) state.conversation = blankConversation();
  const conversation = state.conversation;
  if (conversation.messages.length === 0) conversation.title = (text || 'Image').slice(0, 60);
  const message = { role: 'user', content: text };
  if (state.pending.length) message.images = state.pending.map((p) => p.data);
  conversation.messages.push(message);
  input.value = '';
  state.pending = [];
  renderAttachments();
  renderMessages();
  await answer();
}

function requestBody(conversation) {
  const { options, think } = conversation.options || {};
  const messages = [];
  if (conversation.system) messages.push({ role: 'system', content: conversation.system });
  for (const m of conversation.messages) {
    const wire = { role: m.role, content: m.content };
    if (m.images?.length) wire.images = m.images;
    messages.push(wire);
  }
  const body = { model: conversation.model, messages };
  if (options && Object.keys(options).length) body.options = options;
  const thinkSetting = thinkValue(think);
  const thinks = state.models.find((m) => m.name === conversation.model)?.capabilities.includes('thinking');
  if (thinkSetting !== undefined && thinks) body.think = thinkSetting; // others refuse `think`
  return body;
}

/** Stream the assistant's answer to the conversation as it stands, and save it. */
async function answer() {
  const conversation = state.conversation;
  conversation.model = $('#model-select').value;
  conversation.system = $('#opt-system').value;
  conversation.options = readOptions();
  localStorage.setItem(LAST_MODEL, conversation.model);
  await save(conversation);

  const reply = { role: 'assistant', content: '', thinking: '' };
  const index = conversation.messages.length;
  const box = $('#messages');
  const element = messageElement(reply, index, { streaming: true });
  element.setAttribute('aria-busy', 'true');
  element.classList.add('streaming');
  box.querySelector('.welcome')?.remove();
  box.append(element);
  box.scrollTop = box.scrollHeight;

  const controller = new AbortController();
  state.controller = controller;
  setBusy(true);
  const started = performance.now();
  let firstToken = null;
  let final = null;
  let frame = 0;
  const paint = () => {
    frame = 0;
    const stick = nearBottom(box);
    let details = element.querySelector('details.thinking');
    if (reply.thinking) {
      if (!details) {
        details = thinkingBlock(reply, true);
        details.querySelector('summary').addEventListener('click', () => (details.dataset.touched = '1'));
        element.querySelector('.bubble').prepend(details);
      }
      details.querySelector('.thinking-text').textContent = reply.thinking;
      if (reply.content && !details.dataset.answered) {
        details.dataset.answered = '1'; // the answer started: fold the trace unless the reader chose
        details.querySelector('summary').textContent = 'Thinking';
        if (!details.dataset.touched) details.open = false;
      }
    }
    fillMarkdown(element.querySelector('.content'), reply.content);
    if (stick) box.scrollTop = box.scrollHeight;
  };
  try {
    for await (const event of api.chat(requestBody(conversation), controller.signal)) {
      const delta = event.message || {};
      if ((delta.content || delta.thinking) && firstToken === null) firstToken = performance.now() - started;
      if (delta.thinking) reply.thinking += delta.thinking;
      if (delta.content) reply.content += delta.content;
      if (event.done) final = event;
      if (!frame) frame = requestAnimationFrame(paint);
    }
  } catch (error) {
    if (error.name !== 'AbortError') reply.error = error instanceof ApiError ? error.message : `Error: ${error.message}`;
  } finally {
    if (frame) cancelAnimationFrame(frame);
    state.controller = null;
  }
  reply.stats = {
    ttft: firstToken ?? undefined,
    eval_count: final?.eval_count,
    tps: final?.eval_count && final?.eval_duration ? final.eval_count / (final.eval_duration / 1e9) : undefined,
    stopped: !final && !reply.error ? true : undefined,
  };
  if (!reply.thinking) delete reply.thinking;
  conversation.messages.push(reply);
  await save(conversation);
  if (state.conversation === conversation) renderMessages();
  setBusy(false);
}

function stop() {
  state.controller?.abort();
}

async function regenerate() {
  const conversation = state.conversation;
  if (state.controller || !conversation) return;
  const last = conversation.messages.at(-1);
  if (last?.role !== 'assistant') return;
  conversation.messages.pop();
  renderMessages();
  await answer();
}

/** Edit an earlier user message: a new conversation branches from that point. */
async function editMessage(index) {
  if (state.controller) return;
  const original = state.conversation;
  const message = original.messages[index];
  const element = $(`#messages .msg[data-index="${index}"]`);
  const area = h('textarea', { class: 'edit-area', rows: '3', 'aria-label': 'Edit message' });
  area.value = message.content;
  const cancel = h('button', { type: 'button', class: 'btn', onclick: () => renderMessages() }, 'Cancel');
  const branch = h('button', { type: 'submit', class: 'btn primary' }, 'Send as new branch');
  const form = h('form', { class: 'edit-form', onsubmit: (e) => { e.preventDefault(); submitBranch(); } }, area, h('div', { class: 'dialog-actions' }, cancel, branch));
  area.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') renderMessages();
  });
  element.replaceWith(form);
  area.focus();

  async function submitBranch() {
    const text = area.value.trim();
    if (!text) return;
    const branched = {
      ...structuredClone(original),
      id: newId(),
      title: `${original.title} (branch)`,
      created: Date.now(),
      messages: [...structuredClone(original.messages.slice(0, index)), { ...structuredClone(message), content: text }],
    };
    state.conversation = branched;
    renderMessages();
    await answer();
  }
}

// ---------------------------------------------------------------- images

async function readImage(file) {
  const buffer = await file.arrayBuffer();
  let binary = '';
  const bytes = new Uint8Array(buffer);
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return { name: file.name || 'pasted image', data: btoa(binary) };
}

async function attach(files) {
  const images = [...files].filter((f) => f.type.startsWith('image/'));
  if (!images.length) return;
  if (!canSee()) {
    $('#composer-note').textContent = `${$('#model-select').value} does not take images: pick a vision model.`;
    return;
  }
  $('#composer-note').textContent = '';
  for (const file of images) state.pending.push(await readImage(file));
  renderAttachments();
}

function renderAttachments() {
  $('#attachments').replaceChildren(
    ...state.pending.map((p, i) =>
      h(
        'li',
        { class: 'attachment' },
        h('img', { src: imageURL(p.data), alt: p.name }),
        h('button', { type: 'button', class: 'icon-btn', 'aria-label': `Remove ${p.name}`, onclick: () => { state.pending.splice(i, 1); renderAttachments(); } }, '×'),
      ),
    ),
  );
}

// ---------------------------------------------------------------- wiring

function closeSidebar() {
  document.body.classList.remove('sidebar-open');
  $('#sidebar-toggle').setAttribute('aria-expanded', 'false');
}

export function setupChat() {
  $('#composer').addEventListener('submit', (e) => {
    e.preventDefault();
    send();
  });
  $('#composer-input').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
  $('#stop').addEventListener('click', stop);
  $('#new-chat').addEventListener('click', newConversation);
  $('#search').addEventListener('input', renderList);
  $('#export').addEventListener('click', exportAll);
  $('#import').addEventListener('click', () => $('#import-file').click());
  $('#import-file').addEventListener('change', (e) => {
    if (e.target.files[0]) importFile(e.target.files[0]);
    e.target.value = '';
  });
  $('#model-select').addEventListener('change', () => {
    localStorage.setItem(LAST_MODEL, $('#model-select').value);
    showCapabilities();
  });
  $('#settings-toggle').addEventListener('click', () => {
    const settings = $('#settings');
    settings.hidden = !settings.hidden;
    $('#settings-toggle').setAttribute('aria-expanded', String(!settings.hidden));
  });
  $('#settings').addEventListener('submit', (e) => e.preventDefault());
  $('#attach').addEventListener('click', () => $('#attach-file').click());
  $('#attach-file').addEventListener('change', async (e) => {
    await attach(e.target.files);
    e.target.value = '';
  });
  const composer = $('#composer');
  composer.addEventListener('dragover', (e) => {
    if ([...e.dataTransfer.types].includes('Files')) {
      e.preventDefault();
      composer.classList.add('dropping');
    }
  });
  composer.addEventListener('dragleave', () => composer.classList.remove('dropping'));
  composer.addEventListener('drop', (e) => {
    e.preventDefault();
    composer.classList.remove('dropping');
    attach(e.dataTransfer.files);
  });
  $('#composer-input').addEventListener('paste', (e) => {
    const files = [...e.clipboardData.items].filter((i) => i.kind === 'file').map((i) => i.getAsFile());
    if (files.length) {
      e.preventDefault();
      attach(files);
    }
  });
  $('#messages').addEventListener('click', (e) => {
    const button = e.target.closest('.copy-btn');
    if (!button) return;
    const code = button.closest('.code-block').querySelector('code').textContent;
    copyText(code).then(() => {
      button.textContent = 'Copied';
      setTimeout(() => (button.textContent = 'Copy'), 1500);
    });
  });
  $('#sidebar-toggle').addEventListener('click', () => {
    const open = document.body.classList.toggle('sidebar-open');
    $('#sidebar-toggle').setAttribute('aria-expanded', String(open));
  });
  renderMessages();
}
