// MCP Mesh console: one read-only page over /ui/api/state, refreshed when /ui/api/events says something changed.
// preact + htm as plain ES modules (import map in index.html): no JSX, no build step, nothing from a CDN.
import { h, render } from 'preact';
import { useEffect, useMemo, useState } from 'preact/hooks';
import htm from 'htm';

const html = htm.bind(h);

// How many services a section renders before asking for a filter: the topology renders them all (it is the
// point of the page), the policy matrix is wider and stops earlier.
const POLICY_LIMIT = 40;

function ago(iso, now) {
  if (!iso) return 'never';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s ago`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m ago`;
}

function until(iso, now) {
  const ms = Date.parse(iso) - now;
  if (ms <= 0) return 'EXPIRED';
  const h = ms / 3600000;
  return h < 48 ? `${h.toFixed(1)} h left` : `${Math.floor(h / 24)} days left`;
}

const short = (v) => (v === undefined ? '—' : v.length > 10 ? v.slice(0, 10) : v);
const loc = (l) => (l ? `${l.region}/${l.zone}` : '—');

function Health({ health, now }) {
  return html`<section id="health"><h2>Control plane</h2>
    <div class="cards">
      <div class=${`card ${health.ready ? 'ok' : 'bad'}`}><b>${health.ready ? 'ready' : 'NOT READY'}</b><span>${health.source}</span></div>
      <div class="card"><b>snapshot builds</b><span>${health.snapshots.builds} built, ${health.snapshots.rejected} rejected</span>
        <span>last ${health.snapshots.lastMs === null ? '—' : `${health.snapshots.lastMs.toFixed(1)} ms`}, mean ${health.snapshots.meanMs === null ? '—' : `${health.snapshots.meanMs.toFixed(1)} ms`}, ${health.snapshots.keys} snapshots held</span></div>
      ${health.sources.map((s) => html`<div class=${`card source ${s.error ? 'bad' : 'ok'}`} data-source=${s.name}><b>source ${s.name}</b><span>${s.error ?? 'no error'}</span></div>`)}
      <div class="card certs"><b>certificates</b>
        ${health.ca ? html`<span>CA: expires ${health.ca.notAfter} (${until(health.ca.notAfter, now)})</span>` : html`<span>no CA (the mesh is not secured)</span>`}
        ${health.certificates.map((c) => html`<span>${c.identity}: ${until(c.notAfter, now)}</span>`)}
      </div>
    </div></section>`;
}

// One text node for a locality's healthy endpoints: 10,000 endpoints must not mean 10,000 elements.
const epText = (e) => `${e.address}:${e.port}${e.weight !== 1 ? ` ×${e.weight}` : ''}`;

// A plain function, not a component: thousands of localities need no component instances.
function endpoints(l) {
  const ok = l.endpoints
    .filter((e) => e.healthy)
    .map(epText)
    .join('  ');
  return html`<div class="locality" data-locality=${`${l.region}/${l.zone}`}>
    <span class="prio">P${l.priority}</span> <span class="lname">${l.region}/${l.zone}</span>
    ${ok ? html` <span class="ep ok">${ok}</span>` : ''}${l.endpoints.filter((e) => !e.healthy).map((e) => html` <span class="ep bad" title=${e.health}>${epText(e)} ${e.health.replace('UNHEALTHY', 'unhealthy')}</span>`)}
  </div>`;
}

// The knobs that differ from the built-in defaults, with their source; "all knobs" asks /ui/api/routing (the
// answer /debug/routing and `mcpmesh routing explain` give) only when opened, so the page stays small.
function Routing({ service }) {
  const [all, setAll] = useState(null);
  const toggle = async () => {
    if (all) return setAll(null);
    setAll({ knobs: [], note: 'loading…' });
    const r = await fetch(`/ui/api/routing?service=${encodeURIComponent(service.name)}`, { cache: 'no-store' });
    const body = await r.json();
    setAll(r.ok ? { knobs: body.knobs, note: '' } : { knobs: [], note: body.error ?? r.statusText });
  };
  return html`<div class="routing" data-routing=${service.name}>
    <span class="rlabel">routing</span> ${
      service.routing.length === 0
        ? html`<span class="rknob">built-in defaults</span>`
        : service.routing.map(
            (k) => html`<span class="rknob" data-knob=${k.knob}><b>${k.knob}</b> ${k.shown} <small>(${k.source})</small></span>`,
          )
    }
    <button type="button" class="rall" onClick=${toggle}>${all ? 'hide' : 'all knobs'}</button>
    ${
      all
        ? html`<table class="knobs" data-knobs=${service.name}>${all.note ? html`<caption>${all.note}</caption>` : ''}
      <thead><tr><th>knob</th><th>value</th><th>source</th><th>Envoy</th></tr></thead>
      <tbody>${all.knobs.map(
        (k) =>
          html`<tr data-knob=${k.knob}><td>${k.knob}</td><td>${k.shown}</td><td>${k.source}${
            k.overridden.filter((o) => o.from.source !== 'default').length
              ? html`<br /><small>overrides ${k.overridden
                  .filter((o) => o.from.source !== 'default')
                  .map((o) => o.shown)
                  .join(', ')}</small>`
              : ''
          }</td><td><small>${k.envoy}</small></td></tr>`,
      )}</tbody>
    </table>`
        : ''
    }
  </div>`;
}

