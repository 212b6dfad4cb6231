// Deployments: live table with scale (the replicas field, a merge patch) and restart (kubectl rollout restart's
// restartedAt annotation on the pod template) buttons; one Deployment's page with its rollout, revisions and pods.
import { KINDS, ListWatch, resourcePath } from '../api.js';
import { ago, byName, h, link, table, updateRows } from '../util.js';
import { ROLLOUT_STATUS, actions, conditionsTable, ownedBy, podTable, selectorText } from '../workload.js';

const REVISION = 'deployment.kubernetes.io/revision';

// One Deployment: rollout status and conditions, its revisions (ReplicaSets) and its pods, live.
function detail(main, namespace, name) {
  const status = h('p', { id: 'rollout-status', role: 'status' });
  const conditions = conditionsTable();
  const revisions = table('Revisions', ['Revision', 'ReplicaSet', 'Desired', 'Ready', 'Images', 'Age']);
  const pods = podTable(namespace);
  main.append(h('h1', {}, `Deployment ${namespace}/${name}`), status, h('h2', {}, 'Conditions'), conditions.el,
    h('h2', {}, 'Revisions'), revisions.el, h('h2', {}, 'Pods'), pods.el);
  const watches = [pods];
  let uid = null;
  let replicaSets = new Map();
  const showRevisions = () => {
    const owned = [...replicaSets.values()].filter((rs) => ownedBy(rs, uid));
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
    status.textContent = ROLLOUT_STATUS.deployments(d);
    conditions.show(d);
    pods.follow(selectorText(d.spec.selector));
  }));
  watches.push(new ListWatch(resourcePath(KINDS.replicasets, namespace), {}, (items) => { replicaSets = items; showRevisions(); }));
  return () => watches.forEach((w) => w.stop());
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
