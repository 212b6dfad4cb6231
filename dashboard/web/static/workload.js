// What the workload pages share: scale and restart (as kubectl scale / rollout restart do them), kubectl rollout
// status' messages (kubectl/pkg/polymorphichelpers/rollout_status.go, as pkctl/rollout_status.py), a Job's STATUS
// and COMPLETIONS as kubectl get jobs prints them (pklib/columns.py), a label selector as text, and a live table of
// the pods a selector matches.
import { KINDS, ListWatch, patch, resourcePath, showError } from './api.js';
import { ago, badge, byName, condition, h, link, podReady, podStatus, restarts, table, updateRows } from './util.js';

export async function scale(kind, namespace, name, replicas) {
  await patch(resourcePath(kind, namespace, name), { spec: { replicas } });
}

export async function restart(kind, namespace, name) {
  await patch(resourcePath(kind, namespace, name),
    { spec: { template: { metadata: { annotations: { 'kubectl.kubernetes.io/restartedAt': new Date().toISOString() } } } } });
}

export const yamlHash = (plural, namespace, name) => `#/yaml/${plural}/${encodeURIComponent(namespace || '-')}/${encodeURIComponent(name)}`;

// The cells that act on one object: replicas input + Scale, Restart, YAML (kept across updates: functions).
export function actions(kind, plural, obj, { canScale = true, canRestart = true } = {}) {
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
        h('button', { type: 'button', class: 'scale', 'aria-label': `Scale ${name}`, onclick: go }, 'Scale'));
    });
  }
  cells.push(() => h('span', {},
    canRestart ? h('button', {
      type: 'button', class: 'restart', 'aria-label': `Restart ${name}`,
      onclick: async () => {
        try { await restart(kind, namespace, name); showError(`Restarting ${name}`); } catch (e) { showError(e.message); }
      },
    }, 'Restart') : '', canRestart ? ' ' : '',
    link(yamlHash(plural, namespace, name), 'YAML')));
  return cells;
}

const observed = (o) => (o.metadata.generation || 0) <= ((o.status || {}).observedGeneration || 0);

// The steps of a rolling update as kubectl reports them: the new ones updated, the old ones gone, the updated ones available.
function rolling(what, name, unit, { desired, updated, old, available, availableOf }) {
  const waiting = `Waiting for ${what} "${name}" rollout to finish: `;
  if (updated < desired) return `${waiting}${updated} out of ${desired} new ${unit} have been updated...`;
  if (old > 0) return `${waiting}${old} old ${unit} are pending termination...`;
  if (available < availableOf) return `${waiting}${available} of ${availableOf} updated ${unit} are available...`;
  return `${what} "${name}" successfully rolled out`;
}

export const ROLLOUT_STATUS = {
  deployments(d) {
    const st = d.status || {};
    if (!observed(d)) return 'Waiting for deployment spec update to be observed...';
    const progressing = ((st.conditions || []).find((c) => c.type === 'Progressing') || {});
    if (progressing.reason === 'ProgressDeadlineExceeded') return `deployment "${d.metadata.name}" exceeded its progress deadline`;
    const updated = st.updatedReplicas || 0;
    return rolling('deployment', d.metadata.name, 'replicas', {
      desired: d.spec.replicas ?? 1, updated, old: (st.replicas || 0) - updated, available: st.availableReplicas || 0, availableOf: updated,
    });
  },
  daemonsets(ds) {
    const st = ds.status || {};
    if (((ds.spec.updateStrategy || {}).type || 'RollingUpdate') !== 'RollingUpdate') return 'rollout status is only available for RollingUpdate strategy type';
    if (!observed(ds)) return 'Waiting for daemon set spec update to be observed...';
    const desired = st.desiredNumberScheduled || 0;
    return rolling('daemon set', ds.metadata.name, 'pods', {
      desired, updated: st.updatedNumberScheduled || 0, old: 0, available: st.numberAvailable || 0, availableOf: desired,
    });
  },
  statefulsets(s) {
    const st = s.status || {};
    const strategy = s.spec.updateStrategy || {};
    if ((strategy.type || 'RollingUpdate') !== 'RollingUpdate') return 'rollout status is only available for RollingUpdate strategy type';
    if (!st.observedGeneration || !observed(s)) return 'Waiting for statefulset spec update to be observed...';
    const replicas = s.spec.replicas ?? 1;
    const ready = st.readyReplicas || 0;
    const updated = st.updatedReplicas || 0;
    if (ready < replicas) return `Waiting for ${replicas - ready} pods to be ready...`;
    if (strategy.rollingUpdate) {
      const partition = strategy.rollingUpdate.partition;
      if (partition !== undefined && partition !== null && updated < replicas - partition) {
        return `Waiting for partitioned roll out to finish: ${updated} out of ${replicas - partition} new pods have been updated...`;
      }
      return `partitioned roll out complete: ${updated} new pods have been updated...`;
    }
    if (st.updateRevision !== st.currentRevision) return `waiting for statefulset rolling update to complete ${updated} pods at revision ${st.updateRevision}...`;
    return `statefulset rolling update complete ${st.currentReplicas || 0} pods at revision ${st.currentRevision}...`;
  },
};

