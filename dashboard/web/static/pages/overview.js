// Overview: nodes (conditions, capacity, CPU and memory plots), workloads counted by health, recent Warning events; all live.
import { KINDS, ListWatch, resourcePath } from '../api.js';
import { usagePanel } from '../plots.js';
import { ago, badge, byName, condition, h, podStatus, table, updateRows } from '../util.js';

// Node conditions other than Ready that are bad when True.
const PRESSURE = ['MemoryPressure', 'DiskPressure', 'PIDPressure', 'NetworkUnavailable'];

function nodeRows(items) {
  return [...items.values()].sort(byName).map((n) => {
    const ready = condition(n, 'Ready');
    const problems = PRESSURE.filter((t) => (condition(n, t) || {}).status === 'True');
    const cap = (n.status || {}).capacity || {};
    const alloc = (n.status || {}).allocatable || {};
    const readyText = !ready ? 'Unknown' : ready.status === 'True' ? 'Ready' : 'NotReady';
    return {
      key: n.metadata.name,
      cells: [n.metadata.name, badge(n.spec.unschedulable ? `${readyText},SchedulingDisabled` : readyText),
        problems.length ? badge(problems.join(', ')) : 'None',
        `${alloc.cpu || '?'} / ${cap.cpu || '?'}`, `${alloc.memory || '?'} / ${cap.memory || '?'}`,
        `${alloc.pods || '?'}`, ((n.status || {}).nodeInfo || {}).kubeletVersion || '', ago(n.metadata.creationTimestamp)],
    };
  });
}

const TITLES = { deployments: 'Deployments', statefulsets: 'StatefulSets', daemonsets: 'DaemonSets', jobs: 'Jobs', pods: 'Pods' };

// Whether one object of a workload kind is healthy.
const HEALTH = {
  deployments: (d) => (d.status || {}).availableReplicas >= (d.spec.replicas ?? 1) && !((d.status || {}).unavailableReplicas),
  statefulsets: (s) => ((s.status || {}).readyReplicas || 0) >= (s.spec.replicas ?? 1),
  daemonsets: (d) => ((d.status || {}).numberReady || 0) >= ((d.status || {}).desiredNumberScheduled || 0),
  jobs: (j) => !((j.status || {}).failed),
  pods: (p) => ['Running', 'Completed', 'Succeeded'].includes(podStatus(p)),
};

export function render(main, ctx) {
  const nodes = table('Nodes', ['Name', 'Status', 'Conditions', 'CPU (allocatable / capacity)', 'Memory (allocatable / capacity)', 'Pods', 'Version', 'Age']);
  const cards = h('div', { class: 'cards', id: 'workload-counts' });
  const events = table('Recent warning events', ['Last seen', 'Namespace', 'Object', 'Reason', 'Message', 'Count']);
  const usage = usagePanel('node-usage', '/usage/nodes', (body) => Object.keys(body.series).sort()
    .map((name) => ({ key: name, label: `Node ${name}`, series: body.series[name] })), 'No samples yet');
  main.append(h('h1', {}, 'Overview'), h('h2', {}, 'Nodes'), nodes.el, h('h2', {}, 'Node usage (last hour)'), usage.el,
    h('h2', {}, 'Workloads'), cards,
    h('h2', {}, 'Recent warning events'), events.el);
  const watches = [new ListWatch(resourcePath(KINDS.nodes), {}, (items) => updateRows(nodes.tbody, nodeRows(items), 'No nodes'))];
  for (const [plural, healthy] of Object.entries(HEALTH)) {
    const card = h('div', { class: 'card', 'data-kind': plural });
    cards.append(card);
    watches.push(new ListWatch(resourcePath(KINDS[plural], ctx.namespace), {}, (items) => {
      const all = [...items.values()];
      const ok = all.filter(healthy).length;
      card.replaceChildren(h('div', {}, h('a', { href: `#/${plural}` }, TITLES[plural])),
        h('div', { class: 'n' }, `${ok} / ${all.length}`),
        h('div', { class: ok === all.length ? 'ok' : 'bad' }, ok === all.length ? 'healthy' : `${all.length - ok} unhealthy`));
    }));
  }
  watches.push(new ListWatch(resourcePath(KINDS.events, ctx.namespace), { fieldSelector: 'type=Warning' }, (items) => {
    const recent = [...items.values()]
      .map((e) => ({ e, t: e.lastTimestamp || e.eventTime || e.metadata.creationTimestamp }))
      .sort((a, b) => Date.parse(b.t) - Date.parse(a.t)).slice(0, 20);
    updateRows(events.tbody, recent.map(({ e, t }) => ({
      key: `${e.metadata.namespace}/${e.metadata.name}`,
      cells: [ago(t), e.metadata.namespace, `${(e.involvedObject || {}).kind}/${(e.involvedObject || {}).name}`,
        e.reason || '', e.message || '', String(e.count || 1)],
    })), 'No warnings');
  }));
  return () => { watches.forEach((w) => w.stop()); usage.stop(); };
}
