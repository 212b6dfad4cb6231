// The other list pages, each a live table: StatefulSets, DaemonSets, Jobs, CronJobs, Services (with their endpoints
// and the URL of a NodePort or LoadBalancer), Ingresses (rules and backends), HorizontalPodAutoscalers (targets and
// conditions), ConfigMaps and Secrets (values hidden until asked), PVCs and PVs.
import { KINDS, ListWatch, resourcePath } from '../api.js';
import { actions, jobCompletions, jobState, yamlHash } from '../workload.js';
import { ago, badge, byName, h, link, table, updateRows } from '../util.js';

const yamlLink = (plural, o) => link(yamlHash(plural, o.metadata.namespace, o.metadata.name), 'YAML');
// The name, linking to the object's own page.
const detailLink = (plural, o) => link(`#/${plural}/${encodeURIComponent(o.metadata.namespace)}/${encodeURIComponent(o.metadata.name)}`, o.metadata.name);

function dataCell(o, decode) {
  return () => {
    const keys = Object.keys(o.data || {}).sort();
    const list = h('dl', { hidden: true });
    const button = h('button', {
      type: 'button', 'aria-expanded': 'false', 'aria-label': `Show values of ${o.metadata.name}`,
      onclick: () => {
        const show = list.hidden;
        list.hidden = !show;
        button.textContent = show ? 'Hide values' : 'Show values';
        button.setAttribute('aria-expanded', String(show));
        if (show) {
          list.replaceChildren(...keys.flatMap((k) => [h('dt', {}, k), h('dd', { class: 'secret-value' }, decode(o.data[k]))]));
        } else list.replaceChildren(); // values leave the page when hidden again
      },
    }, 'Show values');
    return h('div', {}, `${keys.length} key${keys.length === 1 ? '' : 's'}: ${keys.join(', ')} `, keys.length ? button : '', list);
  };
}

function endpointsText(ep) {
  const out = [];
  for (const subset of (ep && ep.subsets) || []) {
    for (const a of subset.addresses || []) for (const p of subset.ports || [{}]) out.push(p.port ? `${a.ip}:${p.port}` : a.ip);
  }
  return out.length > 4 ? `${out.slice(0, 3).join(', ')} + ${out.length - 3} more` : out.join(', ') || '<none>';
}

function decodeBase64(text) {
  try { return new TextDecoder().decode(Uint8Array.from(atob(text), (c) => c.charCodeAt(0))); } catch { return text; }
}

let nodeAddress = '127.0.0.1';

function serviceUrls(s) {
  const urls = [];
  for (const p of s.spec.ports || []) {
    if ((s.spec.type === 'NodePort' || s.spec.type === 'LoadBalancer') && p.nodePort) urls.push(`http://${nodeAddress}:${p.nodePort}`);
    for (const ing of ((s.status || {}).loadBalancer || {}).ingress || []) urls.push(`http://${ing.ip || ing.hostname}:${p.port}`);
  }
  return urls;
}

function backendText(b) {
  if (!b) return '<default>';
  if (b.service) return `${b.service.name}:${b.service.port ? (b.service.port.name || b.service.port.number) : ''}`;
  if (b.resource) return `${b.resource.kind}/${b.resource.name}`;
  return '';
}

// Each rule's host and paths with their backends (kubectl describe ingress' Rules).
function ingressRules(o) {
  const lines = [];
  for (const r of o.spec.rules || []) {
    for (const p of ((r.http || {}).paths) || []) {
      lines.push(`${r.host || '*'}${p.path || '/'} (${p.pathType || 'ImplementationSpecific'}) → ${backendText(p.backend)}`);
    }
  }
  if (o.spec.defaultBackend) lines.push(`default → ${backendText(o.spec.defaultBackend)}`);
  return lines.length ? h('ul', { class: 'plain' }, lines.map((l) => h('li', {}, l))) : '<none>';
}

function ingressAddress(o) {
  return ((((o.status || {}).loadBalancer) || {}).ingress || []).map((i) => i.ip || i.hostname).join(', ');
}

