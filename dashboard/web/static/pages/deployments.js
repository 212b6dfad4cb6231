// Deployments: live table with scale (the replicas field, a merge patch) and restart (kubectl rollout restart's
// restartedAt annotation on the pod template) buttons.
import { KINDS, ListWatch, patch, resourcePath, showError } from '../api.js';
import { ago, badge, byName, h, link, podReady, podStatus, restarts, table, updateRows } from '../util.js';

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

// kubectl rollout status' message for a Deployment.
export function rolloutStatus(d) {
  const st = d.status || {};
  const name = d.metadata.name;
  const want = d.spec.replicas ?? 1;
  if ((d.metadata.generation || 0) > (st.observedGeneration || 0)) return 'Waiting for deployment spec update to be observed...';
  const progressing = ((st.conditions || []).find((c) => c.type === 'Progressing') || {});
  if (progressing.reason === 'ProgressDeadlineExceeded') return `deployment "${name}" exceeded its progress deadline`;
  if ((st.updatedReplicas || 0) < want) return `Waiting for deployment "${name}" rollout to finish: ${st.updatedReplicas || 0} out of ${want} new replicas have been updated...`;
  if ((st.replicas || 0) > (st.updatedReplicas || 0)) return `Waiting for deployment "${name}" rollout to finish: ${(st.replicas || 0) - (st.updatedReplicas || 0)} old replicas are pending termination...`;
  if ((st.availableReplicas || 0) < (st.updatedReplicas || 0)) return `Waiting for deployment "${name}" rollout to finish: ${st.availableReplicas || 0} of ${st.updatedReplicas} updated replicas are available...`;
  return `deployment "${name}" successfully rolled out`;
}

const REVISION = 'deployment.kubernetes.io/revision';

function selectorText(selector) {
  const parts = Object.entries((selector || {}).matchLabels || {}).map(([k, v]) => `${k}=${v}`);
  for (const e of (selector || {}).matchExpressions || []) {
    if (e.operator === 'In') parts.push(`${e.key} in (${e.values.join(',')})`);
    else if (e.operator === 'NotIn') parts.push(`${e.key} notin (${e.values.join(',')})`);
    else if (e.operator === 'Exists') parts.push(e.key);
    else if (e.operator === 'DoesNotExist') parts.push(`!${e.key}`);
  }
  return parts.join(',');
}

// One Deployment: rollout status and conditions, its revisions (ReplicaSets) and its pods, live.
function detail(main, namespace, name) {
  const status = h('p', { id: 'rollout-status', role: 'status' });
  const conditions = table('Conditions', ['Type', 'Status', 'Reason', 'Message', 'Last update']);
  const revisions = table('Revisions', ['Revision', 'ReplicaSet', 'Desired', 'Ready', 'Images', 'Age']);
  const pods = table('Pods', ['Name', 'Ready', 'Status', 'Restarts', 'Age']);
  main.append(h('h1', {}, `Deployment ${namespace}/${name}`), status, h('h2', {}, 'Conditions'), conditions.el,
    h('h2', {}, 'Revisions'), revisions.el, h('h2', {}, 'Pods'), pods.el);
  const watches = [];
  let uid = null;
  let podWatch = null;
  let replicaSets = new Map();
  const showRevisions = () => {
    const owned = [...replicaSets.values()].filter((rs) => (rs.metadata.ownerReferences || []).some((o) => o.uid === uid));
    owned.sort((a, b) => Number((b.metadata.annotations || {})[REVISION] || 0) - Number((a.metadata.annotations || {})[REVISION] || 0));
    updateRows(revisions.tbody, owned.map((rs) => ({
      key: `${namespace}/${rs.metadata.name}`,
      cells: [(rs.metadata.annotations || {})[REVISION] || '', rs.metadata.name, String(rs.spec.replicas ?? 1),
        String((rs.status || {}).readyReplicas || 0), rs.spec.template.spec.containers.map((c) => c.image).join(', '),
        ago(rs.metadata.creationTimestamp)],
    })), 'No ReplicaSets');
  };
  watches.push(new ListWatch(resourcePath(KINDS.deployments, namespace), { fieldSelector: `metadata.name=${name}` }, (items) => {
    const d = items.get(`${namespace}/${name}`);
    if (!d) { status.textContent = 'Deleted'; return; }
    uid = d.metadata.uid;
    showRevisions();
    status.textContent = rolloutStatus(d);
    updateRows(conditions.tbody, ((d.status || {}).conditions || []).map((c) => ({
      key: c.type, cells: [c.type, badge(c.status), c.reason || '', c.message || '', ago(c.lastUpdateTime)],
    })));
    const selector = selectorText(d.spec.selector);
    if (!podWatch || podWatch.params.labelSelector !== selector) {
      if (podWatch) podWatch.stop();
      podWatch = new ListWatch(resourcePath(KINDS.pods, namespace), { labelSelector: selector }, (ps) => {
        updateRows(pods.tbody, [...ps.values()].sort(byName).map((p) => ({
          key: `${namespace}/${p.metadata.name}`,
          cells: [link(`#/pods/${encodeURIComponent(namespace)}/${encodeURIComponent(p.metadata.name)}`, p.metadata.name),
            podReady(p), badge(podStatus(p)), String(restarts(p)), ago(p.metadata.creationTimestamp)],
        })), 'No pods');
      });
    }
  }));
  watches.push(new ListWatch(resourcePath(KINDS.replicasets, namespace), {}, (items) => { replicaSets = items; showRevisions(); }));
  return () => { watches.forEach((w) => w.stop()); if (podWatch) podWatch.stop(); };
}

export function render(main, ctx) {
  if (ctx.args.length === 2) return detail(main, ...ctx.args);
  const t = table('Deployments', ['Name', 'Namespace', 'Ready', 'Up-to-date', 'Available', 'Age', 'Scale', 'Actions']);
  main.append(h('h1', {}, 'Deployments'), t.el);
  const watch = new ListWatch(resourcePath(KINDS.deployments, ctx.namespace), {}, (items) => {
    updateRows(t.tbody, [...items.values()].sort(byName).map((d) => {
      const st = d.status || {};
      return {
        key: `${d.metadata.namespace}/${d.metadata.name}`,
        cells: [link(`#/deployments/${encodeURIComponent(d.metadata.namespace)}/${encodeURIComponent(d.metadata.name)}`, d.metadata.name),
          d.metadata.namespace, `${st.readyReplicas || 0}/${d.spec.replicas ?? 1}`,
          String(st.updatedReplicas || 0), String(st.availableReplicas || 0), ago(d.metadata.creationTimestamp),
          ...actions(KINDS.deployments, 'deployments', d)],
      };
    }), 'No deployments');
  });
  return () => watch.stop();
}
