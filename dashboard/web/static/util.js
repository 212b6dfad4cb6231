// DOM helpers and the Kubernetes display rules shared by the pages (status texts as kubectl prints them).

// h('td', {class: 'ok'}, 'text', child...): an element; attributes starting with "on" are listeners.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== undefined && c !== null) el.append(c);
  return el;
}

export function table(label, headers) {
  const tbody = h('tbody');
  const el = h('table', { 'aria-label': label }, h('thead', {}, h('tr', {}, headers.map((t) => h('th', { scope: 'col' }, t)))), tbody);
  return { el, tbody };
}

// Brings a table body in line with `rows` ([{key, cells}]) keeping the rows that stay (and their focus).
// A cell is text or a Node (replaced on each update), or a function making a Node once (kept: inputs, buttons).
export function updateRows(tbody, rows, empty = 'None') {
  const wanted = new Set(rows.map((r) => r.key));
  for (const tr of [...tbody.children]) if (!wanted.has(tr.dataset.key)) tr.remove();
  const existing = new Map([...tbody.children].map((tr) => [tr.dataset.key, tr]));
  let previous = null;
  for (const row of rows) {
    let tr = existing.get(row.key);
    if (!tr) {
      tr = h('tr', { 'data-key': row.key, 'data-name': row.key.split('/').pop() });
      row.cells.forEach((c) => tr.append(h('td', {}, typeof c === 'function' ? c() : c)));
    } else {
      row.cells.forEach((c, i) => {
        if (typeof c === 'function') return;
        const td = tr.children[i];
        if (c instanceof Node) { // replaced only when it differs (a focused link stays focused)
          if (!(td.childNodes.length === 1 && td.firstChild.isEqualNode(c))) td.replaceChildren(c);
        }
        else if (td.textContent !== String(c)) td.textContent = c;
      });
    }
    const at = previous ? previous.nextSibling : tbody.firstChild;
    if (at !== tr) tbody.insertBefore(tr, at);
    previous = tr;
  }
  if (!rows.length) tbody.replaceChildren(h('tr', { class: 'empty' }, h('td', { colspan: 20 }, empty)));
  else tbody.querySelector('tr.empty')?.remove();
}

export function age(ts) {
  if (!ts) return '';
  const s = Math.max(0, Math.floor((Date.now() - Date.parse(ts)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

// An age that keeps counting: app.js refreshes every <time data-age> every few seconds.
export function ago(ts) {
  return h('time', { datetime: ts || '', 'data-age': '' }, age(ts));
}

export function refreshAges(root = document) {
  for (const t of root.querySelectorAll('time[data-age]')) {
    const text = age(t.getAttribute('datetime'));
    if (t.textContent !== text) t.textContent = text;
  }
}

export const byName = (a, b) => (a.metadata.namespace || '').localeCompare(b.metadata.namespace || '')
  || a.metadata.name.localeCompare(b.metadata.name);

// kubectl's STATUS column of a pod.
export function podStatus(pod) {
  const st = pod.status || {};
  if (pod.metadata.deletionTimestamp) return 'Terminating';
  let reason = st.reason || st.phase || 'Pending';
  for (const c of st.containerStatuses || []) {
    const s = c.state || {};
    if (s.waiting && s.waiting.reason) reason = s.waiting.reason;
    else if (s.terminated && (s.terminated.reason || s.terminated.signal)) reason = s.terminated.reason || `Signal:${s.terminated.signal}`;
  }
  return reason;
}

export function podReady(pod) {
  const cs = (pod.status || {}).containerStatuses || [];
  return `${cs.filter((c) => c.ready).length}/${(pod.spec.containers || []).length}`;
}

export const restarts = (pod) => ((pod.status || {}).containerStatuses || []).reduce((n, c) => n + (c.restartCount || 0), 0);

export function statusClass(text) {
  if (['Running', 'Succeeded', 'Completed', 'Complete', 'True', 'Ready', 'Healthy', 'Active'].includes(text)) return 'ok';
  if (['Pending', 'ContainerCreating', 'Terminating', 'Progressing', 'Unknown', 'Suspended'].includes(text)) return 'warn';
  return 'bad';
}

export const badge = (text) => h('span', { class: statusClass(text) }, text);

export function link(hash, text) { return h('a', { href: hash }, text); }

export function condition(obj, type) {
  return ((obj.status || {}).conditions || []).find((c) => c.type === type);
}