// A metric's current / target as kubectl get hpa prints it (TARGETS).
function metricText(spec, status) {
  const kind = spec.type;
  const m = spec.resource || spec.containerResource || spec.pods || spec.object || spec.external || {};
  const cur = status ? (status.resource || status.containerResource || status.pods || status.object || status.external || {}).current || {} : {};
  const target = m.target || {};
  const name = m.name || (m.metric || {}).name || kind;
  if (target.type === 'Utilization') {
    const now = cur.averageUtilization !== undefined ? `${cur.averageUtilization}%` : '<unknown>';
    return `${name}: ${now}/${target.averageUtilization}%`;
  }
  const want = target.averageValue ?? target.value ?? '?';
  const now = cur.averageValue ?? cur.value ?? '<unknown>';
  return `${name}: ${now}/${want}${target.type === 'AverageValue' && kind !== 'Resource' && kind !== 'ContainerResource' ? ' (avg)' : ''}`;
}

function hpaTargets(o) {
  const current = ((o.status || {}).currentMetrics) || [];
  const metrics = o.spec.metrics || [];
  return metrics.map((m, i) => metricText(m, current[i])).join(', ') || '<none>';
}

function conditionsCell(o) {
  const conds = ((o.status || {}).conditions) || [];
  if (!conds.length) return '<none>';
  return h('ul', { class: 'plain' }, conds.map((c) => h('li', { title: c.message || '' },
    `${c.type}=${c.status}`, c.reason ? ` (${c.reason})` : '')));
}

