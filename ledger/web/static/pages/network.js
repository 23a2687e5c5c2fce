// Network: every validator as this node sees it, a live chart, anchoring, the latest blocks.
// URL: /network. Refreshes every few seconds while shown.

import { get } from "../api.js";
import { activityChart } from "../chart.js";
import { badge, clockEl, facts, fmtAgo, h, hashEl, message, table, timeEl } from "../dom.js";

const REFRESH_MS = 2000;

function section(id, title) {
  const body = h("div", { class: "section-body" });
  const el = h("section", { class: "card", id, "aria-labelledby": `${id}-title` }, h("h2", { id: `${id}-title` }, title), body);
  return { el, body };
}

/** Replace a section's content, unless keyboard focus is inside it (a refresh must not steal it). */
function fill(part, ...content) {
  if (part.el.contains(document.activeElement) && part.body.childNodes.length) return;
  part.body.replaceChildren(...content.flat());
}

function validatorTable(net) {
  const rows = net.validators.map(v => h("tr", { "data-validator": v.id, class: v.self ? "self" : null },
    h("td", {}, h("strong", {}, v.name), v.self ? [" ", badge("plain", "this node")] : null),
    h("td", {}, h("span", { class: "mono", title: v.id }, v.id.slice(0, 10))),
    h("td", { class: "role" }, v.primary === null ? "—" : v.primary ? badge("primary", "Primary") : "backup",
      v.equivocations ? [" ", h("a", { href: `/v1/evidence/${v.id}`, title: "signed proof of the equivocations" },
        badge("bad", `equivocated ${v.equivocations}×`))] : null),
    h("td", { class: "num height" }, v.height === null ? "—" : String(v.height)),
    h("td", { class: "num" }, v.lag === null ? "—" : String(v.lag)),
    h("td", { class: "num" }, v.view === null ? "—" : String(v.view)),
    h("td", {}, v.self ? "—" : fmtAgo(v.last_seen_ago_ms)),
    h("td", {}, v.connected ? (net.role === "observer" ? "answering" : "linked")
      : badge("bad", net.role === "observer" ? "not answering" : "no link"))));
  return table(["Validator", "Id", "Role", { text: "Height", num: true }, { text: "Lag", num: true },
    { text: "View", num: true }, "Last seen", "Link"], rows, { class: "validators" });
}

const anchorTimes = new Map(); // anchored height -> block time, fetched once each

async function anchoring(status, signal) {
  const a = status.anchoring || {};
  if (!a.enabled) return [h("p", { class: "muted" }, "Anchoring to Ethereum is not configured on this node.")];
  const height = a.last_anchored_height;
  if (height && !anchorTimes.has(height)) {
    const block = await get(`/v1/blocks/${height}`, { signal });
    if (block.ok) anchorTimes.set(height, block.body.header.timestamp);
  }
  return [facts([
    ["Last anchored", height ? h("a", { href: `/block/${height}` }, `block ${height}`) : "nothing yet"],
    ["Its block time", anchorTimes.has(height) ? timeEl(anchorTimes.get(height)) : null],
    ["Ethereum tx", a.tx_hash ? h("span", { class: "mono" }, a.tx_hash) : null],
    ["Chain id", a.chain_id === null ? null : String(a.chain_id)],
    ["Contract", a.contract ? h("span", { class: "mono" }, a.contract) : null],
    ["Blocks since", a.pending === null ? null : String(a.pending)],
    ["Confirmations", a.confirmations === undefined ? null : String(a.confirmations)],
    ["This node's submitter", a.submitter ? h("span", { class: "mono" }, a.submitter) : null],
    // Roots that certified submitters anchored but that are not this ledger's blocks: never attested.
    ["Foreign roots at", a.foreign_heights && a.foreign_heights.length
      ? h("span", { class: "mono wrap foreign" }, a.foreign_heights.join(", ")) : null],
    ["Last error", a.last_error ? h("span", { class: "wrap" }, a.last_error) : null],
    ["Note", a.note ? h("span", { class: "wrap" }, a.note) : null],
  ])];
}

function blocksTable(list, names) {
  return table([{ text: "Height", num: true }, "Time (UTC)", { text: "Txs", num: true }, "Proposer", "Hash"],
    list.blocks.map(b => h("tr", {},
      h("td", { class: "num" }, h("a", { href: `/block/${b.height}` }, String(b.height))),
      h("td", {}, clockEl(b.timestamp)), h("td", { class: "num" }, String(b.tx_count)),
      h("td", {}, names.get(b.proposer) || (b.proposer ? b.proposer.slice(0, 10) : "genesis")),
      h("td", {}, hashEl(b.hash, 12)))), { class: "blocks" });
}

export async function render(view, { signal }) {
  document.title = "Network · Ledger explorer";
  const summary = h("p", { class: "muted" }, "Loading…"); // not a live region: it changes every refresh
  const validators = section("validators", "Validators");
  const chart = section("activity", "Activity");
  const anchor = section("anchoring", "Ethereum anchoring");
  const blocks = section("latest-blocks", "Latest blocks");
  view.append(h("h1", {}, "Network"), summary, validators.el, chart.el, h("div", { class: "grid" }, anchor.el, blocks.el));

  const refresh = async () => {
    const [net, status, activity, latest] = await Promise.all([
      get("/v1/network", { signal }), get("/v1/status", { signal }),
      get("/v1/activity?window_s=300&bucket_s=5", { signal }), get("/v1/blocks?limit=10", { signal }),
    ]);
    if (!net.ok || !status.ok) {
      summary.replaceChildren(message("error", "The node did not answer; retrying."));
      return;
    }
    const names = new Map(net.body.validators.map(v => [v.id, v.name]));
    summary.replaceChildren(net.body.role === "observer"
      ? `Seen from observer ${net.body.node_id.slice(0, 10)} (it follows the validators' certified blocks and ` +
        `votes in no view): height ${net.body.height}. Updated ${new Date().toLocaleTimeString()}.`
      : `Seen from ${names.get(net.body.node_id)}: height ${net.body.height}, view ${net.body.view}, ` +
        `primary ${names.get(net.body.primary) || net.body.primary}. Updated ${new Date().toLocaleTimeString()}.`);
    fill(validators, validatorTable(net.body));
    if (activity.ok) fill(chart, activityChart(activity.body));
    fill(anchor, await anchoring(status.body, signal));
    if (latest.ok) fill(blocks, blocksTable(latest.body, names));
  };
  let timer = 0;
  signal.addEventListener("abort", () => clearTimeout(timer));
  const loop = async () => {
    try {
      await refresh();
    } catch (err) {
      if (signal.aborted) return;
      summary.replaceChildren(message("error", `Refreshing failed (${err.message}); retrying.`));
    }
    if (!signal.aborted) timer = setTimeout(loop, REFRESH_MS);
  };
  await loop();
}
