// YAML view and edit of one object (#/yaml/<plural>/<namespace or ->/<name>): saved with a PUT; the API server's
// validation errors (the Status' causes) are listed next to the editor with the field and its line, which they select.
// js-yaml (from npm) is loaded when first needed: without it only this page fails, not the whole app.
let yamlModule = null;
async function jsyaml() {
  if (!yamlModule) yamlModule = (await import('/vendor/js-yaml.mjs')).default;
  return yamlModule;
}
import { KINDS, get, put, resourcePath } from '../api.js';
import { h } from '../util.js';

// The line (0-based) of a field path such as spec.template.spec.containers[0].image in YAML as js-yaml writes it;
// the deepest part found when the rest is not there; -1 when not even the first part is.
export function lineOf(text, field) {
  const lines = text.split('\n');
  const lead = (i) => lines[i].search(/\S/);
  const parts = field.replace(/\[(\d+)\]/g, '.$1').split('.').filter(Boolean);
  let found = -1; // the line of the parts matched so far
  let col = -1; // the column of the last matched key (or of the dash of the last matched item)
  let item = false; // whether the last match was a sequence item (its first key is on its line)
  for (const part of parts) {
    let hit = -1;
    if (/^\d+$/.test(part)) {
      let n = Number(part);
      let dash = -1;
      for (let i = found + 1; i < lines.length && hit < 0; i++) {
        if (!lines[i].trim()) continue;
        const isItem = lines[i].trimStart().startsWith('- ') || lines[i].trim() === '-';
        if (lead(i) < col || (lead(i) === col && !isItem)) break;
        if (isItem && (dash < 0 || lead(i) === dash)) {
          dash = lead(i);
          if (n-- === 0) hit = i;
        }
      }
      if (hit < 0) break;
      col = dash;
      item = true;
    } else {
      let child = -1; // the column of the parent's keys
      for (let i = item ? found : found + 1; i < lines.length && hit < 0; i++) {
        if (!lines[i].trim()) continue;
        if (i > found && found >= 0 && lead(i) <= col) break;
        const m = /^(\s*(?:- )?)(["']?)([^:#"']+)\2:(\s|$)/.exec(lines[i]);
        if (!m) continue;
        const at = m[1].length;
        if (child < 0) child = at;
        if (at === child && m[3] === part) hit = i;
      }
      if (hit < 0) break;
      col = child;
      item = false;
    }
    found = hit;
  }
  return found;
}

function selectLine(area, line) {
  const lines = area.value.split('\n');
  const start = lines.slice(0, line).reduce((n, l) => n + l.length + 1, 0);
  area.focus();
  area.setSelectionRange(start, start + lines[line].length);
  const lineHeight = area.scrollHeight / lines.length;
  area.scrollTop = Math.max(0, lineHeight * (line - 5));
}

// Markers beside the editor's lines: each error at its field's line, kept in place as the text scrolls.
function markerLayer(area) {
  const layer = h('div', { class: 'markers', 'aria-hidden': 'true' });
  let marks = [];
  const place = () => {
    const style = getComputedStyle(area);
    const lineHeight = parseFloat(style.lineHeight);
    const top = parseFloat(style.paddingTop) + area.clientTop;
    for (const { el, line } of marks) {
      const y = top + line * lineHeight - area.scrollTop;
      el.style.top = `${y}px`;
      el.hidden = y < 0 || y > area.clientHeight - lineHeight / 2;
    }
  };
  area.addEventListener('scroll', place);
  area.addEventListener('input', () => { marks = []; layer.replaceChildren(); }); // they would point at moved lines
  return {
    layer,
    set(list) { // [{line, field, text}]
      marks = list.map((m) => ({ line: m.line, el: h('div', { class: 'marker', 'data-field': m.field }, `◀ ${m.text}`) }));
      layer.replaceChildren(...marks.map((m) => m.el));
      place();
    },
  };
}

export function render(main, ctx) {
  const [plural, namespace, name] = ctx.args;
  const kind = KINDS[plural];
  if (!kind) { main.append(h('h1', {}, `Unknown kind ${plural}`)); return null; }
  const path = resourcePath(kind, namespace === '-' ? '' : namespace, name);
  const area = h('textarea', { id: 'yaml-text', class: 'yaml', spellcheck: 'false' });
  const errors = h('div', { id: 'yaml-errors', role: 'alert', 'aria-live': 'assertive' });
  const saved = h('span', { id: 'yaml-state', role: 'status' });
  const markers = markerLayer(area);
  const label = `${plural}/${namespace === '-' ? '' : namespace + '/'}${name}`;
  const load = async () => {
    const yaml = await jsyaml();
    const obj = await get(path);
    delete obj.metadata.managedFields;
    area.value = yaml.dump(obj, { lineWidth: 120, noRefs: true });
  };
  const save = async () => {
    errors.replaceChildren();
    errors.className = '';
    saved.textContent = '';
    markers.set([]);
    const yaml = await jsyaml();
    let obj;
    try {
      obj = yaml.load(area.value);
    } catch (e) {
      errors.className = 'errors';
      const line = e.mark ? e.mark.line : -1;
      errors.append(h('p', {}, `Not valid YAML${line >= 0 ? ` (line ${line + 1})` : ''}: ${e.reason || e.message}`));
      return;
    }
    try {
      const out = await put(path, obj);
      delete out.metadata.managedFields;
      area.value = yaml.dump(out, { lineWidth: 120, noRefs: true });
      saved.textContent = `Saved (resourceVersion ${out.metadata.resourceVersion})`;
    } catch (e) {
      errors.className = 'errors';
      errors.append(h('p', {}, e.message));
      const causes = ((e.body || {}).details || {}).causes || [];
      markers.set(causes.filter((c) => c.field).map((c) => ({ line: lineOf(area.value, c.field), field: c.field, text: `${c.field}: ${c.message || c.reason}` }))
        .filter((m) => m.line >= 0));
      if (causes.length) {
        errors.append(h('ul', {}, causes.map((c) => {
          const line = c.field ? lineOf(area.value, c.field) : -1;
          return h('li', { 'data-field': c.field || '' },
            h('span', { class: 'field' }, c.field || '(object)'),
            line >= 0 ? [' ', h('button', { type: 'button', class: 'goto', onclick: () => selectLine(area, line) }, `line ${line + 1}`)] : '',
            `: ${c.message || c.reason}`);
        })));
      }
    }
  };
  main.append(h('h1', {}, `YAML of ${label}`),
    h('div', { class: 'editor' },
      h('div', {}, h('label', { for: 'yaml-text' }, `YAML of ${label}`), h('div', { class: 'yaml-wrap' }, area, markers.layer)),
      h('div', {}, h('div', { class: 'toolbar' },
        h('button', { type: 'button', id: 'yaml-save', onclick: save }, 'Save'),
        h('button', { type: 'button', id: 'yaml-reload', onclick: () => { errors.replaceChildren(); errors.className = ''; load(); } }, 'Reload'),
        saved), errors)));
  load().catch((e) => { errors.className = 'errors'; errors.textContent = e.message; });
  return null;
}
