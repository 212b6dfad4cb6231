// Small CPU and memory plots of the last hour (plain SVG sparklines), from the series the dashboard samples
// (/usage/..., dashboard/usage.py). These are not API objects, so there is no watch: the panel reads them again
// every sampling interval.
import { h } from './util.js';

const SVG = 'http://www.w3.org/2000/svg';
const HOUR = 3600;
const MINUTE = 60;

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  el.append(...children);
  return el;
}

export const formatCpu = (cores) => (cores >= 1 ? `${cores.toFixed(2)} cores` : `${Math.round(cores * 1000)}m`);

export function formatMemory(bytes) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i += 1; }
  return `${bytes.toFixed(i ? 1 : 0)} ${units[i]}`;
}

// One series as a line ending at its last sample, with its latest value beside it. The x axis spans the samples
// kept (an hour once the dashboard has run that long; at least a minute, so that early plots are not a dot).
export function sparkline(times, values, { what, label, format, width = 240, height = 44 }) {
  const last = values.length ? format(values[values.length - 1]) : 'no samples yet';
  const peak = values.length ? Math.max(...values) : 0;
  const end = times.length ? times[times.length - 1] : 0;
  const span = times.length ? Math.min(HOUR, Math.max(MINUTE, end - times[0])) : HOUR;
  const top = peak > 0 ? peak * 1.1 : 1;
  const points = times.map((t, i) => {
    const x = width - ((end - t) / span) * width;
    const y = height - 2 - (values[i] / top) * (height - 4);
    return `${x.toFixed(1)},${y.toFixed(1)}`;
  }).join(' ');
  const title = `${label} ${what}, last hour: now ${last}${values.length ? `, peak ${format(peak)}` : ''}`;
  const plot = svg('svg', {
    class: 'sparkline', role: 'img', 'aria-label': title, viewBox: `0 0 ${width} ${height}`,
    width, height, 'data-series': what, 'data-points': String(values.length),
  }, svg('title', {}, title), svg('line', { x1: 0, y1: height - 1, x2: width, y2: height - 1, class: 'axis' }),
  svg('polyline', { points, class: 'line' }));
  return h('div', { class: 'plot' }, plot, h('span', { class: 'value' }, `${what === 'cpu' ? 'CPU' : 'Memory'} ${last}`));
}

// A live panel of plots: `entries(body)` names the series of the JSON at `url` ([{key, label, series}]).
export function usagePanel(id, url, entries, empty) {
  const el = h('div', { class: 'usage', id, 'aria-live': 'off' });
  let timer = null;
  let stopped = false;
  async function load() {
    let interval = 10;
    try {
      const resp = await fetch(url, { cache: 'no-store' });
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
      const body = await resp.json();
      interval = body.interval || interval;
      const rows = entries(body).filter((e) => e.series);
      if (stopped) return;
      el.replaceChildren(...(rows.length ? rows.map(({ key, label, series }) => h('figure', { 'data-name': key },
        h('figcaption', {}, label),
        sparkline(series.t, series.cpu, { what: 'cpu', label, format: formatCpu }),
        sparkline(series.t, series.memory, { what: 'memory', label, format: formatMemory })))
        : [h('p', { class: 'empty' }, empty)]));
    } catch (e) {
      if (!stopped) el.replaceChildren(h('p', { class: 'empty' }, `(usage not available: ${e.message})`));
    }
    if (!stopped) timer = setTimeout(load, interval * 1000);
  }
  load();
  return { el, stop: () => { stopped = true; clearTimeout(timer); } };
}