function Topology({ state, vantage, setVantage }) {
  const [filter, setFilter] = useState('');
  const services = useMemo(
    () => (filter ? state.services.filter((s) => s.name.includes(filter)) : state.services),
    [state.services, filter],
  );
  const eps = state.services.reduce((n, s) => n + s.healthy + s.unhealthy, 0);
  const front = state.gateways.length ? `fronted by every gateway (${state.gateways.join(', ')})` : 'no gateway connected';
  return html`<section id="topology"><h2>Topology <small>${state.services.length} services, ${eps} endpoints</small></h2>
    <div class="controls">
      <label>priorities as a gateway in <select value=${vantage} onChange=${(e) => setVantage(e.currentTarget.value)}>
        ${state.localities.map((l) => html`<option value=${l}>${l}</option>`)}
      </select> sees them</label>
      <input placeholder="filter services" value=${filter} onInput=${(e) => setFilter(e.currentTarget.value)} />
    </div>
    ${state.notes.map((n) => html`<p class="note">${n}</p>`)}
    <div class="services">
      ${services.map(
        (s) => html`<div class="service" key=${s.name} data-service=${s.name}>
        <div class="shead"><b>${s.name}</b> <span class="badge">MCP ${s.protocol}</span>${s.transport === 'sse' ? html` <span class="badge">HTTP+SSE</span>` : ''}
          ${s.incarnation > 0 ? html` <span class="badge">incarnation ${s.incarnation}</span>` : ''}
          <span class=${s.unhealthy > 0 ? 'count warn' : 'count'}>${s.healthy} healthy${s.unhealthy > 0 ? `, ${s.unhealthy} unhealthy` : ''}</span>
          <span class="hfrom" data-health-from=${s.name}>health: ${s.healthFrom.join('; ') || '—'}</span>
          <span class="front">${front}; ${s.sidecars.length ? `sidecars ${s.sidecars.join(', ')}` : 'no sidecar connected'}</span>
        </div>
        ${s.localities.map(endpoints)}
        <${Routing} service=${s} />
      </div>`,
      )}
    </div></section>`;
}

function Chart({ points }) {
  const w = 360;
  const hgt = 60;
  if (points.length < 2) return html`<p class="note">convergence chart: collecting samples…</p>`;
  const max = Math.max(1, ...points.map((p) => p.meanMs ?? 0));
  const t0 = Date.parse(points[0].at);
  const span = Math.max(1, Date.parse(points.at(-1).at) - t0);
  const x = (p) => ((Date.parse(p.at) - t0) / span) * (w - 3);
  const bars = points.map((p) =>
    p.rounds > 0
      ? html`<rect x=${x(p)} y=${hgt - ((p.meanMs ?? 0) / max) * (hgt - 4)} width="3" height=${((p.meanMs ?? 0) / max) * (hgt - 4)} />`
      : null,
  );
  const total = points.reduce((n, p) => n + p.rounds, 0);
  return html`<figure class="chart"><svg width=${w} height=${hgt} viewBox=${`0 0 ${w} ${hgt}`} role="img" aria-label="convergence">${bars}<line x1="0" y1=${hgt - 0.5} x2=${w} y2=${hgt - 0.5} /></svg>
    <figcaption>convergence, last ${Math.round((Date.parse(points.at(-1).at) - Date.parse(points[0].at)) / 60000) || '<1'} min: ${total} change(s), bar = mean time to last ACK (max ${max.toFixed(0)} ms)</figcaption></figure>`;
}

