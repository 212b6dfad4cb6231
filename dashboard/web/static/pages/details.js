// One StatefulSet, DaemonSet, Job or CronJob, live: what it is doing (rollout status and the status counts, a Job's
// succeeded/failed/active and conditions), its history (a StatefulSet's or DaemonSet's ControllerRevisions, a
// CronJob's Jobs), its pods, and scale (StatefulSet) / restart (StatefulSet, DaemonSet) buttons.
import { KINDS, ListWatch, resourcePath } from '../api.js';
import { ago, badge, byName, h, link, table, updateRows } from '../util.js';
import {
  ROLLOUT_STATUS, actions, conditionsTable, jobCompletions, jobState, ownedBy, podTable, selectorText, showFacts,
} from '../workload.js';

const TITLES = { statefulsets: 'StatefulSet', daemonsets: 'DaemonSet', jobs: 'Job', cronjobs: 'CronJob' };
const href = (plural, namespace, name) => `#/${plural}/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`;

const count = (n) => String(n || 0);
const images = (template) => ((((template || {}).spec || {}).containers) || []).map((c) => c.image).join(', ');

// What the page shows of each kind: the facts of its status, and its rollout message (none for Jobs and CronJobs).
const FACTS = {
  statefulsets: (o) => {
    const st = o.status || {};
    return [['Replicas', `${count(st.readyReplicas)}/${o.spec.replicas ?? 1} ready`], ['Current', count(st.currentReplicas)],
      ['Updated', count(st.updatedReplicas)], ['Available', count(st.availableReplicas)],
      ['Current revision', st.currentRevision || '<none>'], ['Update revision', st.updateRevision || '<none>'],
      ['Update strategy', (o.spec.updateStrategy || {}).type || 'RollingUpdate'], ['Service', o.spec.serviceName || '<none>'],
      ['Selector', selectorText(o.spec.selector)], ['Images', images(o.spec.template)], ['Age', ago(o.metadata.creationTimestamp)]];
  },
  daemonsets: (o) => {
    const st = o.status || {};
    return [['Desired', count(st.desiredNumberScheduled)], ['Current', count(st.currentNumberScheduled)],
      ['Ready', count(st.numberReady)], ['Up-to-date', count(st.updatedNumberScheduled)], ['Available', count(st.numberAvailable)],
      ['Misscheduled', count(st.numberMisscheduled)], ['Update strategy', (o.spec.updateStrategy || {}).type || 'RollingUpdate'],
      ['Selector', selectorText(o.spec.selector)], ['Images', images(o.spec.template)], ['Age', ago(o.metadata.creationTimestamp)]];
  },
  jobs: (o) => {
    const st = o.status || {};
    return [['Status', badge(jobState(o))], ['Completions', jobCompletions(o)], ['Parallelism', String(o.spec.parallelism ?? 1)],
      ['Active', count(st.active)], ['Ready', count(st.ready)], ['Succeeded', count(st.succeeded)], ['Failed', count(st.failed)],
      ['Back-off limit', String(o.spec.backoffLimit ?? 6)], ['Started', st.startTime ? ago(st.startTime) : '<none>'],
      ['Completed', st.completionTime ? ago(st.completionTime) : '<none>'], ['Images', images(o.spec.template)],
      ['Age', ago(o.metadata.creationTimestamp)]];
  },
  cronjobs: (o) => {
    const st = o.status || {};
    return [['Schedule', o.spec.schedule], ['Time zone', o.spec.timeZone || '<none>'], ['Suspend', String(!!o.spec.suspend)],
      ['Concurrency policy', o.spec.concurrencyPolicy || 'Allow'], ['Active', String((st.active || []).length)],
      ['Last schedule', st.lastScheduleTime ? ago(st.lastScheduleTime) : '<none>'],
      ['Last successful', st.lastSuccessfulTime ? ago(st.lastSuccessfulTime) : '<none>'],
      ['Images', images(((o.spec.jobTemplate || {}).spec || {}).template)], ['Age', ago(o.metadata.creationTimestamp)]];
  },
};

