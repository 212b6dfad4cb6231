// Pods: a live table (list + watch, no polling) filtered by the namespace picker and a label selector.
import { KINDS, ListWatch, resourcePath } from '../api.js';
import { ago, badge, byName, h, link, podReady, podStatus, restarts, table, updateRows } from '../util.js';

let lastSelector = '';

export function render(main, ctx) {
  const pods = table('Pods', ['Name', 'Namespace', 'Ready', 'Status', 'Restarts', 'Node', 'IP', 'Age']);
  const search = h('input', { id: 'label-selector', type: 'search', placeholder: 'app=web,tier!=db', value: lastSelector });
  const problem = h('span', { class: 'bad', role: 'alert' });
  main.append(h('h1', {}, 'Pods'),
    h('div', { class: 'toolbar' }, h('label', { for: 'label-selector' }, 'Label selector'), search, problem),
    pods.el);
  let watch = null;
  const start = () => {
    if (watch) watch.stop();
    lastSelector = search.value.trim();
    problem.textContent = '';
    watch = new ListWatch(resourcePath(KINDS.pods, ctx.namespace), { labelSelector: lastSelector }, (items) => {
      updateRows(pods.tbody, [...items.values()].sort(byName).map((p) => ({
        key: `${p.metadata.namespace}/${p.metadata.name}`,
        cells: [link(`#/pods/${encodeURIComponent(p.metadata.namespace)}/${encodeURIComponent(p.metadata.name)}`, p.metadata.name),
          p.metadata.namespace, podReady(p), badge(podStatus(p)), String(restarts(p)), p.spec.nodeName || '',
          (p.status || {}).podIP || '', ago(p.metadata.creationTimestamp)],
      })), 'No pods');
    });
    watch.onError = (e) => { problem.textContent = e.message; };
  };
  search.addEventListener('change', start);
  start();
  return () => watch && watch.stop();
}
