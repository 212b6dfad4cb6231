// Kubernetes REST through the dashboard's proxy (same origin; the session cookie authenticates).

export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.message ? body.message : `HTTP ${status}`);
    this.status = status;
    this.body = body; // the Kubernetes Status, when the answer was one
  }
}

async function answer(resp) {
  const text = await resp.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = { message: text.trim() }; }
  if (!resp.ok) throw new ApiError(resp.status, body);
  return body;
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

// A read; one that fails for the network (fetch's TypeError: a network change, a restarting dashboard) is tried
// again, twice at most. Writes are not: they may have happened.
export async function get(path, params) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await answer(await fetch(path + query(params), { headers: { Accept: 'application/json' } }));
    } catch (e) {
      if (!(e instanceof TypeError) || attempt >= 2) throw e;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

export async function send(method, path, body, contentType = 'application/json') {
  return answer(await fetch(path, {
    method, headers: { 'Content-Type': contentType, Accept: 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  }));
}

export const patch = (path, body) => send('PATCH', path, body, 'application/merge-patch+json');
export const put = (path, body) => send('PUT', path, body);
export const del = (path) => send('DELETE', path);

// The REST path of a kind's collection (namespace '' = all namespaces) or of one object.
export function resourcePath(kind, namespace, name) {
  const base = kind.group ? `/apis/${kind.group}/${kind.version}` : `/api/${kind.version}`;
  const ns = kind.namespaced && namespace ? `/namespaces/${encodeURIComponent(namespace)}` : '';
  return `${base}${ns}/${kind.plural}${name ? '/' + encodeURIComponent(name) : ''}`;
}

export const KINDS = {
  nodes: { version: 'v1', plural: 'nodes', namespaced: false },
  namespaces: { version: 'v1', plural: 'namespaces', namespaced: false },
  pods: { version: 'v1', plural: 'pods', namespaced: true },
  events: { version: 'v1', plural: 'events', namespaced: true },
  services: { version: 'v1', plural: 'services', namespaced: true },
  endpoints: { version: 'v1', plural: 'endpoints', namespaced: true },
  configmaps: { version: 'v1', plural: 'configmaps', namespaced: true },
  secrets: { version: 'v1', plural: 'secrets', namespaced: true },
  deployments: { group: 'apps', version: 'v1', plural: 'deployments', namespaced: true },
  statefulsets: { group: 'apps', version: 'v1', plural: 'statefulsets', namespaced: true },
  daemonsets: { group: 'apps', version: 'v1', plural: 'daemonsets', namespaced: true },
  replicasets: { group: 'apps', version: 'v1', plural: 'replicasets', namespaced: true },
  controllerrevisions: { group: 'apps', version: 'v1', plural: 'controllerrevisions', namespaced: true },
  jobs: { group: 'batch', version: 'v1', plural: 'jobs', namespaced: true },
  cronjobs: { group: 'batch', version: 'v1', plural: 'cronjobs', namespaced: true },
  persistentvolumeclaims: { version: 'v1', plural: 'persistentvolumeclaims', namespaced: true },
  persistentvolumes: { version: 'v1', plural: 'persistentvolumes', namespaced: false },
  ingresses: { group: 'networking.k8s.io', version: 'v1', plural: 'ingresses', namespaced: true },
  horizontalpodautoscalers: { group: 'autoscaling', version: 'v2', plural: 'horizontalpodautoscalers', namespaced: true },
};

export const key = (o) => `${o.metadata.namespace || ''}/${o.metadata.name}`;

// A live list: list, then watch from its resourceVersion, applying each event;
// a watch that ends is resumed from the last version seen, an expired one (410) starts over with a list.
// `onChange(items)` gets the current objects (a Map key → object) after each change, at most once per frame.
export class ListWatch {
  constructor(path, params, onChange) {
    this.path = path;
    this.params = params || {};
    this.onChange = onChange;
    this.items = new Map();
    this.abort = new AbortController();
    this.scheduled = false;
    this.run();
  }

  stop() { this.abort.abort(); }

  changed() {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => { this.scheduled = false; if (!this.abort.signal.aborted) this.onChange(this.items); });
  }

  async run() {
    const signal = this.abort.signal;
    let rv = null;
    while (!signal.aborted) {
      try {
        if (rv === null) {
          const list = await answer(await fetch(this.path + query(this.params), { signal }));
          this.items = new Map((list.items || []).map((o) => [key(o), o]));
          rv = list.metadata.resourceVersion;
          this.changed();
        }
        rv = await this.watch(rv, signal);
      } catch (e) {
        if (signal.aborted) return;
        if (e instanceof ApiError && e.status === 401) { showError('Session ended: log in again with `pkctl dashboard`'); return; }
        if (this.onError) this.onError(e);
        if (e instanceof ApiError && [400, 403, 404].includes(e.status)) return; // retrying cannot help
        rv = null;
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  // Applies events until the stream ends; answers the version to resume from (null: list again). The watch comes
  // over a WebSocket (one event per message), since a browser holds only six HTTP connections to a server.
  watch(rv, signal) {
    const params = { ...this.params, watch: '1', resourceVersion: rv, allowWatchBookmarks: 'true' };
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`${scheme}://${location.host}${this.path}${query(params)}`);
      let opened = false;
      let result = rv;
      const abort = () => ws.close();
      signal.addEventListener('abort', abort);
      ws.onopen = () => { opened = true; };
      ws.onmessage = (m) => {
        const ev = JSON.parse(m.data);
        if (ev.type === 'ERROR') { result = null; ws.close(); return; } // 410 Gone (expired) and the like: list again
        result = ev.object.metadata.resourceVersion;
        if (ev.type === 'BOOKMARK') return;
        if (ev.type === 'DELETED') this.items.delete(key(ev.object));
        else this.items.set(key(ev.object), ev.object);
        this.changed();
      };
      ws.onclose = () => {
        signal.removeEventListener('abort', abort);
        if (opened) resolve(result);
        else reject(new Error('the watch could not start'));
      };
    });
  }
}

export function showError(message) {
  const toast = document.getElementById('toast');
  toast.textContent = message;
  clearTimeout(showError.timer);
  showError.timer = setTimeout(() => { toast.textContent = ''; }, 6000);
}
