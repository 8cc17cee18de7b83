// The models view: installed models (/api/tags + /api/show), pull with live progress and
// cancel, delete, copy, details, and what is loaded (/api/ps) with unload.

import { api } from './api.js';
import { loadModels } from './chat.js';
import { $, ask, capsBadges, formatBytes, h, toast } from './ui.js';

let pulling = null; // AbortController of the running pull

export async function refreshModels() {
  let models;
  try {
    models = await loadModels();
  } catch (error) {
    toast(`Could not list models: ${error.message}`);
    return;
  }
  const body = $('#models-table tbody');
  body.replaceChildren(
    ...models.map((m) =>
      h(
        'tr',
        { dataset: { model: m.name } },
        h('th', { scope: 'row' }, m.name),
        h('td', {}, formatBytes(m.size)),
        h('td', {}, m.details?.family || ''),
        h('td', {}, m.details?.parameter_size || ''),
        h('td', {}, m.details?.quantization_level || ''),
        h('td', { class: 'caps' }, ...capsBadges(m.capabilities)),
        h(
          'td',
          {},
          h(
            'div',
            { class: 'actions' },
            h('button', { type: 'button', class: 'btn', 'aria-label': `Details of ${m.name}`, onclick: () => details(m.name) }, 'Details'),
          h('button', { type: 'button', class: 'btn', 'aria-label': `Copy ${m.name}`, onclick: () => copyModel(m.name) }, 'Copy'),
            h('button', { type: 'button', class: 'btn danger', 'aria-label': `Delete ${m.name}`, onclick: () => deleteModel(m.name) }, 'Delete'),
          ),
        ),
      ),
    ),
  );
  if (!models.length) body.append(h('tr', {}, h('td', { colspan: '7', class: 'empty' }, 'No models yet: pull one above.')));
}

export async function refreshLoaded() {
  const body = $('#ps-table tbody');
  let loaded;
  try {
    loaded = (await api.ps()).models || [];
  } catch (error) {
    toast(`Could not list loaded models: ${error.message}`);
    return;
  }
  body.replaceChildren(
    ...loaded.map((m) =>
      h(
        'tr',
        { dataset: { model: m.name } },
        h('th', { scope: 'row' }, m.name),
        h('td', {}, formatBytes(m.size)),
        h('td', {}, m.context_length ?? ''),
        h('td', {}, m.expires_at ? new Date(m.expires_at).toLocaleString() : ''),
        h('td', {}, h('div', { class: 'actions' }, h('button', { type: 'button', class: 'btn', 'aria-label': `Unload ${m.name}`, onclick: () => unload(m.name) }, 'Unload'))),
      ),
    ),
  );
  if (!loaded.length) body.append(h('tr', {}, h('td', { colspan: '5', class: 'empty' }, 'Nothing loaded.')));
}

async function unload(name) {
  try {
    await api.unload(name);
    toast(`Unloaded ${name}`);
  } catch (error) {
    toast(`Unload failed: ${error.message}`);
  }
  await refreshLoaded();
}

async function deleteModel(name) {
  const ok = await ask({ title: 'Delete model', body: `Delete ${name}? Its files are removed from this machine.`, ok: 'Delete', danger: true });
  if (!ok) return;
  try {
    await api.remove(name);
    toast(`Deleted ${name}`);
  } catch (error) {
    toast(`Delete failed: ${error.message}`);
  }
  await refreshModels();
}

async function copyModel(name) {
  const destination = await ask({ title: `Copy ${name}`, input: { label: 'New name', value: `${name.split(':')[0]}-copy` }, ok: 'Copy' });
  if (!destination) return;
  try {
    await api.copy(name, destination);
    toast(`Copied to ${destination}`);
  } catch (error) {
    toast(`Copy failed: ${error.message}`);
  }
  await refreshModels();
}

function section(title, text) {
  if (!text) return null;
  return h('section', { class: 'detail' }, h('h3', {}, title), h('pre', { tabindex: '0' }, text));
}

async function details(name) {
  let info;
  try {
    info = await api.show(name);
  } catch (error) {
    return toast(`Details failed: ${error.message}`);
  }
  const d = info.details || {};
  const facts = [
    ['Family', d.family],
    ['Parameters', d.parameter_size],
    ['Quantization', d.quantization_level],
    ['Format', d.format],
    ['Capabilities', (info.capabilities || []).join(', ')],
  ].filter(([, v]) => v);
  const body = h(
    'div',
    { class: 'details' },
    h('dl', {}, ...facts.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
    section('Parameters', info.parameters),
    section('System', info.system),
    section('Template', info.template),
    section('License', info.license),
  );
  await ask({ title: name, body, ok: 'Close', cancel: false });
}

function pullProgress(layers) {
  let total = 0;
  let completed = 0;
  for (const { total: t, completed: c } of layers.values()) {
    total += t;
    completed += c;
  }
  return total ? (100 * completed) / total : 0;
}

async function pull(event) {
  event.preventDefault();
  if (pulling) return;
  const name = $('#pull-name').value.trim();
  if (!name) return;
  const controller = new AbortController();
  pulling = controller;
  $('#pull').hidden = true;
  $('#pull-cancel').hidden = false;
  $('#pull-status').hidden = false;
  const bar = $('#pull-progress');
  const label = $('#pull-label');
  bar.value = 0;
  label.textContent = 'starting…';
  const layers = new Map();
  let finished = false;
  try {
    for await (const e of api.pull(name, $('#pull-insecure').checked, controller.signal)) {
      if (e.digest && e.total) layers.set(e.digest, { total: e.total, completed: e.completed || 0 });
      const percent = pullProgress(layers);
      bar.value = percent;
      label.textContent = e.digest && e.total ? `${e.status} ${Math.floor(percent)}%` : e.status;
      if (e.status === 'success') finished = true;
    }
    if (finished) {
      bar.value = 100;
      label.textContent = `${name}: success 100%`;
      $('#pull-name').value = '';
    }
  } catch (error) {
    label.textContent = error.name === 'AbortError' ? 'cancelled' : `failed: ${error.message}`;
  } finally {
    pulling = null;
    $('#pull').hidden = false;
    $('#pull-cancel').hidden = true;
  }
  await refreshModels();
}

export function setupModels() {
  $('#pull-form').addEventListener('submit', pull);
  $('#pull-cancel').addEventListener('click', () => pulling?.abort());
  $('#ps-refresh').addEventListener('click', refreshLoaded);
}