function Proxies({ state, now }) {
  return html`<section id="proxies"><h2>Proxies <small>${state.proxies.length} connected</small></h2>
    <${Chart} points=${state.convergence} />
    <table class="proxies"><thead><tr><th>proxy</th><th>role</th><th>locality</th><th>identity</th><th>status</th><th>last push</th><th>type: sent / ACKed / NACK</th></tr></thead>
    <tbody>${state.proxies.map(
      (p) => html`<tr key=${p.id} data-proxy=${p.id} class=${p.status}>
      <td><b>${p.id}</b><br /><small>${p.mode}${p.proxyless ? ', proxyless gRPC' : ''}</small></td>
      <td>${p.role}${p.service ? html`<br /><small>${p.service}</small>` : ''}</td>
      <td>${loc(p.locality)}</td>
      <td><small>${p.identity ?? '—'}</small></td>
      <td class="status">${p.status}</td>
      <td>${ago(p.lastPushAt, now)}</td>
      <td>${p.types.map(
        (
          t,
        ) => html`<div class="type"><span class="tname">${t.type}</span> ${short(t.sent)} / ${short(t.acked)}${t.pending ? ' (pending)' : ''}
        ${t.nacks > 0 ? html`<div class="nack">NACK ×${t.nacks} of ${short(t.nacked)}: <q>${t.lastNack}</q></div>` : ''}</div>`,
      )}</td>
    </tr>`,
    )}</tbody></table></section>`;
}

function Policy({ state }) {
  const [filter, setFilter] = useState('');
  const [explained, setExplained] = useState(null);
  const policy = state.policy;
  if (!policy)
    return html`<section id="policy"><h2>Policy</h2><p class="note">The mesh is not secured: start the control plane with --policy to see roles, rules and decisions.</p></section>`;
  const matching = filter ? policy.groups.filter((g) => g.services.some((n) => n.includes(filter))) : policy.groups;
  const shown = matching.slice(0, POLICY_LIMIT);
  const explain = async (role, service, col) => {
    const q = new URLSearchParams({ role, service, kind: col.kind, name: col.kind === 'service' ? '' : col.name });
    setExplained({ title: `${role} → ${service} ${col.kind} ${col.name}`, text: 'explaining…' });
    const r = await fetch(`/ui/api/explain?${q}`);
    const body = await r.json();
    setExplained({ title: `${role} → ${service} ${col.kind} ${col.name}`, text: body.text ?? body.error });
  };
  const names = (g) =>
    g.services.length <= 6
      ? g.services.join(', ')
      : `${g.services.slice(0, 5).join(', ')} and ${g.services.length - 5} more services (same rules, same decisions)`;
  return html`<section id="policy"><h2>Policy <small>roles from claim "${policy.roleClaim}"; click a cell for <code>mcpmesh policy explain</code></small></h2>
    <input placeholder="filter services" value=${filter} onInput=${(e) => setFilter(e.currentTarget.value)} />
    ${matching.length > shown.length ? html`<p class="note">${matching.length - shown.length} more matrices: filter to see them.</p>` : ''}
    <div class="matrices">${shown.map(
      (g) => html`<table class="matrix" key=${g.services[0]} data-policy-service=${g.services[0]}>
      <caption><b>${names(g)}</b> ${g.protocol ? `MCP ${g.protocol}` : '(not in the mesh)'} · mode ${g.mode}${g.requiredScopes.length ? ` · scopes ${g.requiredScopes.join(' ')}` : ''}</caption>
      <thead><tr><th></th>${g.columns.map((c) => html`<th title=${c.pattern ? 'a pattern, decided as that literal name' : ''}>${c.kind === 'service' ? 'service' : `${c.kind} ${c.name}`}</th>`)}</tr></thead>
      <tbody>${policy.roles.map(
        (role, ri) =>
          html`<tr><th>${role}</th>${g.columns.map((c, ci) => {
            const cell = g.cells[ri][ci];
            return html`<td class=${`cell ${cell.outcome}`} data-cell=${`${role}|${g.services[0]}|${c.kind}|${c.name}`} onClick=${() => explain(role, g.services[0], c)}>${cell.outcome}<br /><small>${cell.rule}</small></td>`;
          })}</tr>`,
      )}</tbody></table>`,
    )}</div>
    ${explained ? html`<div class="explain"><h3>${explained.title}</h3><pre id="explain-text">${explained.text}</pre></div>` : ''}
  </section>`;
}

