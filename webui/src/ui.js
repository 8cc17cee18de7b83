// Small DOM helpers shared by the views: element builder, dialog, toast, formatting.

export const $ = (selector, root = document) => root.querySelector(selector);

/** h('button', {class: 'btn', onclick}, 'text', child) -> element. Text is never parsed as HTML. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

let toastTimer;
export function toast(message) {
  const el = $('#toast');
  el.textContent = message;
  el.classList.add('show');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => el.classList.remove('show'), 4000);
}

/**
 * A modal dialog. `body` is a Node (or text); with `input` an <input> is shown and its value
 * resolved; returns null when cancelled, true (or the input's value) when confirmed.
 */
export function ask({ title, body = '', input = null, ok = 'OK', danger = false, cancel = true }) {
  const dialog = $('#dialog');
  const form = $('#dialog-form');
  $('#dialog-title').textContent = title;
  const holder = $('#dialog-body');
  holder.replaceChildren();
  if (body) holder.append(body instanceof Node ? body : h('p', {}, body));
  let field = null;
  if (input) {
    field = h('input', {
      id: 'dialog-input',
      type: input.type || 'text',
      value: input.value || '',
      autocomplete: 'off',
      required: true,
    });
    holder.append(h('label', { for: 'dialog-input', class: 'field-label' }, input.label), field);
  }
  const okButton = $('#dialog-ok');
  okButton.textContent = ok;
  okButton.className = `btn ${danger ? 'danger' : 'primary'}`;
  $('#dialog-cancel').hidden = !cancel;
  return new Promise((resolve) => {
    const finish = (value) => {
      form.removeEventListener('submit', onSubmit);
      $('#dialog-cancel').removeEventListener('click', onCancel);
      dialog.removeEventListener('cancel', onCancel);
      if (dialog.open) dialog.close();
      resolve(value);
    };
    const onSubmit = (event) => {
      event.preventDefault();
      if (field && !field.value.trim()) return;
      finish(field ? field.value.trim() : true);
    };
    const onCancel = (event) => {
      event.preventDefault();
      finish(null);
    };
    form.addEventListener('submit', onSubmit);
    $('#dialog-cancel').addEventListener('click', onCancel);
    dialog.addEventListener('cancel', onCancel);
    dialog.showModal();
    (field || okButton).focus();
  });
}

export function formatBytes(n) {
  if (!Number.isFinite(n)) return '';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i += 1;
  }
  return `${n.toFixed(n >= 100 || i === 0 ? 0 : 1)} ${units[i]}`;
}

export function capsBadges(caps = []) {
  return caps.map((cap) => h('span', { class: `cap cap-${cap}` }, cap));
}

const ICONS = {
  trash: 'M4 7h16M9 7V4h6v3M6 7l1 13h10l1-13M10 11v6M14 11v6',
  pencil: 'M4 20h4L19 9l-4-4L4 16v4zM13 7l4 4',
};

/** A small stroked SVG icon (no emoji font needed), hidden from screen readers. */
export function icon(name) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', 'icon');
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS(ns, 'path');
  path.setAttribute('d', ICONS[name]);
  svg.append(path);
  return svg;
}