// kubectl get jobs' STATUS column.
export function jobState(j) {
  const isTrue = (type) => (condition(j, type) || {}).status === 'True';
  if (isTrue('Complete')) return 'Complete';
  if (isTrue('Failed')) return 'Failed';
  if (j.metadata.deletionTimestamp) return 'Terminating';
  if (isTrue('Suspended')) return 'Suspended';
  if (isTrue('FailureTarget')) return 'FailureTarget';
  return 'Running';
}

// kubectl get jobs' COMPLETIONS column.
export function jobCompletions(j) {
  const succeeded = (j.status || {}).succeeded || 0;
  if (j.spec.completions !== undefined && j.spec.completions !== null) return `${succeeded}/${j.spec.completions}`;
  if ((j.spec.parallelism || 0) > 1) return `${succeeded}/1 of ${j.spec.parallelism}`;
  return `${succeeded}/1`;
}

// A label selector as text, the way a list's labelSelector parameter takes it.
export function selectorText(selector) {
  const parts = Object.entries((selector || {}).matchLabels || {}).map(([k, v]) => `${k}=${v}`);
  for (const e of (selector || {}).matchExpressions || []) {
    if (e.operator === 'In') parts.push(`${e.key} in (${e.values.join(',')})`);
    else if (e.operator === 'NotIn') parts.push(`${e.key} notin (${e.values.join(',')})`);
    else if (e.operator === 'Exists') parts.push(e.key);
    else if (e.operator === 'DoesNotExist') parts.push(`!${e.key}`);
  }
  return parts.join(',');
}

export const ownedBy = (o, uid) => !!uid && (o.metadata.ownerReferences || []).some((r) => r.uid === uid);

// A live table of the pods of `namespace` matching a selector; follow(selector) (again whenever the owner changes)
// starts or moves the watch; `owner` (a uid), when given, keeps only the pods it controls.
export function podTable(namespace) {
  const pods = table('Pods', ['Name', 'Ready', 'Status', 'Restarts', 'Node', 'Age']);
  let watch = null;
  let owner = null;
  return {
    el: pods.el,
    follow(selector, ownerUid = null) {
      owner = ownerUid;
      if (watch && watch.params.labelSelector === selector) return;
      if (watch) watch.stop();
      watch = new ListWatch(resourcePath(KINDS.pods, namespace), { labelSelector: selector }, (ps) => {
        const mine = [...ps.values()].filter((p) => !owner || ownedBy(p, owner));
        updateRows(pods.tbody, mine.sort(byName).map((p) => ({
          key: `${namespace}/${p.metadata.name}`,
          cells: [link(`#/pods/${encodeURIComponent(namespace)}/${encodeURIComponent(p.metadata.name)}`, p.metadata.name),
            podReady(p), badge(podStatus(p)), String(restarts(p)), p.spec.nodeName || '', ago(p.metadata.creationTimestamp)],
        })), 'No pods');
      });
    },
    stop() { if (watch) watch.stop(); },
  };
}

// A table of an object's status conditions (kubectl describe's Conditions).
export function conditionsTable() {
  const t = table('Conditions', ['Type', 'Status', 'Reason', 'Message', 'Last change']);
  return {
    el: t.el,
    show(obj) {
      updateRows(t.tbody, ((obj.status || {}).conditions || []).map((c) => ({
        key: c.type, cells: [c.type, badge(c.status), c.reason || '', c.message || '', ago(c.lastUpdateTime || c.lastTransitionTime)],
      })), 'No conditions');
    },
  };
}

// Fills a definition list with [term, value] pairs (values: text or Nodes).
export function showFacts(dl, pairs) {
  dl.replaceChildren(...pairs.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}