// The history of a StatefulSet or DaemonSet: the ControllerRevisions it owns, newest first.
function revisionHistory(namespace, plural) {
  const t = table('Revisions', ['Revision', 'ControllerRevision', 'Images', 'Age']);
  let revisions = new Map();
  let owner = null;
  const show = () => {
    if (!owner) return;
    const st = owner.status || {};
    const mine = [...revisions.values()].filter((r) => ownedBy(r, owner.metadata.uid)).sort((a, b) => (b.revision || 0) - (a.revision || 0));
    updateRows(t.tbody, mine.map((r) => {
      const marks = [r.metadata.name === st.currentRevision ? 'current' : '', r.metadata.name === st.updateRevision ? 'update' : '']
        .filter(Boolean);
      return {
        key: `${namespace}/${r.metadata.name}`,
        cells: [String(r.revision || 0), marks.length && plural === 'statefulsets' ? `${r.metadata.name} (${marks.join(', ')})` : r.metadata.name,
          images(((r.data || {}).spec || {}).template), ago(r.metadata.creationTimestamp)],
      };
    }), 'No revisions');
  };
  const watch = new ListWatch(resourcePath(KINDS.controllerrevisions, namespace), {}, (items) => { revisions = items; show(); });
  return { el: t.el, show(o) { owner = o; show(); }, stop: () => watch.stop() };
}

// A CronJob's history: the Jobs it owns, newest first, each linking to its page.
function cronJobHistory(namespace) {
  const t = table('Jobs', ['Name', 'Status', 'Completions', 'Age']);
  let jobs = new Map();
  let uid = null;
  const show = () => {
    const mine = [...jobs.values()].filter((j) => ownedBy(j, uid))
      .sort((a, b) => Date.parse(b.metadata.creationTimestamp) - Date.parse(a.metadata.creationTimestamp) || byName(a, b));
    updateRows(t.tbody, mine.map((j) => ({
      key: `${namespace}/${j.metadata.name}`,
      cells: [link(href('jobs', namespace, j.metadata.name), j.metadata.name), badge(jobState(j)), jobCompletions(j),
        ago(j.metadata.creationTimestamp)],
    })), 'No Jobs');
  };
  const watch = new ListWatch(resourcePath(KINDS.jobs, namespace), {}, (items) => { jobs = items; show(); });
  return { el: t.el, show(o) { uid = o.metadata.uid; show(); }, stop: () => watch.stop() };
}

export function render(main, ctx) {
  const [plural, namespace, name] = ctx.args;
  const kind = KINDS[plural];
  const status = h('p', { id: 'rollout-status', role: 'status' });
  const summary = h('dl', { id: 'workload-summary', class: 'facts' });
  const toolbar = h('div', { class: 'toolbar', id: 'workload-actions' });
  const conditions = conditionsTable();
  const history = plural === 'cronjobs' ? cronJobHistory(namespace)
    : plural === 'jobs' ? null : revisionHistory(namespace, plural);
  const pods = plural === 'cronjobs' ? null : podTable(namespace);
  main.append(h('h1', {}, `${TITLES[plural]} ${namespace}/${name}`), toolbar, ROLLOUT_STATUS[plural] ? status : '', summary);
  if (plural === 'jobs') main.append(h('h2', {}, 'Conditions'), conditions.el);
  if (history) main.append(h('h2', {}, plural === 'cronjobs' ? 'Jobs' : 'Revisions'), history.el);
  if (pods) main.append(h('h2', {}, 'Pods'), pods.el);
  const stops = [history, pods].filter(Boolean);
  let controls = false;
  stops.push(new ListWatch(resourcePath(kind, namespace), { fieldSelector: `metadata.name=${name}` }, (items) => {
    const o = items.get(`${namespace}/${name}`);
    if (!o) { status.textContent = 'Deleted'; showFacts(summary, [['Status', badge('Deleted')]]); return; }
    if (!controls) { // scale / restart / YAML, made once (an input keeps what is being typed)
      controls = true;
      toolbar.append(...actions(kind, plural, o, { canScale: plural === 'statefulsets', canRestart: !!ROLLOUT_STATUS[plural] })
        .map((make) => make()));
    }
    if (ROLLOUT_STATUS[plural]) status.textContent = ROLLOUT_STATUS[plural](o);
    showFacts(summary, FACTS[plural](o));
    if (plural === 'jobs') conditions.show(o);
    if (history) history.show(o);
    // a StatefulSet's or DaemonSet's selector may match pods of others: only the ones it controls
    if (pods) pods.follow(selectorText(o.spec.selector), o.metadata.uid);
  }));
  return () => stops.forEach((s) => s.stop());
}
