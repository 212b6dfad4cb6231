// Deployments: live table with scale (the replicas field, a merge patch) and restart (kubectl rollout restart's
// restartedAt annotation on the pod template) buttons.
import { KINDS, ListWatch, patch, resourcePath, showError } from '../api.js';
import { age, byName, h, link, table, updateRows } from '../util.js';

export async function scale(kind, namespace, name, replicas) {
  await patch(resourcePath(kind, namespace, name), { spec: { replicas } });
}

export async function restart(kind, namespace, name) {
  await patch(resourcePath(kind, namespace, name),
    { spec: { template: { metadata: { annotations: { 'kubectl.kubernetes.io/restartedAt': new Date().toISOString() } } } } });
}

// The cells that act on one object: replicas input + Scale, Restart, YAML (kept across updates: functions).
export function actions(kind, plural, obj, { canScale = true } = {}) {
  const { namespace, name } = obj.metadata;
  const id = `replicas-${namespace}-${name}`;
  const cells = [];
  if (canScale) {
    cells.push(() => {
      const input = h('input', { type: 'number', min: '0', id, value: String(obj.spec.replicas ?? 1) });
      const go = async () => {
        const n = Number(input.value);
        if (!Number.isInteger(n) || n < 0) { showError('Replicas must be a whole number, 0 or more'); return; }
        try { await scale(kind, namespace, name, n); showError(`Scaled ${name} to ${n}`); } catch (e) { showError(e.message); }
      };
      input.addEventListener('keydown', (e) => { if (e.key === 'Enter') go(); });
      return h('span', {}, h('label', { for: id, class: 'sr' }, `Replicas of ${name} `), input, ' ',
        h('button', { type: 'button', class: 'scale', onclick: go }, 'Scale'));
    });
  }
  cells.push(() => h('span', {},
    h('button', {
      type: 'button', class: 'restart', 'aria-label': `Restart ${name}`,
      onclick: async () => {
        try { await restart(kind, namespace, name); showError(`Restarting ${name}`); } catch (e) { showError(e.message); }
      },
    }, 'Restart'), ' ',
    link(`#/yaml/${plural}/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`, 'YAML')));
  return cells;
}

export function render(main, ctx) {
  const t = table('Deployments', ['Name', 'Namespace', 'Ready', 'Up-to-date', 'Available', 'Age', 'Scale', 'Actions']);
  main.append(h('h1', {}, 'Deployments'), t.el);
  const watch = new ListWatch(resourcePath(KINDS.deployments, ctx.namespace), {}, (items) => {
    updateRows(t.tbody, [...items.values()].sort(byName).map((d) => {
      const st = d.status || {};
      return {
        key: `${d.metadata.namespace}/${d.metadata.name}`,
        cells: [d.metadata.name, d.metadata.namespace, `${st.readyReplicas || 0}/${d.spec.replicas ?? 1}`,
          String(st.updatedReplicas || 0), String(st.availableReplicas || 0), age(d.metadata.creationTimestamp),
          ...actions(KINDS.deployments, 'deployments', d)],
      };
    }), 'No deployments');
  });
  return () => watch.stop();
}