export const PAGES = {
  statefulsets: {
    title: 'StatefulSets', headers: ['Name', 'Namespace', 'Ready', 'Age', 'Scale', 'Actions'],
    cells: (o) => [detailLink('statefulsets', o), o.metadata.namespace, `${(o.status || {}).readyReplicas || 0}/${o.spec.replicas ?? 1}`,
      ago(o.metadata.creationTimestamp), ...actions(KINDS.statefulsets, 'statefulsets', o)],
  },
  daemonsets: {
    title: 'DaemonSets', headers: ['Name', 'Namespace', 'Desired', 'Current', 'Ready', 'Up-to-date', 'Available', 'Age', 'Actions'],
    cells: (o) => {
      const st = o.status || {};
      return [detailLink('daemonsets', o), o.metadata.namespace, ...[st.desiredNumberScheduled, st.currentNumberScheduled, st.numberReady,
        st.updatedNumberScheduled, st.numberAvailable].map((n) => String(n || 0)), ago(o.metadata.creationTimestamp),
      ...actions(KINDS.daemonsets, 'daemonsets', o, { canScale: false })];
    },
  },
  jobs: {
    title: 'Jobs', headers: ['Name', 'Namespace', 'Status', 'Completions', 'Active', 'Failed', 'Age', 'YAML'],
    cells: (o) => {
      const st = o.status || {};
      return [detailLink('jobs', o), o.metadata.namespace, badge(jobState(o)), jobCompletions(o), String(st.active || 0),
        String(st.failed || 0), ago(o.metadata.creationTimestamp), yamlLink('jobs', o)];
    },
  },
  cronjobs: {
    title: 'CronJobs', headers: ['Name', 'Namespace', 'Schedule', 'Suspend', 'Active', 'Last schedule', 'Age', 'YAML'],
    cells: (o) => {
      const st = o.status || {};
      return [detailLink('cronjobs', o), o.metadata.namespace, o.spec.schedule, String(!!o.spec.suspend), String((st.active || []).length),
        st.lastScheduleTime ? ago(st.lastScheduleTime) : '<none>', ago(o.metadata.creationTimestamp), yamlLink('cronjobs', o)];
    },
  },
  services: {
    title: 'Services', headers: ['Name', 'Namespace', 'Type', 'Cluster IP', 'Ports', 'Endpoints', 'URL', 'Age', 'YAML'],
    cells: (o, extra) => [o.metadata.name, o.metadata.namespace, o.spec.type || 'ClusterIP', o.spec.clusterIP || '',
      (o.spec.ports || []).map((p) => `${p.port}${p.nodePort ? ':' + p.nodePort : ''}/${p.protocol || 'TCP'}`).join(', '),
      endpointsText(extra.get(`${o.metadata.namespace}/${o.metadata.name}`)),
      h('span', {}, serviceUrls(o).map((u) => h('a', { href: u, target: '_blank', rel: 'noopener' }, u))),
      ago(o.metadata.creationTimestamp), yamlLink('services', o)],
    // the Endpoints of the Services (kubectl get endpoints' ENDPOINTS column)
    extra: (ctx) => [resourcePath(KINDS.endpoints, ctx.namespace), {}],
  },
  ingresses: {
    title: 'Ingresses', headers: ['Name', 'Namespace', 'Class', 'Rules', 'Address', 'TLS', 'Age', 'YAML'],
    cells: (o) => [o.metadata.name, o.metadata.namespace, o.spec.ingressClassName || '<none>', ingressRules(o), ingressAddress(o),
      (o.spec.tls || []).map((t) => `${t.secretName || '<no secret>'} (${(t.hosts || []).join(', ') || '*'})`).join(', ') || '<none>',
      ago(o.metadata.creationTimestamp), yamlLink('ingresses', o)],
  },
  horizontalpodautoscalers: {
    title: 'HorizontalPodAutoscalers', headers: ['Name', 'Namespace', 'Reference', 'Targets', 'Min pods', 'Max pods', 'Replicas', 'Conditions', 'Age', 'YAML'],
    cells: (o) => {
      const ref = o.spec.scaleTargetRef || {};
      const st = o.status || {};
      return [o.metadata.name, o.metadata.namespace, `${ref.kind}/${ref.name}`, hpaTargets(o), String(o.spec.minReplicas ?? 1),
        String(o.spec.maxReplicas), `${st.currentReplicas ?? 0}${st.desiredReplicas !== undefined && st.desiredReplicas !== st.currentReplicas ? ` → ${st.desiredReplicas}` : ''}`,
        conditionsCell(o), ago(o.metadata.creationTimestamp), yamlLink('horizontalpodautoscalers', o)];
    },
  },
  persistentvolumeclaims: {
    title: 'PersistentVolumeClaims', headers: ['Name', 'Namespace', 'Status', 'Volume', 'Capacity', 'Access modes', 'Storage class', 'Age', 'YAML'],
    cells: (o) => [o.metadata.name, o.metadata.namespace, badge((o.status || {}).phase || 'Pending'), o.spec.volumeName || '',
      (((o.status || {}).capacity) || {}).storage || '', (o.spec.accessModes || []).join(', '), o.spec.storageClassName || '',
      ago(o.metadata.creationTimestamp), yamlLink('persistentvolumeclaims', o)],
  },
  persistentvolumes: {
    title: 'PersistentVolumes', headers: ['Name', 'Capacity', 'Access modes', 'Reclaim policy', 'Status', 'Claim', 'Storage class', 'Age', 'YAML'],
    cells: (o) => [o.metadata.name, (o.spec.capacity || {}).storage || '', (o.spec.accessModes || []).join(', '),
      o.spec.persistentVolumeReclaimPolicy || '', badge((o.status || {}).phase || 'Pending'),
      o.spec.claimRef ? `${o.spec.claimRef.namespace}/${o.spec.claimRef.name}` : '', o.spec.storageClassName || '',
      ago(o.metadata.creationTimestamp), yamlLink('persistentvolumes', o)],
  },
  configmaps: {
    title: 'ConfigMaps', headers: ['Name', 'Namespace', 'Data', 'Age', 'YAML'],
    cells: (o) => [o.metadata.name, o.metadata.namespace, dataCell(o, (v) => v), ago(o.metadata.creationTimestamp), yamlLink('configmaps', o)],
  },
  secrets: {
    title: 'Secrets', headers: ['Name', 'Namespace', 'Type', 'Data', 'Age'],
    cells: (o) => [o.metadata.name, o.metadata.namespace, o.type || 'Opaque', dataCell(o, decodeBase64), ago(o.metadata.creationTimestamp)],
  },
};

export function render(main, ctx) {
  const [plural] = ctx.args;
  const page = PAGES[plural];
  const t = table(page.title, page.headers);
  main.append(h('h1', {}, page.title), t.el);
  let objects = new Map();
  let extra = new Map();
  const show = () => updateRows(t.tbody, [...objects.values()].sort(byName).map((o) => ({
    key: `${o.metadata.namespace || ''}/${o.metadata.name}`, cells: page.cells(o, extra),
  })), `No ${page.title}`);
  const watches = [new ListWatch(resourcePath(KINDS[plural], ctx.namespace), {}, (items) => { objects = items; show(); })];
  if (page.extra) watches.push(new ListWatch(...page.extra(ctx), (items) => { extra = items; show(); }));
  if (plural === 'services') { // a node's address for NodePort URLs
    watches.push(new ListWatch(resourcePath(KINDS.nodes), {}, (items) => {
      for (const n of items.values()) {
        const a = ((n.status || {}).addresses || []).find((x) => x.type === 'InternalIP');
        if (a) { nodeAddress = a.address; break; }
      }
      show();
    }));
  }
  return () => watches.forEach((w) => w.stop());
}
