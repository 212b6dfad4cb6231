// One pod: its containers (state, restarts, probes), CPU and memory plots, events, live logs (follow, container, previous) and an exec
// terminal (xterm.js over the pods/exec WebSocket, channel protocol v5/v4.channel.k8s.io).
import { KINDS, ListWatch, del, query, resourcePath, showError } from '../api.js';
import { usagePanel } from '../plots.js';
import { ago, badge, byName, h, link, podReady, podStatus, table, updateRows } from '../util.js';

function stateText(s) {
  const st = s.state || {};
  if (st.running) return `Running since ${st.running.startedAt || '?'}`;
  if (st.waiting) return `Waiting: ${st.waiting.reason || ''}${st.waiting.message ? ' (' + st.waiting.message + ')' : ''}`;
  if (st.terminated) return `Terminated: ${st.terminated.reason || ''} (exit code ${st.terminated.exitCode})`;
  return 'Unknown';
}

function probes(c) {
  return ['livenessProbe', 'readinessProbe', 'startupProbe'].filter((p) => c[p])
    .map((p) => p.replace('Probe', '')).join(', ') || 'none';
}

function logView(path, containers) {
  const picker = h('select', { id: 'log-container' }, containers.map((c) => h('option', { value: c }, c)));
  const follow = h('input', { id: 'log-follow', type: 'checkbox', checked: true });
  const previous = h('input', { id: 'log-previous', type: 'checkbox' });
  const out = h('pre', { class: 'logs', id: 'logs', 'aria-label': 'Logs', tabindex: '0' });
  let abort = null;
  async function stream() {
    if (abort) abort.abort();
    abort = new AbortController();
    const signal = abort.signal;
    out.textContent = '';
    const params = { container: picker.value, follow: follow.checked ? 'true' : '', previous: previous.checked ? 'true' : '', tailLines: 1000 };
    try {
      const resp = await fetch(`${path}/log${query(params)}`, { signal });
      if (!resp.ok) {
        const text = await resp.text();
        let message = text;
        try { message = JSON.parse(text).message; } catch { /* plain text */ }
        out.textContent = `(${message})`;
        return;
      }
      const reader = resp.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const atEnd = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
        out.append(decoder.decode(value, { stream: true }));
        if (atEnd) out.scrollTop = out.scrollHeight;
      }
    } catch (e) { // the connection broke (a network change, the dashboard restarting): read the logs again
      if (signal.aborted) return;
      out.append(`\n(${e.message}; reconnecting)`);
      setTimeout(() => { if (!signal.aborted) stream(); }, 1000);
    }
  }
  for (const el of [picker, follow, previous]) el.addEventListener('change', stream);
  const el = h('section', { 'aria-labelledby': 'logs-title' }, h('h2', { id: 'logs-title' }, 'Logs'),
    h('div', { class: 'toolbar' },
      h('label', { for: 'log-container' }, 'Container'), picker,
      h('label', {}, follow, ' Follow'), h('label', {}, previous, ' Previous container')),
    out);
  stream();
  return { el, stop: () => abort && abort.abort() };
}

function terminalView(path, containers) {
  const picker = h('select', { id: 'exec-container' }, containers.map((c) => h('option', { value: c }, c)));
  const command = h('input', { id: 'exec-command', value: 'sh' });
  const box = h('div', { class: 'terminal', id: 'terminal', hidden: true });
  const state = h('span', { id: 'exec-state', role: 'status' });
  let ws = null;
  let term = null;
  const close = () => {
    if (ws) ws.close();
    if (term) term.dispose();
    ws = null;
    term = null;
  };
  function open() {
    close();
    box.hidden = false;
    box.replaceChildren();
    term = new window.Terminal({ fontSize: 13, cursorBlink: true });
    const fit = new window.FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open(box);
    fit.fit();
    const params = new URLSearchParams({ container: picker.value, stdin: 'true', stdout: 'true', tty: 'true' });
    for (const arg of command.value.trim().split(/\s+/)) params.append('command', arg);
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const socket = new WebSocket(`${scheme}://${location.host}${path}/exec?${params}`, ['v5.channel.k8s.io', 'v4.channel.k8s.io']);
    socket.binaryType = 'arraybuffer';
    ws = socket;
    const t = term;
    const encoder = new TextEncoder();
    const send = (channel, bytes) => {
      if (socket.readyState !== WebSocket.OPEN) return;
      const frame = new Uint8Array(bytes.length + 1);
      frame[0] = channel;
      frame.set(bytes, 1);
      socket.send(frame);
    };
    const resize = () => send(4, encoder.encode(JSON.stringify({ Width: t.cols, Height: t.rows })));
    socket.onopen = () => { state.textContent = 'connected'; resize(); t.focus(); };
    socket.onmessage = (m) => {
      const data = new Uint8Array(m.data);
      if (!data.length) return;
      if (data[0] === 1 || data[0] === 2) t.write(data.subarray(1));
      else if (data[0] === 3) {
        const status = JSON.parse(new TextDecoder().decode(data.subarray(1)) || '{}');
        state.textContent = status.status === 'Success' ? 'exited' : `ended: ${status.message || status.status}`;
      }
    };
    socket.onclose = () => { if (state.textContent === 'connected') state.textContent = 'closed'; };
    socket.onerror = () => { state.textContent = 'could not connect'; };
    t.onData((s) => send(0, encoder.encode(s)));
    t.onResize(resize);
  }
  const el = h('section', { 'aria-labelledby': 'exec-title' }, h('h2', { id: 'exec-title' }, 'Terminal'),
    h('div', { class: 'toolbar' },
      h('label', { for: 'exec-container' }, 'Container'), picker,
      h('label', { for: 'exec-command' }, 'Command'), command,
      h('button', { id: 'exec-open', type: 'button', onclick: open }, 'Open terminal'), state),
    box);
  return { el, stop: close };
}

