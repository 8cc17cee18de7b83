// Start-up: theme, tabs, the key prompt, then the two views.

import './style.css';
import { onKeyNeeded } from './api.js';
import { loadModels, refreshList, setupChat } from './chat.js';
import { refreshLoaded, refreshModels, setupModels } from './models.js';
import { $, ask, h, toast } from './ui.js';

const THEME = 'ollamapy.theme';
const THEMES = ['system', 'light', 'dark'];

function applyTheme(theme) {
  if (theme === 'system') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
  $('#theme-toggle').setAttribute('aria-label', `Theme: ${theme} (change)`);
  $('#theme-toggle').title = `Theme: ${theme}`;
}

function setupTheme() {
  let theme = localStorage.getItem(THEME) || 'system';
  applyTheme(theme);
  $('#theme-toggle').addEventListener('click', () => {
    theme = THEMES[(THEMES.indexOf(theme) + 1) % THEMES.length];
    localStorage.setItem(THEME, theme);
    applyTheme(theme);
  });
}

function show(view) {
  for (const name of ['chat', 'models']) {
    const on = name === view;
    $(`#view-${name}`).hidden = !on;
    const tab = $(`#tab-${name}`);
    if (on) tab.setAttribute('aria-current', 'page');
    else tab.removeAttribute('aria-current');
  }
  if (view === 'models') {
    refreshModels();
    refreshLoaded();
  }
  if (location.hash !== `#${view}`) history.replaceState(null, '', `#${view}`);
}

let asking = null;
onKeyNeeded((message) => {
  // one prompt at a time: concurrent 401s wait for the same answer
  asking ??= ask({
    title: 'API key needed',
    body: h('p', {}, `The server asks for an API key (${message}). It is kept for this browser session only.`),
    input: { label: 'API key', type: 'password' },
    ok: 'Use key',
  }).finally(() => {
    asking = null;
  });
  return asking;
});

async function start() {
  setupTheme();
  setupChat();
  setupModels();
  $('#tab-chat').addEventListener('click', () => show('chat'));
  $('#tab-models').addEventListener('click', () => show('models'));
  show(location.hash === '#models' ? 'models' : 'chat');
  try {
    await loadModels();
  } catch (error) {
    toast(`Could not list models: ${error.message}`);
  }
  await refreshList();
  document.body.dataset.ready = 'true';
}

start();
