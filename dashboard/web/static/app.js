// The page's router: #/<page>[/<args>] → a page module's render(main, ctx), which answers its clean-up
// (stopping its watches). The namespace picker in the header filters every namespaced page.
import { KINDS, ListWatch, resourcePath } from './api.js';
import { h, refreshAges } from './util.js';
import * as overview from './pages/overview.js';
import * as pods from './pages/pods.js';
import * as pod from './pages/pod.js';
import * as deployments from './pages/deployments.js';
import * as details from './pages/details.js';
import * as yaml from './pages/yaml.js';
import * as resources from './pages/resources.js';

const main = document.getElementById('main');
const nsSelect = document.getElementById('namespace');
let cleanup = null;

function route() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  const [page = '', ...args] = parts;
  if (page === 'pods' && args.length === 2) return [pod, args];
  if (page === 'pods') return [pods, args];
  if (page === 'deployments') return [deployments, args];
  if (page === 'yaml') return [yaml, args];
  if (['statefulsets', 'daemonsets', 'jobs', 'cronjobs'].includes(page) && args.length === 2) return [details, [page, ...args]];
  if (resources.PAGES[page]) return [resources, [page, ...args]];
  return [overview, args];
}

function show() {
  if (cleanup) cleanup();
  cleanup = null;
  const [module, args] = route();
  const here = '#/' + location.hash.replace(/^#\/?/, '').split('/')[0];
  for (const a of document.querySelectorAll('nav a')) {
    if (a.getAttribute('href') === (here === '#/' ? '#/' : here)) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  main.replaceChildren();
  cleanup = module.render(main, { namespace: nsSelect.value, args }) || null;
}

// Namespaces for the picker, live.
new ListWatch(resourcePath(KINDS.namespaces), {}, (items) => {
  const chosen = nsSelect.value;
  const names = [...items.values()].map((n) => n.metadata.name).sort();
  nsSelect.replaceChildren(h('option', { value: '' }, 'All namespaces'),
    ...names.map((n) => h('option', { value: n }, n)));
  nsSelect.value = names.includes(chosen) ? chosen : '';
});

nsSelect.addEventListener('change', show);
window.addEventListener('hashchange', () => { show(); main.focus({ preventScroll: true }); });
show();
setInterval(() => refreshAges(main), 5000); // ages keep counting between changes