export function render(main, ctx) {
  const [namespace, name] = ctx.args;
  const path = resourcePath(KINDS.pods, namespace, name);
  const title = h('h1', {}, `Pod ${namespace}/${name}`);
  const summary = h('dl', { id: 'pod-summary' });
  const containers = table('Containers', ['Name', 'Image', 'State', 'Ready', 'Restarts', 'Probes']);
  const events = table('Events', ['Last seen', 'Type', 'Reason', 'From', 'Message', 'Count']);
  const remove = h('button', {
    type: 'button', id: 'pod-delete',
    onclick: async () => {
      if (!confirm(`Delete pod ${namespace}/${name}?`)) return;
      try { await del(path); } catch (e) { showError(e.message); }
    },
  }, 'Delete');
  const usage = usagePanel('pod-usage', `/usage/pods/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`,
    (body) => [{ key: name, label: `Pod ${name}`, series: body.pod }, ...Object.keys(body.containers).sort()
      .map((c) => ({ key: `${name}/${c}`, label: `Container ${c}`, series: body.containers[c] }))], 'No samples yet');
  main.append(title, h('div', { class: 'toolbar' }, link(`#/yaml/pods/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`, 'YAML'), remove),
    summary, h('h2', {}, 'Containers'), containers.el, h('h2', {}, 'Usage (last hour)'), usage.el);
  const stops = [usage];
  let views = false;
  stops.push(new ListWatch(resourcePath(KINDS.pods, namespace), { fieldSelector: `metadata.name=${name}` }, (items) => {
    const pod = items.get(`${namespace}/${name}`);
    if (!pod) {
      summary.replaceChildren(h('dt', {}, 'Status'), h('dd', {}, badge('Deleted')));
      return;
    }
    const st = pod.status || {};
    summary.replaceChildren(...[['Status', badge(podStatus(pod))], ['Ready', podReady(pod)], ['Node', pod.spec.nodeName || ''],
      ['IP', st.podIP || ''], ['QoS class', st.qosClass || ''], ['Age', ago(pod.metadata.creationTimestamp)]]
      .flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
    const statuses = new Map((st.containerStatuses || []).map((s) => [s.name, s]));
    updateRows(containers.tbody, pod.spec.containers.map((c) => {
      const s = statuses.get(c.name) || {};
      return { key: c.name, cells: [c.name, c.image, stateText(s), s.ready ? 'true' : 'false', String(s.restartCount || 0), probes(c)] };
    }));
    if (!views) { // the log and terminal views, once the containers are known
      views = true;
      const names = pod.spec.containers.map((c) => c.name);
      const logs = logView(path, names);
      const terminal = terminalView(path, names);
      main.append(h('h2', {}, 'Events'), events.el, logs.el, terminal.el);
      stops.push(logs, terminal);
    }
  }));
  stops.push(new ListWatch(resourcePath(KINDS.events, namespace),
    { fieldSelector: `involvedObject.name=${name},involvedObject.kind=Pod` }, (items) => {
      const rows = [...items.values()].sort(byName)
        .sort((a, b) => Date.parse(a.lastTimestamp || a.metadata.creationTimestamp) - Date.parse(b.lastTimestamp || b.metadata.creationTimestamp));
      updateRows(events.tbody, rows.map((e) => ({
        key: e.metadata.name,
        cells: [ago(e.lastTimestamp || e.eventTime || e.metadata.creationTimestamp), e.type || '', e.reason || '',
          (e.source || {}).component || e.reportingComponent || '', e.message || '', String(e.count || 1)],
      })), 'No events');
    }));
  return () => stops.forEach((s) => s.stop());
}