function DecisionTable({ rows, by, what }) {
  return html`<table class="decisions" data-decisions=${what}>
    <thead><tr><th>service</th><th>${by}</th><th>outcome</th><th>last minute</th><th>total</th></tr></thead>
    <tbody>${rows.map((d) => html`<tr class=${d.decision}><td>${d.service || '—'}</td><td>${d.by || '(other methods)'}</td><td>${d.decision}</td><td>${d.recent}</td><td>${d.total}</td></tr>`)}</tbody></table>`;
}

function Decisions({ state }) {
  const { byRule, byTool } = state.decisions;
  return html`<section id="decisions"><h2>Authorization decisions <small>from the authorizer's counters (mcpmesh_authz_rule_decisions_total, mcpmesh_authz_decisions_total)</small></h2>
    ${
      byRule.length === 0
        ? html`<p class="note">No decisions yet${state.policy ? '' : ' (no authorizer without a policy)'}.</p>`
        : html`<div class="matrices">
      <${DecisionTable} rows=${byRule} by="rule" what="rule" />
      <${DecisionTable} rows=${byTool} by="tool" what="tool" />
    </div>`
    }
  </section>`;
}

function App() {
  const [state, setState] = useState(null);
  const [error, setError] = useState(null);
  // The locality the user picked; until then the server's default (the first gateway's), without a refetch.
  const [vantage, setVantage] = useState(new URLSearchParams(location.search).get('from') ?? '');
  const [now, setNow] = useState(Date.now());
  const [live, setLive] = useState(false);

  useEffect(() => {
    let inflight = false;
    let again = false;
    const load = async () => {
      if (inflight) return void (again = true);
      inflight = true;
      try {
        // The first load takes the response index.html preloaded; later ones must not come from a cache.
        const first = !document.body.dataset.fetched && !vantage;
        const r = await fetch(`/ui/api/state${vantage ? `?from=${encodeURIComponent(vantage)}` : ''}`, first ? {} : { cache: 'no-store' });
        if (!r.ok) throw new Error(`${r.status} ${(await r.json()).error_description ?? r.statusText}`);
        const s = await r.json();
        if (!document.body.dataset.fetched) document.body.dataset.fetched = String(Math.round(performance.now()));
        setState(s);
        setError(null);
      } catch (e) {
        setError(e.message);
      } finally {
        inflight = false;
        if (again) {
          again = false;
          void load();
        }
      }
    };
    void load();
    const events = new EventSource('/ui/api/events');
    events.addEventListener('open', () => setLive(true));
    events.addEventListener('error', () => setLive(false));
    events.addEventListener('change', () => void load());
    // Ages on the page move even when nothing changes; a slow poll covers a proxy that drops SSE.
    const tick = setInterval(() => setNow(Date.now()), 5000);
    const poll = setInterval(() => void load(), 30000);
    return () => {
      events.close();
      clearInterval(tick);
      clearInterval(poll);
    };
  }, [vantage]);

  useEffect(() => {
    if (state && !document.body.dataset.ready) {
      // For the end-to-end test and anyone curious: when the first full view was on screen.
      document.body.dataset.ready = String(Math.round(performance.now()));
    }
  }, [state]);

  if (!state) return html`<p class="loading">${error ? `Cannot load the mesh: ${error}` : 'Loading the mesh…'}</p>`;
  return html`<header><h1>MCP Mesh</h1>
      <nav><a href="#health">control plane</a><a href="#topology">topology</a><a href="#proxies">proxies</a><a href="#policy">policy</a><a href="#decisions">decisions</a></nav>
      <span class=${live ? 'live on' : 'live'}>${live ? 'live' : 'reconnecting'}</span><small>updated ${new Date(state.generatedAt).toLocaleTimeString()}</small>
      ${error ? html`<span class="error">${error}</span>` : ''}</header>
    <main>
      <${Health} health=${state.health} now=${now} />
      <${Topology} state=${state} vantage=${vantage || (state.vantage ? `${state.vantage.region}/${state.vantage.zone}` : '')} setVantage=${setVantage} />
      <${Proxies} state=${state} now=${now} />
      <${Policy} state=${state} />
      <${Decisions} state=${state} />
    </main>`;
}

render(html`<${App} />`, document.getElementById('app'));
